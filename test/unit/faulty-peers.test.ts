import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import type { DataPath } from '../../lib/route-table.js';
import { DATA_PATHS, HAPROXY, inFlightTo, routedTo } from '../helpers/data-paths.js';
import { get, rawAppOn, sendRaw, serverOn, statusLine, wholeAnswer } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

// Apps and clients that misbehave, against every data path (helpers/data-paths.ts): the client
// gets an answer or a clean close, nothing stays counted in flight, and the data path goes on
// serving. Most were found in the node engine (traps of http-proxy 1.18.1 and undici 7), where
// each once took the daemon down.

const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

function untilIdle(dataPath: DataPath, what = 'nothing in flight'): Promise<unknown> {
  return waitFor(async () => (await inFlightTo(dataPath)) === 0, { timeout: 5000, what });
}

for (const kind of DATA_PATHS) {
  const { name, skip } = kind;

  test(`${name}: an app that resets the connection mid-request gets a 502`, { skip }, async (t) => {
    const upstream = await serverOn((request, response) => {
      if (request.url === '/') return void response.end('ok'); // health check
      request.socket.destroy();
    });
    const { dataPath, port } = await routedTo(t, kind, upstream.port);
    assert.match(await sendRaw(port, 'GET /reset HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 502 Bad Gateway/);
    await untilIdle(dataPath);
  });

  test(`${name}: a client reset during a WebSocket upgrade leaves nothing in flight, and the proxy goes on`, { skip }, async (t) => {
    const upstream = await serverOn((_request, response) => response.end('ok'));
    upstream.server.on('upgrade', (_request, socket: net.Socket) => {
      // Answer late, after the client is gone.
      setTimeout(() => socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'), 200);
    });
    const { dataPath, port } = await routedTo(t, kind, upstream.port);
    for (let attempt = 0; attempt < 5; attempt++) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(UPGRADE);
      await new Promise((resolve) => setTimeout(resolve, 20));
      socket.resetAndDestroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal((await get(port)).status, 200, 'the proxy still serves');
    await untilIdle(dataPath, 'reset upgrades no longer counted in flight');
  });

  test(`${name}: a WebSocket upgrade whose app is gone or breaks the connection gets the page a plain request would (503, 502), not a silent close`, { skip }, async (t) => {
    const resetting = await rawAppOn((socket) => socket.once('data', () => socket.resetAndDestroy()));
    const broken = await routedTo(t, kind, resetting);
    // HAProxy keeps the client's connection open after the page, as after any answer.
    const answer = await sendRaw(broken.port, UPGRADE, 5000, wholeAnswer);
    assert.match(answer, /^HTTP\/1\.1 502 Bad Gateway/, answer);
    assert.match(answer, /\r\n\r\n502 Bad Gateway\n/, 'with the page');
    await untilIdle(broken.dataPath, 'the answered upgrade no longer counted in flight');
    const upstream = await serverOn((_request, response) => response.end('ok'));
    const gone = await routedTo(t, kind, upstream.port);
    upstream.server.close();
    upstream.server.closeAllConnections();
    assert.match(await sendRaw(gone.port, UPGRADE, 5000, wholeAnswer), /^HTTP\/1\.1 503 Service Unavailable\r\n[^]*\r\n\r\n503 Service Unavailable\n/);
    assert.equal((await get(gone.port)).status, 503, 'the proxy still serves');
    await untilIdle(gone.dataPath, 'the answered upgrade no longer counted in flight');
  });

  test(`${name}: a request target the engine cannot parse gets a 400, on plain requests and upgrades, and the proxy keeps serving`, { skip }, async (t) => {
    // http-proxy 1.18.1 runs url.parse on the target, which throws on this one: it took the daemon down.
    const upstream = await serverOn((_request, response) => response.end('ok'));
    upstream.server.on('upgrade', (_request, socket: net.Socket) => socket.destroy());
    const { dataPath, port } = await routedTo(t, kind, upstream.port);
    // HAProxy's own parser refuses it, with its built-in page (README: Engines).
    const badRequest = /^HTTP\/1\.1 400 Bad [Rr]equest\r\n/;
    const answer = await sendRaw(port, 'GET http://[bad/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(answer, badRequest);
    assert.doesNotMatch(answer, /url|parse|\[bad/i, 'nothing internal in the page');
    const upgrade = await sendRaw(port, UPGRADE.replace('/ws', 'http://[bad/ws'));
    assert.match(upgrade, badRequest, 'the upgrade gets the same answer');
    assert.equal((await get(port)).status, 200, 'the proxy still serves');
    await untilIdle(dataPath, 'neither is left counted in flight');
  });

  test(`${name}: an app answering with a status line or field the engine will not write (node) or passes on as nginx does (HAProxy); the proxy keeps serving`, { skip }, async (t) => {
    // Node cannot write these: writing them threw out of the node engine's response handler.
    // The node engine answers 502, or puts the standard reason phrase. HAProxy passes each on
    // as the app sent it, as nginx 1.22 does (which refuses a NUL in a field's value only);
    // checking for them would cost a rule on every answer (README: Engines).
    const answers = [
      { head: 'HTTP/1.1 200 O\x01K', node: 'HTTP/1.1 200 OK' },
      { head: 'HTTP/1.1 200 O\x00K', node: 'HTTP/1.1 200 OK' },
      { head: 'HTTP/1.1 000 Zero', node: 'HTTP/1.1 502 Bad Gateway' },
      { head: 'HTTP/1.1 099 Low', node: 'HTTP/1.1 502 Bad Gateway' },
      { head: 'HTTP/1.1 1000 Big', node: 'HTTP/1.1 502 Bad Gateway' },
      { head: 'HTTP/1.1 200 OK\r\nX-Bad: a\x01b', node: 'HTTP/1.1 502 Bad Gateway' },
      { head: 'HTTP/1.1 200 OK\r\nX-Bad: a\x7fb', node: 'HTTP/1.1 502 Bad Gateway' },
      { head: 'HTTP/1.1 200 OK\r\nX-Bad: a\x00b', node: 'HTTP/1.1 502 Bad Gateway' },
    ];
    const upstreamPort = await rawAppOn((socket) => {
      socket.once('data', (data) => {
        const which = Number(/GET \/(\d)/.exec(data.toString('latin1'))?.[1] ?? -1);
        socket.end(`${answers[which]?.head ?? 'HTTP/1.1 200 OK'}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok`, 'latin1');
      });
    });
    const { dataPath, port } = await routedTo(t, kind, upstreamPort);
    for (const [index, { head, node }] of answers.entries()) {
      const answer = await sendRaw(port, `GET /${index} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
      if (kind === HAPROXY) {
        const [sent, field = ''] = head.split('\r\n');
        assert.equal(statusLine(answer), sent, JSON.stringify(head));
        assert.ok(answer.toLowerCase().includes(field.toLowerCase()), `${JSON.stringify(field)} passed on`);
      } else {
        assert.equal(statusLine(answer), node, JSON.stringify(head));
      }
    }
    assert.equal((await get(port)).status, 200, 'the proxy still serves');
    await untilIdle(dataPath);
  });

  test(`${name}: an app that sends bytes after a complete answer: the client gets the answer, and the proxy keeps serving`, { skip }, async (t) => {
    // The parse error on the extra bytes made the node engine write an error page into the
    // answer being streamed: write after end, an unhandled error event.
    const upstreamPort = await rawAppOn((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok?'));
    });
    const { dataPath, port } = await routedTo(t, kind, upstreamPort);
    for (let i = 0; i < 3; i++) assert.deepEqual(await get(port), { status: 200, body: 'ok' });
    await untilIdle(dataPath);
  });

  test(`${name}: an app that closes its connection after an answer a slow client has not read yet (saying so or not): the client gets all of it, and the proxy keeps serving`, { skip, timeout: 60_000 }, async (t) => {
    // undici 7 asserts, uncatchably, in its socket's end handler when the app's connection
    // ends while back-pressure has paused its parser (nodejs/undici#5360, fixed only in undici
    // 8, which needs Node 22): it took the daemon down, or a proxy worker, about one run in
    // twenty-five on a busy machine. With `Connection: close` the node engine reads on; on a
    // kept-alive connection, not past the end of the answer (mayHoldBack).
    const BODY_BYTES = 16 * 1024 * 1024;
    const upstreamPort = await rawAppOn((socket) => {
      socket.once('data', (data) => {
        const says = data.toString('latin1').startsWith('GET /close ') ? 'Connection: close\r\n' : '';
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${BODY_BYTES}\r\n${says}\r\n`);
        socket.end(Buffer.alloc(BODY_BYTES, 'a'));
      });
    });
    const { dataPath, port } = await routedTo(t, kind, upstreamPort);
    for (const path of ['/close', '/kept-alive']) {
      const client = net.connect(port, '127.0.0.1');
      client.on('error', () => undefined);
      client.write(`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
      // Read slowly to the end, so that the proxy's writes to the client wait on it throughout.
      let received = 0;
      client.on('data', (chunk: Buffer) => {
        received += chunk.length;
        client.pause();
        setTimeout(() => client.resume(), 2);
      });
      await new Promise((resolve) => client.on('close', resolve));
      assert.ok(received > BODY_BYTES, `${path}: ${received} bytes received`);
      await untilIdle(dataPath);
    }
    assert.match(await sendRaw(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /);
  });

  test(`${name}: a large answer to a client that does not read is held back at the app, not buffered in the proxy`, { skip, timeout: 90_000 }, async (t) => {
    const total = 200 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let written = 0;
    let waiting = false;
    const upstream = await serverOn((request, response) => {
      if (request.url === '/') return void response.end('ok');
      response.writeHead(200, { 'content-length': total });
      const more = () => {
        waiting = false;
        while (written < total) {
          written += chunk.length;
          if (!response.write(chunk)) {
            waiting = true;
            return void response.once('drain', more);
          }
        }
        response.end();
      };
      more();
    });
    const { dataPath, port } = await routedTo(t, kind, upstream.port);
    const client = net.connect(port, '127.0.0.1', () => client.write('GET /large HTTP/1.1\r\nHost: a\r\n\r\n'));
    let received = 0;
    client.on('data', (data: Buffer) => (received += data.length));
    client.once('data', () => client.pause());
    // The app is held up once every buffer between it and the client is full: socket buffers
    // of a few megabytes each, not the 200 MB the app has to send.
    let seen = -1;
    await waitFor(
      () => {
        const stalled = waiting && written === seen;
        seen = written;
        return stalled;
      },
      { interval: 300, timeout: 20_000, what: 'the app to be held up' },
    );
    assert.ok(written < 64 * 1024 * 1024, `the app got ${Math.round(written / 1024 / 1024)} MB out while the client read nothing`);
    client.resume();
    await waitFor(() => received >= total, { timeout: 60_000, what: 'the whole answer' });
    client.destroy();
    await untilIdle(dataPath);
  });
}
