import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { RESERVED_FDS } from '../../lib/connection-limit.js';
import { startAppDaemon } from '../helpers/daemon.js';
import { testEachEngine } from '../helpers/engines.js';
import { request } from '../helpers/http.js';
import { waitFor } from '../helpers/wait.js';

// Slowloris: clients that open a connection, start a request and never finish its headers,
// each holding one of rainbowd's descriptors. Here far more of them than its open-file limit.

const FD_LIMIT = 256;
const CLIENTS = 2000;
const HEADERS_TIMEOUT_MS = 10_000;

interface SlowClient {
  connectedAt: number;
  closedAt: number | null;
  answer: string;
}

// A request line and one header, then another header every second, never the blank line that ends them.
function openSlowClient(port: number, clients: SlowClient[], sockets: Set<net.Socket>): void {
  const socket = net.connect(port, '127.0.0.1');
  sockets.add(socket);
  const client: SlowClient = { connectedAt: Date.now(), closedAt: null, answer: '' };
  clients.push(client);
  let drip: NodeJS.Timeout | undefined;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (client.answer += chunk));
  socket.on('error', () => undefined);
  socket.on('close', () => {
    clearInterval(drip);
    sockets.delete(socket);
    client.closedAt = Date.now();
  });
  socket.once('connect', () => {
    client.connectedAt = Date.now();
    socket.write('GET / HTTP/1.1\r\nHost: slow.test\r\n');
    drip = setInterval(() => socket.write('X-Slow: 1\r\n'), 1000);
  });
}

for (const workers of [0, 2]) {
  test(`${CLIENTS} slow clients against an open-file limit of ${FD_LIMIT} (${workers} proxy workers): the proxy closes those past its cap, the control API answers and a redeploy succeeds throughout, and each is closed 10 s after it began`, { timeout: 90_000 }, async (t) => {
    const { daemon } = await startAppDaemon(t, { name: `slowloris-${workers}`, fdLimit: FD_LIMIT, config: { workers } });
    const clients: SlowClient[] = [];
    const sockets = new Set<net.Socket>();
    t.after(() => sockets.forEach((socket) => socket.destroy()));
    // The daemon's own descriptors: what its control API, health checks and spawns draw on.
    let daemonFds = 0;
    const watchFds = setInterval(() => (daemonFds = Math.max(daemonFds, openDescriptors(daemon.pid))), 10);
    t.after(() => clearInterval(watchFds));
    for (let i = 0; i < CLIENTS; i++) openSlowClient(daemon.proxyPort, clients, sockets);

    // While they connect and those past the cap are turned away, the control API answers every time.
    const cap = Math.floor((FD_LIMIT - RESERVED_FDS) / 2) * Math.max(workers, 1);
    const deadline = Date.now() + 20_000;
    for (let answered = 0; answered < 5 || clients.filter((client) => client.closedAt === null).length > cap; answered++) {
      assert.ok(Date.now() < deadline, `the clients past the cap of ${cap} were not turned away within 20 s`);
      const status = await request(daemon.controlPort, '/status', { timeout: 5000, agent: false });
      assert.equal(status.status, 200, `GET /status while the proxy is flooded: ${status.status} ${status.body}`);
    }
    clearInterval(watchFds);
    assert.ok(daemonFds <= FD_LIMIT - RESERVED_FDS / 2, `the daemon had up to ${daemonFds} descriptors open while flooded, of its ${FD_LIMIT}`);
    await daemon.waitForLog(/ proxy-full (worker=\d+ )?reason="\d+ client connections are open, the most this process takes with its open-file limit of 256;/);
    const redeploy = await daemon.redeploy();
    assert.equal(redeploy.status, 200, `a redeploy while the proxy is full: ${JSON.stringify(redeploy.body)}`);

    await waitFor(() => clients.every((client) => client.closedAt !== null), { timeout: HEADERS_TIMEOUT_MS + 20_000, what: `all ${CLIENTS} slow clients closed` });
    const timedOut = clients.filter((client) => client.answer.startsWith('HTTP/1.1 408 Request Timeout'));
    assert.ok(timedOut.length > 0 && timedOut.length <= cap, `${timedOut.length} clients were held until their header timeout, at most ${cap} may be`);
    for (const client of timedOut) assert.ok(client.closedAt! - client.connectedAt >= HEADERS_TIMEOUT_MS - 100, `held ${client.closedAt! - client.connectedAt} ms`);
    assert.equal((await request(daemon.proxyPort, '/')).status, 200, 'the proxy serves again');
    await daemon.waitForLog(/ proxy-connections-refused count=\d+ /, 15_000);
  });
}

function openDescriptors(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0; // it exited: the next request to it says so
  }
}

