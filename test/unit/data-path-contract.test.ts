import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import http from 'node:http';
import net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { test } from 'node:test';
import { FORWARDED_FIELDS } from '../../lib/forward-headers.js';
import type { RouteTable, ServiceRoute } from '../../lib/route-table.js';
import { DATA_PATHS, HAPROXY, inFlightTo, route, routedTo, started, table } from '../helpers/data-paths.js';
import { rawAppOn, serverOn } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

// The contract every data path honours (route-table.ts), run once against each one: the
// proxy in the daemon's process, proxy workers and the haproxy engine (helpers/data-paths.ts).

const WAIT = { timeout: 5000 };

/** An app that answers its name at once, and holds `/slow` until `finish()`; after that, answers it at once too. */
async function app(name: string) {
  const held: http.ServerResponse[] = [];
  let holding = true;
  const { port } = await serverOn((request, response) => {
    if (request.url === '/slow' && holding) return void held.push(response);
    response.end(request.url === '/slow' ? `${name} slow` : name);
  });
  const finish = () => {
    holding = false;
    for (const response of held.splice(0)) response.end(`${name} slow`);
  };
  return { port, held, finish };
}

function get(port: number, path = '/', host?: string, address = '127.0.0.1'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: address, port, path, agent: false, ...(host === undefined ? {} : { headers: { host } }) }, (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
        response.on('error', reject);
      })
      .on('error', reject);
  });
}

