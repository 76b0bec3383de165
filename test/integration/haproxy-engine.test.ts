import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import getPort from 'get-port';
import { cli, describeCli, runCli } from '../helpers/cli.js';
import { startAppDaemon, type Daemon } from '../helpers/daemon.js';
import { findExecutable } from '../helpers/executables.js';
import { header, request } from '../helpers/http.js';
import { describeLoad, startLoad, type LoadResult } from '../helpers/load.js';
import { repoRoot } from '../helpers/paths.js';
import { descendants, isAlive, uniqueMarker } from '../helpers/process.js';
import { startTarget } from '../helpers/target.js';
import { waitFor } from '../helpers/wait.js';

// What only the haproxy engine has: its program checked at start, HAProxy as a supervised
// child with its admin socket private to rainbowd, reloads that lose nothing, and its end
// after every drain. What both engines share is tested for each in the other files.

const skip = (await findExecutable('haproxy')) === undefined && 'haproxy is not installed (apt-get install haproxy)';
const HAPROXY = { engine: 'haproxy', workers: 0 };

function haproxyProcesses(daemon: Daemon) {
  return descendants(daemon.pid).filter((info) => info.argv[0]?.endsWith('haproxy'));
}

/** `rainbowd run` on a config in a fresh directory, for a start that is expected to fail. */
async function runWith(t: TestContext, config: Record<string, unknown>, env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-haproxy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await getPort({ host: '127.0.0.1' });
  writeFileSync(join(dir, 'rainbow.conf.json'), JSON.stringify({ target: '127.0.0.1:9', port, ...config }));
  return { port, dir, result: await runCli(['run', '--config', join(dir, 'rainbow.conf.json')], { cwd: dir, timeout: 20_000, env }) };
}

function assertNoFailure(result: LoadResult, service: string): void {
  assert.equal(result.errorCount, 0, `transport errors under load:\n${describeLoad(result)}`);
  assert.deepEqual(Object.keys(result.byStatus), ['200'], `non-200 responses under load:\n${describeLoad(result)}`);
  assert.deepEqual(result.byService, { [service]: result.total }, `responses from another service than ${service}`);
}

test('a haproxyPath that does not exist stops rainbowd at start with exit 2 and one line naming the package and haproxyPath', async (t) => {
  const { result } = await runWith(t, { engine: 'haproxy', haproxyPath: '/nonexistent/haproxy' });
  assert.equal(result.code, 2, describeCli(result));
  assert.equal(result.stderr.trim().split('\n').length, 1, describeCli(result));
  assert.match(result.stderr, /"engine": "haproxy" needs HAProxy 2\.6 or later: \/nonexistent\/haproxy does not exist.*apt-get install haproxy.*"haproxyPath"/);
});