testEachEngine('a client that does not finish its request headers in 10 s gets a 408 page and is closed; the proxy serves on', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startAppDaemon(t, { name: 'slow-headers', engine, config: { workers: 0 } });
  const clients: SlowClient[] = [];
  const sockets = new Set<net.Socket>();
  t.after(() => sockets.forEach((socket) => socket.destroy()));
  openSlowClient(daemon.proxyPort, clients, sockets);
  const [client] = clients;
  await waitFor(() => client!.closedAt !== null, { timeout: HEADERS_TIMEOUT_MS + 5000, what: 'the slow client closed' });
  // HAProxy's connection layer sends its own built-in page there, which HAProxy 2.6 lets no config replace (README: Engines).
  if (engine === 'haproxy') assert.match(client!.answer, /^HTTP\/1\.1 408 Request Time-out\r\n[^]*didn't send a complete request in time/, client!.answer);
  else assert.match(client!.answer, /^HTTP\/1\.1 408 Request Timeout\r\n[^]*\r\n\r\n408 Request Timeout\n/, client!.answer);
  assert.ok(client!.closedAt! - client!.connectedAt >= HEADERS_TIMEOUT_MS - 100, `held ${client!.closedAt! - client!.connectedAt} ms`);
  assert.equal((await request(daemon.proxyPort, '/')).status, 200, 'the proxy serves on');
});

testEachEngine('a kept-alive connection (nginx keeps its upstream ones) may wait longer than the header timeout between requests: that wait is keepAliveTimeout', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startAppDaemon(t, { name: 'keepalive-idle', engine, config: { workers: 0 } });
  const socket = net.connect(daemon.proxyPort, '127.0.0.1');
  t.after(() => socket.destroy());
  let received = '';
  let closed = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  socket.on('close', () => (closed = true));
  const answers = () => received.split('HTTP/1.1 200 OK').length - 1;
  socket.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
  await waitFor(() => answers() === 1, { timeout: 5000, what: 'the first answer' });
  // The idle wait is what is tested here, so it is a fixed one: longer than the header timeout.
  await new Promise((resolve) => setTimeout(resolve, HEADERS_TIMEOUT_MS + 1500));
  assert.equal(closed, false, 'the idle kept-alive connection is still open');
  socket.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
  await waitFor(() => answers() === 2, { timeout: 5000, what: 'the second answer on the same connection' });
});

// What a raw keep-alive client reads for one request: the status line.
function askOn(socket: net.Socket, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const onData = (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (!answer.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      resolve(answer.slice(0, answer.indexOf('\r\n')));
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`closed before an answer (read: ${JSON.stringify(answer)})`)));
    socket.write(head);
  });
}

test('connections whose request asked for a non-WebSocket upgrade (h2c) count once against the connection cap', { timeout: 60_000 }, async (t) => {
  // (160 - 128 reserved) / 2 = 16 connections; counted twice, the 9th h2c client was cut off.
  const { daemon } = await startAppDaemon(t, { name: 'h2c-cap', fdLimit: 160, config: { workers: 0 } });
  const sockets: net.Socket[] = [];
  t.after(() => sockets.forEach((socket) => socket.destroy()));
  const h2c = 'GET / HTTP/1.1\r\nHost: h2c.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n';
  for (let index = 0; index < 12; index++) {
    const socket = net.connect(daemon.proxyPort, '127.0.0.1');
    sockets.push(socket);
    assert.match(await askOn(socket, h2c), /^HTTP\/1\.1 200 /, `h2c client ${index + 1}`);
  }
  for (const [index, socket] of sockets.entries()) {
    assert.match(await askOn(socket, 'GET / HTTP/1.1\r\nHost: h2c.test\r\n\r\n'), /^HTTP\/1\.1 200 /, `second request of client ${index + 1}`);
  }
});
