import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { CONTRACT_VIA, DATA_PATHS, HAPROXY, routedTo } from '../helpers/data-paths.js';
import { get, proxyTo, rawAppOn, sendRaw, serverOn, statusLine, UPSTREAM_KEY } from '../helpers/proxy.js';

// HTTP framing as nginx and HAProxy enforce it, through a real proxy listener with raw
// bytes: what is refused and with which status (the node engine's proxy: HAProxy refuses with
// statuses of its own, README), what is served and what is stripped on the way (every data path).

/** An app that answers every request with what it received, and counts them. */
async function echoApp(): Promise<{ port: number; seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string }> }> {
  const seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string }> = [];
  const { port } = await serverOn((request, response) => {
    let body = '';
    request.setEncoding('latin1');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      const received = { method: request.method ?? '', url: request.url ?? '', headers: request.headers, body };
      seen.push(received);
      response.end(JSON.stringify(received));
    });
  });
  return { port, seen };
}

/** The status line of the first answer to `raw`, '' if the connection closed without one. */
function firstStatusLine(port: number, raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = net.connect(port, '127.0.0.1', () => socket.write(raw, 'latin1'));
    socket.setTimeout(5000, () => socket.destroy(new Error(`no status line within 5 s; got ${JSON.stringify(answer)}`)));
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (!answer.includes('\r\n')) return;
      socket.destroy();
      resolve(statusLine(answer));
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(statusLine(answer)));
  });
}

/** The body of the first answer in `answer` (one with Content-Length). */
function bodyOf(answer: string): string {
  const headEnd = answer.indexOf('\r\n\r\n');
  const length = Number(/\r\ncontent-length: (\d+)/i.exec(answer.slice(0, headEnd))?.[1]);
  return answer.slice(headEnd + 4, headEnd + 4 + length);
}

// Each is refused before the app sees anything, with nginx's status (431 where nginx says 400
// "Request Header Or Cookie Too Large", and 501/505 for a method or an HTTP/1.x minor version
// Node's parser does not know, which nginx would forward); the first group was already
// refused by Node's parser.
/**
 * What HAProxy does with each (the haproxy engine): `refuses` it (a 4xx of its own, or the
 * fallback's for what it hands rainbowd's proxy: a path above the root, CONNECT), `repairs`
 * it as RFC 9112 lets a proxy do and forwards a well-formed request, or `passes` it to the app
 * whose own server then answers (Node's: 400, or a closed connection and HAProxy's 502).
 */
type HaproxyVerdict = 'refuses' | 'repairs' | 'passes';