test('an HAProxy older than 2.6 stops rainbowd at start with exit 2 and one line saying which version it found', async (t) => {
  const { result } = await runWith(t, { engine: 'haproxy', haproxyPath: join(repoRoot, 'test', 'fixtures', 'haproxy-2.4') });
  assert.equal(result.code, 2, describeCli(result));
  assert.equal(result.stderr.trim().split('\n').length, 1, describeCli(result));
  assert.match(result.stderr, /is HAProxy 2\.4\.22\S*, older than 2\.6; install a newer one \(apt-get install haproxy/);
});

test('a TMPDIR too deep for HAProxy\'s unix socket paths stops rainbowd at start with exit 2 and one line saying so, nothing left running', { skip }, async (t) => {
  const deep = mkdtempSync(join(tmpdir(), `rainbowd-deep-${'d'.repeat(60)}-`));
  t.after(() => rmSync(deep, { recursive: true, force: true }));
  const { port, result } = await runWith(t, { engine: 'haproxy' }, { TMPDIR: deep });
  assert.equal(result.code, 2, describeCli(result));
  assert.equal(result.stderr.trim().split('\n').length, 1, describeCli(result));
  assert.match(result.stderr, /^rainbowd: the haproxy engine cannot keep its sockets in .*rainbowd-deep-d+-\w+: HAProxy takes unix socket paths of at most 97 characters and these would have \d+; set TMPDIR to a shorter directory/);
  await assert.rejects(request(port, '/'), /ECONNREFUSED/, 'nothing listens on the proxy port');
});

test('workers with the haproxy engine are refused at load, naming the engine and the key', async (t) => {
  const { result } = await runWith(t, { engine: 'haproxy', workers: 2 });
  assert.equal(result.code, 2, describeCli(result));
  assert.match(result.stderr, /"workers" must be 0 or left out with "engine": "haproxy" \(workers applies to the node engine/);
});

test('a proxy port in use is refused with the same message as with the node engine', { skip }, async (t) => {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const { result } = await runWith(t, { engine: 'haproxy', port });
  assert.equal(result.code, 1, describeCli(result));
  assert.match(result.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} for the proxy: it is already in use`));
});

test('HAProxy admin and master sockets are mode 0600 in its recorded runtime directory, and HAProxy listens on TCP only on the proxy port', { skip }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-sockets', config: HAPROXY });
  const record = JSON.parse(readFileSync(join(daemon.dir, 'rainbow.haproxy.json'), 'utf8')) as { daemonPid: number; dir: string };
  assert.equal(record.daemonPid, daemon.pid);
  assert.equal(statSync(record.dir).mode & 0o777, 0o700, 'runtime directory mode');
  for (const socket of ['admin.sock', 'master.sock']) {
    assert.equal(statSync(join(record.dir, socket)).mode & 0o777, 0o600, `${socket} mode`);
  }
  const haproxy = haproxyProcesses(daemon);
  assert.ok(haproxy.length >= 2, `HAProxy's master and worker are the daemon's descendants: ${JSON.stringify(haproxy)}`);
  assert.deepEqual(listeningTcpPorts(haproxy.map((info) => info.pid)), [daemon.proxyPort]);
});

test('an idle rainbowd sends HAProxy no runtime command, and status still shows its in-flight counts', { skip, timeout: 30_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-idle', config: HAPROXY });
  const { dir } = JSON.parse(readFileSync(join(daemon.dir, 'rainbow.haproxy.json'), 'utf8')) as { dir: string };
  // Every connection to the admin socket counts, this question's too.
  const connections = async () => Number(/^CumConns: (\d+)$/m.exec(await adminCommand(join(dir, 'admin.sock'), 'show info'))?.[1]);
  const before = await connections();
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.equal(await connections(), before + 1, 'connections to the admin socket in 2 s of idling, besides our own');
  const slow = request(daemon.proxyPort, '/slow?ms=3000');
  await waitFor(async () => (await daemon.service()).generations[0]?.inFlight === 1, { timeout: 10_000, what: 'the slow request in flight in /status' });
  assert.equal((await slow).status, 200);
  assert.equal((await daemon.service()).generations[0]?.inFlight, 0, 'nothing in flight once it is answered');
});

test('HAProxy killed is logged and restarted at once from the current state, and serves again', { skip }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-killed', config: HAPROXY });
  const [master] = haproxyProcesses(daemon).filter((info) => info.ppid === daemon.pid);
  assert.ok(master, 'no HAProxy master under the daemon');
  process.kill(master.pid, 'SIGKILL');
  await daemon.waitForLog(/haproxy-exited reason="HAProxy was killed by SIGKILL; restarting it from the current state"/);
  await daemon.waitForLog(/haproxy-restarted/);
  const answer = await request(daemon.proxyPort, '/');
  assert.equal(answer.status, 200, answer.body);
  assert.equal(header(answer, 'x-service'), 'default');
  assert.ok(!isAlive(master.pid));
});

test('once a redeployed generation is listed active, every new request reaches it', { skip, timeout: 90_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-switch', config: HAPROXY });
  let active = await daemon.waitForActive();
  for (let deploy = 0; deploy < 8; deploy++) {
    const redeploying = daemon.redeploy();
    active = await daemon.waitForActive({ after: active.id });
    const fresh = await request(daemon.proxyPort, '/', { agent: false });
    assert.equal(header(fresh, 'x-generation'), String(active.id), `deploy ${deploy + 1}: a new request went to another generation`);
    assert.equal((await redeploying).status, 200);
  }
});

test('once stop or start has answered, the next request gets the maintenance page or the app', { skip, timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-modes', config: HAPROXY });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const control = (action: string) => request(daemon.controlPort, `/services/default/${action}`, { method: 'POST', body: '', agent });
  for (let cycle = 0; cycle < 5; cycle++) {
    assert.equal((await control('stop')).status, 200);
    assert.equal((await request(daemon.proxyPort, '/', { agent })).status, 503, `cycle ${cycle + 1}: a request after stop reached the app`);
    assert.equal((await control('start')).status, 200);
    assert.equal((await request(daemon.proxyPort, '/', { agent })).status, 200, `cycle ${cycle + 1}: a request after start did not reach the app`);
  }
});

test('rainbowd deploy of a new host and its remove reload HAProxy under load without a failed request', { skip, timeout: 90_000 }, async (t) => {
  const marker = uniqueMarker('haproxy-reload');
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-reload', config: HAPROXY });
  const web = await startTarget(t, { service: 'web', label: 'web', marker });
  const host = 'web.test';
  const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 8, newConnectionClients: 2, maxDuration: 60_000 });
  let webResult: LoadResult;
  let result: LoadResult;
  try {
    await waitFor(() => load.snapshot().total > 200, { timeout: 10_000, what: 'load on the default service' });
    // A connection kept alive across the reload: HAProxy's old worker answers its next request.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    assert.equal(header(await request(daemon.proxyPort, '/', { agent, headers: { host } }), 'x-service'), 'default');
    const deployed = await cli(daemon, ['deploy', 'web', '--target', web.address, '--host', host, '--health-check-path', '/health']);
    assert.equal(deployed.code, 0, describeCli(deployed));
    for (const agentOrNot of [agent, false] as const) {
      const answer = await request(daemon.proxyPort, '/', { agent: agentOrNot, headers: { host } });
      assert.equal(header(answer, 'x-service'), 'web', `once deploy has answered, web.test reaches web (${agentOrNot ? 'kept-alive' : 'new'} connection)`);
    }
    const webLoad = startLoad({ port: daemon.proxyPort, host, keepAliveClients: 4, newConnectionClients: 1, maxDuration: 30_000 });
    await waitFor(() => webLoad.snapshot().total > 200, { timeout: 10_000, what: 'load on web' });
    webResult = await webLoad.stop();
    const removed = await cli(daemon, ['remove', 'web']);
    assert.equal(removed.code, 0, describeCli(removed));
    const before = load.snapshot().total;
    await waitFor(() => load.snapshot().total > before + 200, { timeout: 10_000, what: 'load after the remove' });
  } finally {
    result = await load.stop();
  }
  assertNoFailure(result, 'default');
  assertNoFailure(webResult!, 'web');
  assert.equal(daemon.output.filter((line) => /haproxy-reloaded/.test(line)).length, 2, daemon.log());
});

test('a redeploy logs no NOTICE or WARNING line of HAProxy, and an alert of HAProxy still shows', { skip, timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-quiet', config: HAPROXY });
  const active = await daemon.waitForActive();
  assert.equal((await daemon.redeploy()).status, 200);
  await daemon.waitForActive({ after: active.id });
  assert.deepEqual(daemon.output.filter((line) => /\[haproxy\] \[(NOTICE|WARNING)\]/.test(line)), [], 'HAProxy notices in the log');
  const [worker] = haproxyProcesses(daemon).filter((info) => info.ppid !== daemon.pid);
  assert.ok(worker, 'no HAProxy worker under the daemon');
  process.kill(worker.pid, 'SIGKILL');
  await daemon.waitForLog(new RegExp(`\\[haproxy\\] \\[ALERT\\].*worker \\(${worker.pid}\\) exited with code 137`));
});

test('rainbowd killed with SIGKILL leaves HAProxy serving the app; what rainbowd itself answers gets 503 "rainbowd is restarting" until the next one listens', { skip }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-outlives', config: HAPROXY });
  const haproxy = haproxyProcesses(daemon);
  assert.ok(haproxy.length > 0, 'no HAProxy under the daemon');
  daemon.child.kill('SIGKILL');
  await daemon.exited;
  const served = await request(daemon.proxyPort, '/', { agent: false });
  assert.equal(served.status, 200, served.body);
  assert.equal(header(served, 'x-service'), 'default');
  // Not routed to any service: rainbowd's own proxy would answer 404.
  const unrouted = await request(daemon.proxyPort, '/a/../b', { agent: false });
  assert.equal(unrouted.status, 503, unrouted.body);
  assert.match(unrouted.body, /rainbowd is restarting/);
  assert.equal(header(unrouted, 'retry-after'), '1');
  assert.ok(haproxy.every((info) => isAlive(info.pid)), 'HAProxy outlives the daemon');
});

test('on SIGTERM HAProxy is stopped last, after every generation has drained and stopped, and nothing of it remains', { skip }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'haproxy-shutdown', config: HAPROXY });
  const haproxy = haproxyProcesses(daemon);
  const exit = await daemon.stop();
  assert.equal(exit.code, 0);
  const stopped = daemon.output.findIndex((line) => /default#1 stopped/.test(line));
  const haproxyStopped = daemon.output.findIndex((line) => /haproxy-stopped/.test(line));
  assert.ok(stopped !== -1 && haproxyStopped > stopped, `the app stopped at line ${stopped}, HAProxy at ${haproxyStopped}:\n${daemon.log()}`);
  await waitFor(() => haproxy.every((info) => !isAlive(info.pid)), { timeout: 5000, what: 'no HAProxy process left' });
});

/** The TCP ports the processes listen on, from their socket descriptors and /proc/net/tcp{,6}. */
function listeningTcpPorts(pids: number[]): number[] {
  const inodes = new Set<string>();
  for (const pid of pids) {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const target = (() => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          return '';
        }
      })();
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode) inodes.add(inode);
    }
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is field 1 (ADDR:PORT in hex), st field 3 (0A = LISTEN), inode field 9.
      if (fields[3] === '0A' && inodes.has(fields[9] ?? '')) ports.add(parseInt(fields[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports];
}

function adminCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    net.connect(socket).on('data', (chunk) => (answer += chunk)).on('end', () => resolve(answer)).on('error', reject).end(`${command}\n`);
  });
}
