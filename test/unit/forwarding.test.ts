import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { proxyTo, rawAppOn, serverOn, UPSTREAM_KEY } from '../helpers/proxy.js';
import { waitFor } from '../helpers/wait.js';

// How ordinary requests travel to the app and back, through a real proxy listener: which
// connection to the app they take, and that both directions stream at the pace of the
// slower side.

function post(port: number, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, path: '/', method: 'POST', agent: false, headers: { 'content-length': Buffer.byteLength(body) } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
    request.end(body);
  });
}

test("a POST is never sent on a connection past the app's Keep-Alive timeout, so an app with a short keep-alive gets no 502", async () => {
  // The app says `Keep-Alive: timeout=1` and closes a connection idle that long; a request
  // written onto it as it closes is lost (here: reset, as the crossing is too quick to catch).
  const idleMs = 1000;
  const upstreamPort = await rawAppOn((socket) => {
    let answeredAt = 0;
    socket.on('data', () => {
      if (answeredAt !== 0 && Date.now() - answeredAt >= idleMs) return void socket.resetAndDestroy();
      answeredAt = Date.now();
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=1\r\n\r\nok');
    });
  });
  const { port } = await proxyTo(upstreamPort);
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, idleMs + 100)); // the app's timeout passes: the point of the test
    statuses.push(await post(port, `form ${i}`));
  }
  assert.deepEqual(statuses, [200, 200, 200]);
});

test('a large answer to a client that does not read is held back at the app, not buffered in the proxy', async () => {
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
  const { proxy, port } = await proxyTo(upstream.port);
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
  await waitFor(() => proxy.inFlight(UPSTREAM_KEY) === 0, { timeout: 5000, what: 'nothing in flight' });
});
