import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { get, proxyTo, sendRaw, serverOn, UPSTREAM_KEY } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

// Behind an app that closes every connection (gunicorn's sync workers), rainbowd forwards
// with node:http's client once it has seen 16 such answers in a row (agent-request.ts): the
// data path's guarantees hold there too. Real proxy listener, real apps.

const ANSWERS_TO_SWITCH = 16;

/** An app that answers `Connection: close` to everything, echoing what it received; `handle` may take a request over. */
async function closingApp(handle?: (request: http.IncomingMessage, response: http.ServerResponse) => boolean): Promise<{ port: number; server: http.Server; seen: string[] }> {
  const seen: string[] = [];
  const app = await serverOn((request, response) => {
    response.setHeader('connection', 'close');
    if (handle?.(request, response)) return;
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('latin1')));
    request.on('end', () => {
      seen.push(`${request.method} ${request.url} connection=${request.headers.connection} ${body}`);
      response.setHeader('keep-alive', 'timeout=5');
      response.end(`got ${request.method} ${body}`);
    });
  });
  return { ...app, seen };
}

async function switchToAgent(port: number): Promise<void> {
  for (let i = 0; i < ANSWERS_TO_SWITCH; i++) assert.equal((await get(port)).status, 200);
}

test('behind an app that closes every connection, rainbowd switches to one new connection per request after 16 such answers; bodies, hop-by-hop fields and in-flight counts stay as before', async () => {
  const app = await closingApp();
  const { proxy, port } = await proxyTo(app.port);
  await switchToAgent(port);
  assert.match(app.seen.at(-1)!, /connection=keep-alive/, 'until then undici offers keep-alive');
  assert.equal((await get(port)).status, 200);
  assert.match(app.seen.at(-1)!, /^GET \/ connection=close $/, 'then each request says it closes its connection');
  const post = await sendRaw(port, 'POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n');
  assert.deepEqual([...post.matchAll(/HTTP\/1\.1 (\d+) /g)].map((match) => match[1]), ['200', '200'], post);
  assert.match(post, /got POST hello/);
  assert.match(post, /got POST hi/);
  assert.doesNotMatch(post, /keep-alive: timeout=5\r/i, "the app's Keep-Alive stops at the proxy");
  assert.deepEqual(app.seen.slice(-2), ['POST /form connection=close hello', 'POST /chunked connection=close hi']);
  assert.equal(proxy.inFlight(UPSTREAM_KEY), 0);
});

test('after the switch, a client that goes away aborts its request to the app, and the count in flight is exact', async () => {
  let appClosed!: () => void;
  const closed = new Promise<void>((resolve) => (appClosed = resolve));
  const app = await closingApp((request, response) => {
    if (request.url !== '/hang') return false;
    response.on('close', () => appClosed());
    return true;
  });
  const { proxy, port } = await proxyTo(app.port);
  await switchToAgent(port);
  const client = http.get({ host: '127.0.0.1', port, path: '/hang', agent: false });
  client.on('error', () => undefined);
  await waitFor(() => proxy.inFlight(UPSTREAM_KEY) === 1, { timeout: 5000, what: 'the request in flight' });
  client.destroy();
  await closed;
  await waitFor(() => proxy.inFlight(UPSTREAM_KEY) === 0, { timeout: 5000, what: 'no request in flight' });
});

test('after the switch, an idempotent request whose connection the app resets before answering is sent again once; a POST gets a 502, and a gone app a 503', async () => {
  let resets = 0;
  const app = await closingApp((request) => {
    if (request.url !== '/flaky' && request.url !== '/post') return false;
    if (request.url === '/flaky' && resets++ > 0) return false;
    request.socket.resetAndDestroy();
    return true;
  });
  const { proxy, port } = await proxyTo(app.port);
  await switchToAgent(port);
  const flaky = await sendRaw(port, 'GET /flaky HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  assert.match(flaky, /^HTTP\/1\.1 200 /, flaky);
  assert.equal(resets, 2, 'sent twice');
  const post = await sendRaw(port, 'POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx');
  assert.match(post, /^HTTP\/1\.1 502 /, post);
  app.server.close();
  app.server.closeAllConnections();
  assert.equal((await get(port)).status, 503);
  assert.equal(proxy.inFlight(UPSTREAM_KEY), 0);
});