/** A GET with these header fields; resolves to the body. */
function getWith(port: number, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent: false, headers }, (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** A request without a body; resolves to the status, or to the error's message if there was no answer. */
function send(port: number, method: string, agent: http.Agent | false = false): Promise<number | string> {
  return new Promise((resolve) => {
    http
      .request({ host: '127.0.0.1', port, path: '/', method, agent }, (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      })
      .on('error', (error) => resolve(error.message))
      .end();
  });
}

/** The fields that say who the client is and which proxies the request passed. */
function pick(headers: Record<string, string>): Record<string, string | undefined> {
  const names = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip', 'via'];
  return Object.fromEntries(names.map((name) => [name, headers[name]]));
}

/** Whether the port takes a TCP connection (false once it is refused). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** Until the next request shows the table took effect (workers get it by message). */
function untilServed(port: number, body: string): Promise<unknown> {
  return waitFor(async () => (await get(port)).body === body, { ...WAIT, what: `an answer "${body}"` });
}

for (const kind of DATA_PATHS) {
  const { name, skip } = kind;
  test(`${name}: routes each new request by the last table published, and 503 while no generation serves`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind);
    const [one, two] = [await app('one'), await app('two')];
    dataPath.update(table([route(null, 1)]));
    await waitFor(async () => (await get(port)).status === 503, { ...WAIT, what: 'a 503 while nothing serves' });
    dataPath.update(table([route(one.port, 1)]));
    await untilServed(port, 'one');
    dataPath.update(table([route(two.port, 2)]));
    await untilServed(port, 'two');
  });

  test(`${name}: whenRouted resolves once a service added with its own host is routed to`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind);
    const [one, two] = [await app('one'), await app('two')];
    dataPath.update(table([route(one.port, 1)]));
    await untilServed(port, 'one');
    dataPath.update(table([route(one.port, 1), route(two.port, 2, { name: 'api', hosts: ['api.test'] })]));
    await dataPath.whenRouted();
    // For a while, so that a change still under way after whenRouted (a reload) would be seen.
    for (const until = Date.now() + 1000; Date.now() < until; ) assert.deepEqual(await get(port, '/', 'api.test'), { status: 200, body: 'two' });
  });

  test(`${name}: counts a request in flight to its upstream, and whenIdle resolves once it has ended`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind);
    const one = await app('one');
    dataPath.update(table([route(one.port, 1)]));
    await untilServed(port, 'one');
    const slow = get(port, '/slow');
    // At the app, the request has surely reached the proxy: an in-flight count alone could be
    // a worker's stale report of the request that showed the table took effect.
    await waitFor(() => one.held.length === 1, { ...WAIT, what: 'the request at the app' });
    await waitFor(async () => (await inFlightTo(dataPath)) === 1, { ...WAIT, what: 'one request in flight' });
    let idle = false;
    const whenIdle = dataPath.whenIdle(1).then(() => (idle = true));
    // Long enough for every worker to have answered whenIdle had it been idle.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(idle, false, 'not idle while a request is in flight');
    one.finish();
    assert.deepEqual(await slow, { status: 200, body: 'one slow' });
    await whenIdle;
    await waitFor(async () => (await inFlightTo(dataPath)) === 0, { ...WAIT, what: 'nothing in flight' });
  });

  test(`${name}: release closes the sockets to the upstream, cutting what is still in flight, and says how many it cut`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind);
    const one = await app('one');
    dataPath.update(table([route(one.port, 1)]));
    await untilServed(port, 'one');
    const slow = get(port, '/slow').catch((error: Error) => error);
    await waitFor(() => one.held.length === 1, { ...WAIT, what: 'the request at the app' });
    const cutAtApp = new Promise((resolve) => one.held[0]!.once('close', resolve));
    assert.equal(await dataPath.release(1), 1);
    await cutAtApp;
    // What the client then gets is the engine's business (a retry, a 502, a reset): it ends.
    one.finish();
    await slow;
  });

  test(`${name}: a paused service holds new requests until it runs again; a stopped one answers 503 with its message`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind);
    const one = await app('one');
    const publish = (change: Partial<ServiceRoute>) => dataPath.update(table([route(one.port, 1, change)]));
    publish({ mode: 'stopped', message: 'back at noon' });
    await waitFor(async () => (await get(port)).body.includes('back at noon'), { ...WAIT, what: 'the maintenance page' });
    assert.equal((await get(port)).status, 503);
    publish({ mode: 'paused' });
    await waitFor(async () => (await Promise.race([get(port), new Promise((resolve) => setTimeout(resolve, 300, 'held'))])) === 'held', { ...WAIT, what: 'a request held' });
    const held = get(port);
    publish({ mode: 'running' });
    assert.deepEqual(await held, { status: 200, body: 'one' });
  });

  test(`${name}: names a client on IPv6 in Forwarded as a quoted, bracketed address (RFC 7239 §6)`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind, '::1');
    const { port: appPort } = await serverOn((request, response) => response.end(request.headers.forwarded));
    dataPath.update(table([route(appPort, 1)], { forwardedFields: ['forwarded'] }));
    await dataPath.whenRouted();
    assert.deepEqual(await get(port, '/', 'shop.test', '::1'), { status: 200, body: 'for="[::1]";proto=http;host="shop.test"' });
  });

  test(`${name}: forwards who the client is in the forwarded fields configured, believing the client's own claims only from a trusted proxy`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind);
    const { port: appPort } = await serverOn((request, response) => response.end(JSON.stringify(request.headers)));
    const claims = { 'x-forwarded-for': '192.0.2.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'claimed.test', 'x-forwarded-port': '1', forwarded: 'for=192.0.2.1', 'x-real-ip': '192.0.2.1' };
    const allFields = { forwardedFields: FORWARDED_FIELDS };
    /** The fields the app sees once the table with `change` is in force. */
    const expectSeen = async (change: Partial<RouteTable>, sent: Record<string, string>, expected: Record<string, string | undefined>) => {
      dataPath.update(table([route(appPort, 1)], change));
      await dataPath.whenRouted();
      let seen: Record<string, string> = {};
      // Workers get a new table by message: until then the previous one answers.
      const inForce = async () => {
        seen = JSON.parse(await getWith(port, { host: 'shop.test', ...sent })) as Record<string, string>;
        return isDeepStrictEqual(pick(seen), expected);
      };
      await waitFor(inForce, { ...WAIT, what: 'the app seeing the table in force' }).catch(() => {});
      assert.deepEqual(pick(seen), expected);
      return seen;
    };
    // By default the three X-Forwarded fields; a client's X-Forwarded-Port, Forwarded and X-Real-IP are dropped all the same.
    const byDefault = await expectSeen({}, claims, {
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'shop.test',
      'x-forwarded-port': undefined,
      forwarded: undefined,
      'x-real-ip': undefined,
      via: '1.1 rainbowd-contract',
    });
    assert.match(byDefault['x-request-id']!, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const sentId = JSON.parse(await getWith(port, { 'x-request-id': 'abc-123' })) as Record<string, string>;
    assert.equal(sentId['x-request-id'], 'abc-123', "a client's own X-Request-ID is kept, trusted or not");
    await expectSeen(allFields, claims, {
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'shop.test',
      'x-forwarded-port': undefined,
      forwarded: 'for=127.0.0.1;proto=http;host="shop.test"',
      'x-real-ip': '127.0.0.1',
      via: '1.1 rainbowd-contract',
    });
    const trusting = await expectSeen({ ...allFields, trustedProxies: ['127.0.0.1'] }, { ...claims, 'x-request-id': 'abc-123' }, {
      'x-forwarded-for': '192.0.2.1, 127.0.0.1',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'claimed.test',
      'x-forwarded-port': '1',
      forwarded: 'for=192.0.2.1, for=127.0.0.1;proto=http;host="shop.test"',
      'x-real-ip': '192.0.2.1',
      via: '1.1 rainbowd-contract',
    });
    assert.equal(trusting['x-request-id'], 'abc-123');
    // A trusted proxy's fields that we do not set pass on as it sent them.
    await expectSeen({ trustedProxies: ['127.0.0.1'] }, claims, {
      'x-forwarded-for': '192.0.2.1, 127.0.0.1',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'claimed.test',
      'x-forwarded-port': '1',
      forwarded: 'for=192.0.2.1',
      'x-real-ip': '192.0.2.1',
      via: '1.1 rainbowd-contract',
    });
  });

  test(`${name}: keeps its connections to the app alive across clients that close theirs after each request`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind);
    const { server, port: appPort } = await serverOn((_request, response) => response.end('one'));
    let connections = 0;
    server.on('connection', () => connections++);
    dataPath.update(table([route(appPort, 1)]));
    // Until the table is routed, the haproxy engine's fallback answers, on a connection a request.
    await dataPath.whenRouted();
    await untilServed(port, 'one');
    const before = connections;
    // Each `get` is a client connection of its own, closed after its answer (as nginx's default proxying sends them).
    for (let request = 1; request <= 50; request++) assert.equal((await get(port)).body, 'one', `request ${request}`);
    // At most one new connection per proxy worker; one per request without reuse.
    assert.ok(connections - before <= 2, `${connections - before} connections to the app for 50 requests`);
  });

  test(`${name}: a client that goes away closes its request at the app while the answer streams or the body comes, and (but with HAProxy) while the app has not answered`, { skip }, async (t) => {
    const got = new Set<string>();
    const closed = new Set<string>();
    const { server, port: appPort } = await serverOn((request, response) => {
      if (request.url === '/') return void response.end('ok');
      const url = request.url!;
      got.add(url);
      response.on('close', () => closed.add(url));
      if (url === '/stream') {
        const writing = setInterval(() => response.write('more '), 100);
        response.on('close', () => clearInterval(writing));
      }
      if (url === '/upload') request.once('data', () => got.add('/upload body'));
    });
    t.after(() => server.closeAllConnections()); // none of its answers ends
    const { dataPath, port } = await routedTo(t, kind, appPort);
    await untilServed(port, 'ok');
    /** Once the app has seen `startedAt`, the client goes away. */
    const leave = async (startedAt: string, client: net.Socket | http.ClientRequest) => {
      await waitFor(() => got.has(startedAt), { ...WAIT, what: `the app at ${startedAt}` });
      client.destroy();
    };

    const streaming = http.get({ host: '127.0.0.1', port, path: '/stream', agent: false }, (response) => response.once('data', () => streaming.destroy()));
    streaming.on('error', () => undefined);
    await waitFor(() => closed.has('/stream'), { ...WAIT, what: "the app's streaming answer closed" });

    const uploading = net.connect(port, '127.0.0.1', () => uploading.write('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nfirst part'));
    uploading.on('error', () => undefined);
    await leave('/upload body', uploading);
    await waitFor(() => closed.has('/upload'), { ...WAIT, what: "the app's request with a body closed" });

    const waiting = http.get({ host: '127.0.0.1', port, path: '/hang', agent: false });
    waiting.on('error', () => undefined);
    await leave('/hang', waiting);
    if (kind === HAPROXY) {
      // HAProxy serves a request whose client closed before the answer, as HTTP allows (a
      // client may close only its sending side): it learns the client is gone when it next
      // writes to it, so until the app answers the request counts in flight, as it would with
      // the client there; a drain's drainTimeout bounds it (README: Engines).
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.equal(closed.has('/hang'), false);
      assert.equal(await inFlightTo(dataPath), 1);
    } else {
      await waitFor(() => closed.has('/hang'), { ...WAIT, what: "the app's request closed" });
      await waitFor(async () => (await inFlightTo(dataPath)) === 0, { ...WAIT, what: 'nothing in flight' });
    }
  });

  test(`${name}: an app that refuses connections gets the 503 page at once, which names nothing internal, and the proxy goes on`, { skip }, async (t) => {
    const { server, port: appPort } = await serverOn((_request, response) => response.end('ok'));
    const { port } = await routedTo(t, kind, appPort);
    await untilServed(port, 'ok');
    server.close();
    server.closeAllConnections();
    for (let request = 1; request <= 2; request++) {
      const answer = await get(port);
      assert.equal(answer.status, 503, `request ${request}`);
      assert.match(answer.body, /^503 Service Unavailable\nThe app is restarting/);
      assert.doesNotMatch(answer.body, /127\.0\.0\.1|ECONNREFUSED|haproxy/i, 'nothing internal in the page');
    }
  });

  test(`${name}: an idempotent request on a kept-alive connection the app resets as it arrives is sent again once; a POST there is not, and fails`, { skip }, async (t) => {
    // The race between an app's keep-alive timeout and the proxy's reuse of the connection:
    // the app answers the first request on each connection and resets it when a second comes.
    const reset: string[] = [];
    const appPort = await rawAppOn((socket) => {
      let answered = false;
      socket.on('data', (data: Buffer) => {
        const method = data.toString('latin1').split(' ', 1)[0]!;
        if (answered) {
          reset.push(method);
          return void socket.resetAndDestroy();
        }
        answered = true;
        const head = method === 'HEAD';
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n${head ? '' : 'ok'}`);
      });
    });
    const { port } = await routedTo(t, kind, appPort);
    await untilServed(port, 'ok');
    // One client connection, so that with proxy workers every request goes through one worker's connections.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    // undici closes a connection after a HEAD (a guard against request smuggling): a GET follows each.
    for (const [index, method] of ['GET', 'GET', 'HEAD', 'GET', 'HEAD', 'GET'].entries()) assert.equal(await send(port, method, agent), 200, `${method} (request ${index + 1})`);
    assert.ok(reset.includes('GET') && reset.includes('HEAD'), `reset under a GET and a HEAD, not only ${JSON.stringify(reset)}: connections were not reused`);
    // A POST may have reached the app: it is not sent again, and the client learns it failed.
    // HAProxy closes a kept-alive client connection without an answer there, as it does for any
    // request but a connection's first whose app connection broke: it leaves the decision to
    // the client (RFC 9112 §9.3.1), where the node engine answers 502.
    const before = reset.length;
    assert.equal(await send(port, 'POST', agent), kind === HAPROXY ? 'socket hang up' : 502, 'the POST');
    assert.deepEqual(reset.slice(before), ['POST'], 'the POST was sent once');
  });

  test(`${name}: an idempotent request whose new connection the app resets before any answer is sent again once; a POST gets a 502`, { skip }, async (t) => {
    // An app killed as the proxy connects: once armed, the next connection is reset on its first byte.
    let connections = 0;
    let resetNext = false;
    const appPort = await rawAppOn((socket) => {
      connections++;
      socket.once('data', () => {
        if (resetNext) {
          resetNext = false;
          return void socket.resetAndDestroy();
        }
        socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
      });
    });
    const { port } = await routedTo(t, kind, appPort);
    await untilServed(port, 'ok');
    const before = connections;
    resetNext = true;
    assert.equal(await send(port, 'GET'), 200, 'the GET was sent again on a new connection');
    assert.equal(connections, before + 2);
    resetNext = true;
    assert.equal(await send(port, 'POST'), 502, 'a POST may have reached the app: not sent again');
    assert.equal(connections, before + 3);
  });

  test(`${name}: once closed, a change of services and routes does not open it again`, { skip }, async (t) => {
    const { dataPath, port } = await started(t, kind);
    const [one, two] = [await app('one'), await app('two')];
    dataPath.update(table([route(one.port, 1)]));
    await untilServed(port, 'one');
    dataPath.close();
    // The reload's new worker does not bind it: the config says the frontend is disabled.
    dataPath.update(table([route(one.port, 1), route(two.port, 2, { name: 'api', hosts: ['api.test'] })]));
    await dataPath.whenRouted();
    await waitFor(async () => !(await accepts(port)), { ...WAIT, what: 'connections refused after close and a change of routes' });
  });
}

// The haproxy engine's switch itself: its runtime commands in one round trip, each answer checked.

/** The unix-socket connections (to HAProxy) opened while `during` runs, by their answer; `show stat` polls left out. */
async function adminConnections(during: () => Promise<void>): Promise<string[]> {
  const answers: Array<Promise<string | null>> = [];
  const onSocket = ({ socket }: { socket: net.Socket }) => {
    let answer = '';
    let unix = false;
    socket.once('connect', () => (unix = socket.remotePort === undefined));
    socket.on('data', (chunk: string | Buffer) => (answer += chunk.toString()));
    answers.push(new Promise((resolve) => socket.once('close', () => resolve(unix ? answer : null))));
  };
  diagnosticsChannel.subscribe('net.client.socket', onSocket as (message: unknown) => void);
  try {
    await during();
  } finally {
    diagnosticsChannel.unsubscribe('net.client.socket', onSocket as (message: unknown) => void);
  }
  return (await Promise.all(answers)).filter((answer): answer is string => answer !== null && !answer.startsWith('# pxname'));
}

test('the haproxy engine: a switch reaches HAProxy in one connection to its admin socket', { skip: HAPROXY.skip }, async (t) => {
  const { dataPath, port } = await started(t, HAPROXY);
  const [one, two] = [await app('one'), await app('two')];
  dataPath.update(table([route(one.port, 1)]));
  await dataPath.whenRouted();
  const connections = await adminConnections(async () => {
    dataPath.update(table([route(two.port, 2)]));
    await dataPath.whenRouted();
  });
  assert.equal(connections.length, 1, `connections of the switch, by answer: ${JSON.stringify(connections)}`);
  assert.deepEqual(await get(port), { status: 200, body: 'two' });
});

test('the haproxy engine: once closed, a new connection is refused at once, not left waiting in the listen backlog', { skip: HAPROXY.skip }, async (t) => {
  const { dataPath, port } = await started(t, HAPROXY);
  const one = await app('one');
  dataPath.update(table([route(one.port, 1)]));
  await untilServed(port, 'one');
  dataPath.close();
  await dataPath.whenRouted();
  assert.equal(await accepts(port), false, 'a connection after close() was accepted');
});

test('the haproxy engine: release cuts a request that an old worker still carries after a reload, so the drain timeout bounds it', { skip: HAPROXY.skip }, async (t) => {
  const { dataPath, port } = await started(t, HAPROXY);
  const [one, two, api] = [await app('one'), await app('two'), await app('api')];
  const apiRoute = route(api.port, 3, { name: 'api', hosts: ['api.test'] });
  // whenRouted, not untilServed: the fallback answers for HAProxy until HAProxy routes the service itself.
  dataPath.update(table([route(one.port, 1)]));
  await dataPath.whenRouted();
  let ended = false;
  void get(port, '/slow')
    .catch(() => undefined)
    .finally(() => (ended = true));
  await waitFor(() => one.held.length === 1, { ...WAIT, what: 'the request at the app' });
  // A new service reloads HAProxy: the request stays with the old worker.
  dataPath.update(table([route(one.port, 1), apiRoute]));
  await dataPath.whenRouted();
  dataPath.update(table([route(two.port, 2), apiRoute]));
  await dataPath.whenRouted();
  assert.equal(await dataPath.release(1), 1);
  await waitFor(() => ended, { ...WAIT, what: 'the request on the old worker cut' });
  one.finish();
});