const refused: Array<{ what: string; raw: string; status: number; haproxy: HaproxyVerdict }> = [
  { what: 'Content-Length with Transfer-Encoding', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, haproxy: 'repairs' },
  { what: 'two Content-Lengths', raw: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nhi', status: 400, haproxy: 'refuses' },
  { what: 'two Transfer-Encodings', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, haproxy: 'refuses' },
  { what: 'a folded header line (obs-fold)', raw: 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n', status: 400, haproxy: 'repairs' },
  { what: 'bare LF line ends', raw: 'GET / HTTP/1.1\nHost: a\n\n', status: 400, haproxy: 'repairs' },
  { what: 'a space in a header name', raw: 'GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n', status: 400, haproxy: 'refuses' },
  { what: 'HTTP/1.1 without Host', raw: 'GET / HTTP/1.1\r\n\r\n', status: 400, haproxy: 'passes' },
  { what: 'a chunk size that is not hex', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', status: 400, haproxy: 'refuses' },
  { what: 'header fields over 16 KB', raw: `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(17_000)}\r\n\r\n`, status: 431, haproxy: 'refuses' },
  { what: 'an HTTP/3.0 request line', raw: 'GET / HTTP/3.0\r\nHost: a\r\n\r\n', status: 505, haproxy: 'repairs' },
  { what: 'two Host fields', raw: 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', status: 400, haproxy: 'refuses' },
  { what: 'Transfer-Encoding: identity, chunked', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n', status: 501, haproxy: 'refuses' },
  { what: 'Transfer-Encoding: gzip, chunked', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', status: 501, haproxy: 'refuses' },
  { what: 'Transfer-Encoding: gzip', raw: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n', status: 501, haproxy: 'refuses' },
  { what: 'Transfer-Encoding on HTTP/1.0', raw: 'POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, haproxy: 'repairs' },
  { what: 'an HTTP/2.0 request line', raw: 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', status: 505, haproxy: 'repairs' },
  { what: 'an HTTP/1.2 request line (a minor version Node does not parse)', raw: 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', status: 505, haproxy: 'repairs' },
  { what: 'a method Node does not know (BREW)', raw: 'BREW / HTTP/1.1\r\nHost: a\r\n\r\n', status: 501, haproxy: 'passes' },
  { what: 'a method in lower case', raw: 'get / HTTP/1.1\r\nHost: a\r\n\r\n', status: 501, haproxy: 'passes' },
  { what: 'bytes that are no request line (a TLS handshake on the HTTP port)', raw: '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n', status: 400, haproxy: 'refuses' },
  { what: 'an HTTP/0.9 request line (no version)', raw: 'GET /\r\n\r\n', status: 400, haproxy: 'refuses' },
  { what: 'CONNECT', raw: 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', status: 405, haproxy: 'refuses' },
  { what: '2,500 header fields (Node kept 2,000 and dropped the rest)', raw: `GET / HTTP/1.1\r\nHost: a\r\n${'a:\r\n'.repeat(2500)}\r\n`, status: 431, haproxy: 'refuses' },
  { what: 'a path that climbs above the root', raw: 'GET /a/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n', status: 400, haproxy: 'refuses' },
];

test('the node engine refuses what nginx refuses, with its class of status, a page and a close, and the app never sees them', async () => {
  const app = await echoApp();
  const { proxy, port } = await proxyTo(app.port);
  for (const { what, raw, status } of refused) {
    const answer = await sendRaw(port, raw);
    assert.match(statusLine(answer), new RegExp(`^HTTP/1\\.1 ${status} `), `${what}: answered ${JSON.stringify(answer.slice(0, 100))}`);
    assert.match(bodyOf(answer), new RegExp(`^${status} `), `${what}: a page says why`);
    assert.match(answer, /\r\nconnection: close\r\n/i, `${what}: the connection is closed`);
  }
  assert.deepEqual(app.seen, [], 'the app saw none of them');
  assert.equal((await get(port)).status, 200, 'the proxy still serves');
  assert.equal(proxy.inFlight(UPSTREAM_KEY), 0);
});

test('the haproxy engine refuses the same requests with statuses of its own, or repairs them, and the app is handed only well-formed ones', { skip: HAPROXY.skip }, async (t) => {
  const app = await echoApp();
  const { port } = await routedTo(t, HAPROXY, app.port);
  for (const { what, raw, haproxy } of refused) {
    const before = app.seen.length;
    const status = await firstStatusLine(port, raw);
    assert.match(status, haproxy === 'repairs' ? /^HTTP\/1\.1 200 / : /^HTTP\/1\.1 [45]\d\d /, `${what}: ${status}`);
    assert.equal(app.seen.length - before, haproxy === 'repairs' ? 1 : 0, `${what}: requests the app handled`);
  }
  assert.equal((await get(port)).status, 200, 'the proxy still serves');
});

for (const kind of DATA_PATHS) {
  const { name, skip } = kind;
  // The node engine drops every hop-by-hop field (RFC 9110 §7.6.1); HAProxy only rewrites
  // Connection itself and passes the rest on, as it does everywhere (README: Engines).
  const drops = kind !== HAPROXY;
  const dropsOrPasses = (field: string, present: boolean) => assert.equal(present, !drops, `${field} ${drops ? 'dropped' : 'passed on by HAProxy'}`);

  test(`${name}: upgrades to anything but WebSocket (h2c, a POST with Upgrade) are served as plain requests, body and keep-alive included`, { skip }, async (t) => {
    const app = await echoApp();
    const { port } = await routedTo(t, kind, app.port);
    const h2c = 'GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n';
    const post = 'POST /form HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo/2\r\nContent-Length: 5\r\n\r\nhello';
    const chunked = 'POST /chunked HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n';
    const last = 'GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n';
    // All four on one connection: each upgrade attempt is answered and the connection goes on.
    const answer = await sendRaw(port, h2c + post + chunked + last);
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d+) /g)].map((match) => Number(match[1]));
    assert.deepEqual(statuses, [200, 200, 200, 200], answer);
    assert.deepEqual(
      app.seen.map(({ method, url, body }) => `${method} ${url} ${body}`),
      ['GET /h2c ', 'POST /form hello', 'POST /chunked hi', 'GET /last '],
    );
    // HAProxy offers the app the GET's upgrade to h2c (not the POSTs': it drops an upgrade on a request with a body).
    dropsOrPasses('the upgrade to h2c', app.seen[0]!.headers.upgrade !== undefined);
    if (drops) {
      for (const { headers } of app.seen) {
        assert.equal(headers.upgrade, undefined, 'the upgrade is not offered to the app');
        assert.equal(headers['http2-settings'], undefined, 'nor the fields its Connection named');
      }
    }
  });

  test(`${name}: hop-by-hop request fields (Connection and what it names, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade) stop at the proxy or pass as the engine does`, { skip }, async (t) => {
    const app = await echoApp();
    const { port } = await routedTo(t, kind, app.port);
    // A Trailer field on a GET made node:http throw while forwarding it: that took the daemon down.
    const raw = 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: websocket\r\n\r\n';
    const answer = await sendRaw(port, `${raw}GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
    assert.equal([...answer.matchAll(/HTTP\/1\.1 200 /g)].length, 2, answer);
    const headers = app.seen[0]!.headers;
    for (const field of ['x-secret', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']) dropsOrPasses(field, headers[field] !== undefined);
    if (drops) assert.doesNotMatch(headers.connection ?? '', /x-secret/i, "the client's Connection is not the one to the app");
    assert.equal(headers['x-kept'], '2');
    assert.notEqual(app.seen[1]!.headers.connection, 'close', "the client's Connection: close does not close the proxy's kept-alive connection to the app");
  });

  test(`${name}: a chunked request body is forwarded chunked, whatever the case of the coding`, { skip }, async (t) => {
    const app = await echoApp();
    const { port } = await routedTo(t, kind, app.port);
    const answer = await sendRaw(port, 'GET /with-body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    assert.match(statusLine(answer), /^HTTP\/1\.1 200 /);
    assert.equal(app.seen[0]!.body, 'abc');
    assert.match(app.seen[0]!.headers['transfer-encoding'] ?? '', /^chunked$/i);
  });

  test(`${name}: hop-by-hop fields of the app's answer stop at the proxy or pass as the engine does, and the client's connection is kept alive by the proxy's rules`, { skip }, async (t) => {
    const appPort = await rawAppOn((socket) => {
      socket.on('data', () =>
        socket.write('HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=1\r\nProxy-Connection: keep-alive\r\nTrailer: X-Sum\r\nUpgrade: foo\r\nX-Kept: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'),
      );
    });
    const { port } = await routedTo(t, kind, appPort);
    const answer = await sendRaw(port, 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    const [first, second] = answer.split(/(?=HTTP\/1\.1 )/);
    assert.ok(first && second, answer);
    // The app's Keep-Alive, not the one the proxy may say of its own connection.
    for (const field of ['x-internal:', 'keep-alive: timeout=1', 'proxy-connection:', 'trailer:', 'upgrade:']) dropsOrPasses(field, first.toLowerCase().includes(`\r\n${field}`));
    assert.match(first, /\r\nx-kept: 1\r\n/i);
    // Kept alive: HTTP/1.1's default, which the node engine also says.
    assert.doesNotMatch(first, /\r\nconnection: close\r\n/i);
    if (drops) assert.match(first, /\r\nconnection: keep-alive\r\n/i);
    assert.match(second, /\r\nconnection: close\r\n/i, "the client's close is honoured");
  });

  test(`${name}: a request with Expect: 100-continue gets its 100 and reaches the app with its body`, { skip }, async (t) => {
    const app = await echoApp();
    const { port } = await routedTo(t, kind, app.port);
    const answer = await new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const request = http.request({ host: '127.0.0.1', port, path: '/form', method: 'POST', agent: false, headers: { expect: '100-continue', 'content-length': 5 } });
      request.on('continue', () => {
        continued = true;
        request.end('hello');
      });
      request.on('response', (response) => {
        response.resume();
        response.on('end', () => resolve({ status: response.statusCode ?? 0, continued }));
      });
      request.on('error', reject);
    });
    assert.deepEqual(answer, { status: 200, continued: true });
    assert.equal(app.seen[0]!.body, 'hello');
    // The node engine answers the 100 itself; HAProxy passes the Expect on and the app's 100 back.
    assert.equal(app.seen[0]!.headers.expect, drops ? undefined : '100-continue');
  });

  test(`${name}: an absolute-form request target is sent to the app in origin form`, { skip }, async (t) => {
    const app = await echoApp();
    const { port } = await routedTo(t, kind, app.port);
    const answer = await sendRaw(port, 'GET http://a.example/x/y?z=1 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n');
    assert.match(statusLine(answer), /^HTTP\/1\.1 200 /);
    assert.equal(app.seen[0]!.url, '/x/y?z=1');
  });

  test(`${name}: a request target that is not a URL (OPTIONS *) is answered 400 and never reaches the app`, { skip }, async (t) => {
    const app = await echoApp();
    const { port } = await routedTo(t, kind, app.port);
    const answer = await sendRaw(port, 'OPTIONS * HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n');
    assert.match(statusLine(answer), /^HTTP\/1\.1 400 /);
    assert.deepEqual(app.seen, []);
  });

  test(`${name}: a request that already passed through this proxy gets a 508 page and never reaches the app`, { skip }, async (t) => {
    const app = await echoApp();
    const { port } = await routedTo(t, kind, app.port);
    const answer = await sendRaw(port, `GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 ${CONTRACT_VIA}\r\nConnection: close\r\n\r\n`);
    assert.match(statusLine(answer), /^HTTP\/1\.1 508 /, answer);
    assert.match(bodyOf(answer), /^508 Loop Detected\n/);
    assert.deepEqual(app.seen, [], 'the app saw nothing');
  });
}

test('an HTTP/1.0 client that asks for keep-alive keeps its connection', async () => {
  const app = await echoApp();
  const { port } = await proxyTo(app.port);
  const answer = await sendRaw(port, 'GET /1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nHost: a\r\n\r\n');
  assert.equal([...answer.matchAll(/HTTP\/1\.1 200 /g)].length, 2, answer);
  assert.deepEqual(app.seen.map(({ url }) => url), ['/1', '/2']);
});

test('a target that leads back to the proxy gets one 508 Loop Detected, not thousands of connections', async () => {
  let connections = 0;
  // The service's target is the proxy itself, through a forwarder that counts connections.
  const forwarder = net.createServer((client) => {
    connections++;
    const proxySide = net.connect(proxyPort, '127.0.0.1');
    client.pipe(proxySide).pipe(client);
    client.on('error', () => proxySide.destroy());
    proxySide.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
  const { proxy, port: proxyPort } = await proxyTo((forwarder.address() as net.AddressInfo).port);
  // Bounds the damage if the loop is not caught: past this the proxy refuses connections.
  proxy.server.maxConnections = 50;
  try {
    const answer = await get(proxyPort);
    assert.equal(answer.status, 508);
    assert.match(answer.body, /^508 Loop Detected\n.*target/);
    assert.equal(connections, 1, 'the request came back once and went no further');
  } finally {
    forwarder.close();
    await proxy.stop();
  }
});
