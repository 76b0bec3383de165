import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import getPort from 'get-port';
import { cli, describeCli, runCli } from '../helpers/cli.js';
import { startAppDaemon, type Daemon } from '../helpers/daemon.js';
import { ENGINES, testEachEngine, type Engine } from '../helpers/engines.js';
import { haproxyMasters, haproxyProcesses } from '../helpers/haproxy.js';
import { request } from '../helpers/http.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { appProcesses, describeProcesses, isAlive, markedProcesses, proxyWorkers } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

// `rainbowd upgrade` (and POST /upgrade, SIGUSR2): a new daemon takes over the listening
// sockets and the running apps from the old one, which finishes its requests and exits.
// The proxy runs in the daemon's process, or in proxy workers (the new daemon's workers accept
// on the same socket before the old ones stop), or it is HAProxy, which goes on serving and is
// taken over.

async function daemonPid(daemon: Daemon): Promise<number> {
  return (await daemon.status()).pid;
}

/**
 * The daemons that took over are not the test's children: found by their command line (the
 * same as the first one's) and stopped (SIGTERM, then waited for) at cleanup.
 */
function stopSuccessorsAtEnd(t: TestContext, daemon: Daemon): void {
  const configFile = join(daemon.dir, 'rainbow.conf.json');
  t.after(async () => {
    const successors = markedProcesses(configFile).filter((info) => info.pid !== daemon.pid && info.argv.includes('run'));
    for (const { pid } of successors) process.kill(pid, 'SIGTERM');
    await waitFor(() => successors.every(({ pid }) => !isAlive(pid)), { timeout: 30_000, what: 'the new daemons to exit after SIGTERM' }).catch(() => {
      for (const { pid } of successors) process.kill(pid, 'SIGKILL');
    });
  });
}

/**
 * The upgrade scenario of the issue: `rainbowd upgrade` twice and SIGUSR2 once under load, with
 * the proxy in the daemon (`workers`: 0), in proxy workers (replaced too), or HAProxy.
 */
async function upgradeUnderLoad(t: TestContext, engine: Engine, workers: number): Promise<void> {
  const pidfile = join(tmpdir(), `rainbowd-upgrade-test-${process.pid}-${engine}-${workers}.pid`);
  t.after(() => rmSync(pidfile, { force: true }));
  const { daemon, marker } = await startAppDaemon(t, { name: `upgrade-${workers}`, engine, config: { workers }, env: { RAINBOWD_PIDFILE: pidfile } });
  stopSuccessorsAtEnd(t, daemon);
  assert.equal(readFileSync(pidfile, 'utf8'), `${daemon.pid}\n`, 'the --pidfile has the daemon pid');
  const app = await daemon.waitForActive();
  const haproxy = haproxyMasters(daemon.dir);
  const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 4, newConnectionClients: 2, maxDuration: 90_000 });
  const slow = request(daemon.proxyPort, '/slow?ms=3000', { timeout: 20_000 });
  await waitFor(async () => (await daemon.service()).generations[0]?.inFlight === 1, { timeout: 10_000, what: 'the 3 s request in flight' });

  const pids = [daemon.pid];
  const oldWorkers: number[] = [];
  for (const how of ['rainbowd upgrade', 'rainbowd upgrade', 'SIGUSR2']) {
    const before = load.snapshot().total;
    const running = await waitFor(() => (proxyWorkers(pids.at(-1)!).length === workers ? proxyWorkers(pids.at(-1)!) : undefined), { timeout: 10_000, what: `${workers} proxy workers` });
    oldWorkers.push(...running.map((worker) => worker.pid));
    if (how === 'SIGUSR2') process.kill(pids.at(-1)!, 'SIGUSR2');
    else {
      const upgraded = await cli(daemon, ['upgrade']);
      assert.equal(upgraded.code, 0, describeCli(upgraded));
      assert.match(upgraded.stdout, /^upgraded: rainbowd pid \d+ serves now; pid \d+ finishes its requests and exits/);
    }
    const pid = await waitFor(async () => {
      const current = await daemonPid(daemon);
      return current === pids.at(-1) ? undefined : current;
    }, { timeout: 30_000, what: `a new daemon after ${how}` });
    pids.push(pid);
    assert.equal(JSON.parse(readFileSync(join(daemon.dir, 'rainbow.daemon.json'), 'utf8')).pid, pid, 'the daemon record has the new pid');
    assert.equal(readFileSync(pidfile, 'utf8'), `${pid}\n`, 'so has the --pidfile');
    await waitFor(() => load.snapshot().total >= before + 100, { timeout: 20_000, what: `100 responses after ${how}` });
  }
  const finished = await slow;
  assert.equal(finished.status, 200, 'the 3 s request started before the upgrades completes');
  await waitFor(() => pids.slice(0, -1).every((pid) => !isAlive(pid)), { timeout: 30_000, what: 'the old daemons to exit' });
  await waitFor(() => oldWorkers.every((pid) => !isAlive(pid)), { timeout: 30_000, what: 'the old daemons\' proxy workers to exit' });
  assert.equal(proxyWorkers(pids.at(-1)!).length, workers, 'the new daemon runs its own proxy workers');
  const result = await load.stop();
  assert.equal(result.errorCount, 0, describeLoad(result));
  assert.deepEqual(Object.keys(result.byStatus), ['200'], describeLoad(result));

  const adopted = await daemon.service();
  assert.deepEqual({ active: adopted.activeGeneration, pid: adopted.generations[0]?.pid }, { active: 1, pid: app.pid }, 'the app was not restarted');
  assert.equal(new Set(pids).size, 4, `four daemons one after the other: ${pids.join(', ')}`);
  // The same HAProxy served throughout, taken over by each new daemon.
  assert.deepEqual(haproxyMasters(daemon.dir).map((info) => info.pid), haproxy.map((info) => info.pid), describeProcesses(haproxyProcesses(daemon.dir)));
  assert.equal(haproxy.length, engine === 'haproxy' ? 1 : 0);
  // The app's output reaches the log of the daemon that runs now.
  assert.equal((await request(daemon.proxyPort, '/print?bytes=10')).status, 200);
  await daemon.waitForLog(/\[default#1\] printed 10 bytes/);

  const redeployed = await daemon.redeploy();
  assert.equal(redeployed.status, 200, JSON.stringify(redeployed.body));
  assert.equal(redeployed.body.generation, 2);
  await waitFor(() => !isAlive(app.pid!), { timeout: 15_000, what: 'the first app stopped by the redeploy' });
  assert.match(daemon.log(), /\[default#1\] app pid=\d+ generation=1: got SIGTERM \(graceful\)/, 'the handed-over app still writes to the log when it stops');
  assert.equal(appProcesses(marker).length, 1, describeProcesses(appProcesses(marker)));
  if (engine === 'haproxy') await assertShutdownStopsHaproxy(daemon, pids.at(-1)!);
}

testEachEngine('rainbowd upgrade twice and SIGUSR2 once under load: no failed request, the app keeps its pid and its output, the daemon pid changes, a 3 s request started before completes, a redeploy works after', { timeout: 120_000 }, (t, engine) => upgradeUnderLoad(t, engine, 0));

test('with proxy workers, rainbowd upgrade twice and SIGUSR2 once under load: no failed request, the workers are replaced, the app keeps its pid, a 3 s request started before completes, a redeploy works after', { timeout: 120_000 }, (t) => upgradeUnderLoad(t, 'node', 2));

/** SIGTERM to the daemon that runs now (not the test's child): it stops HAProxy, and nothing of it remains. */
async function assertShutdownStopsHaproxy(daemon: Daemon, pid: number): Promise<void> {
  const haproxy = haproxyProcesses(daemon.dir);
  process.kill(pid, 'SIGTERM');
  await waitFor(() => !isAlive(pid), { timeout: 30_000, what: 'the daemon to exit after SIGTERM' });
  assert.ok(haproxy.length > 0 && haproxy.every((info) => !isAlive(info.pid)), `HAProxy stopped with the daemon: ${describeProcesses(haproxy)}`);
  assert.equal(existsSync(join(daemon.dir, 'rainbow.haproxy.json')), false, 'its record removed');
}

testEachEngine('an upgrade to a rainbowd that fails at start exits 1 with its reason; the old daemon serves on and nothing is lost', { timeout: 120_000 }, async (t, engine) => {
  // A stand-in for a broken release: the new daemon throws as it loads while the file `broken-release` exists.
  const broken = `data:text/javascript,import { existsSync } from 'node:fs'; if (process.env.RAINBOWD_UPGRADE_FROM && existsSync('broken-release')) throw new Error('broken release');`;
  const { daemon } = await startAppDaemon(t, { name: 'upgrade-fails', engine, config: { workers: 0 }, nodeArgs: ['--import', broken] });
  stopSuccessorsAtEnd(t, daemon);
  const app = await daemon.waitForActive();
  const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 4, newConnectionClients: 2, maxDuration: 60_000 });

  writeFileSync(join(daemon.dir, 'broken-release'), '');
  const crashed = await cli(daemon, ['upgrade']);
  assert.equal(crashed.code, 1, describeCli(crashed));
  assert.match(crashed.stderr, /^rainbowd: the new rainbowd did not start: it exited \(exit code 1\) before it was ready; its output is in the log; this one serves on, nothing changed\n$/);
  assert.match(daemon.log(), /Error: broken release/);
  rmSync(join(daemon.dir, 'broken-release'));

  const configFile = join(daemon.dir, 'rainbow.conf.json');
  const config = readFileSync(configFile, 'utf8');
  writeFileSync(configFile, config.replace('{', '{"drainTimeout": "soon",'));
  const refused = await cli(daemon, ['upgrade']);
  assert.equal(refused.code, 1, describeCli(refused));
  assert.match(refused.stderr, /^rainbowd: the new rainbowd did not start: .*rainbow\.conf\.json: "drainTimeout" must be .*; this one serves on, nothing changed\n$/);
  writeFileSync(configFile, config);

  const before = load.snapshot().total;
  await waitFor(() => load.snapshot().total >= before + 100, { timeout: 20_000, what: '100 responses after the failed upgrades' });
  const result = await load.stop();
  assert.equal(result.errorCount, 0, describeLoad(result));
  assert.deepEqual(Object.keys(result.byStatus), ['200'], describeLoad(result));
  assert.equal(await daemonPid(daemon), daemon.pid, 'the old daemon serves on');
  assert.equal((await daemon.service()).generations[0]?.pid, app.pid, 'its app was not touched');
  assert.equal(JSON.parse(readFileSync(join(daemon.dir, 'rainbow.daemon.json'), 'utf8')).pid, daemon.pid, 'the daemon record names the old daemon');
  const redeployed = await daemon.redeploy();
  assert.equal(redeployed.status, 200, JSON.stringify(redeployed.body));
});

testEachEngine('after an upgrade, a redeploy drains the handed-over generation until the old daemon has finished its request on it', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startAppDaemon(t, { name: 'upgrade-drain', engine, config: { workers: 0 } });
  stopSuccessorsAtEnd(t, daemon);
  const slow = request(daemon.proxyPort, '/slow?ms=3000', { timeout: 20_000 });
  await waitFor(async () => (await daemon.service()).generations[0]?.inFlight === 1, { timeout: 10_000, what: 'the 3 s request in flight' });
  const upgraded = await cli(daemon, ['upgrade']);
  assert.equal(upgraded.code, 0, describeCli(upgraded));

  // The new daemon counts nothing in flight on generation 1: only the old one knows of the request.
  const redeployed = await daemon.redeploy();
  assert.equal(redeployed.status, 200, JSON.stringify(redeployed.body));
  assert.equal((await slow).status, 200, 'the request the old daemon carried completes');
  const log = daemon.output;
  const oldStopped = log.findIndex((line) => /rainbowd stopped reason="handed over to rainbowd pid/.test(line));
  const drained = log.findIndex((line) => / default#1 drained /.test(line));
  assert.ok(oldStopped !== -1 && oldStopped < drained, `generation 1 is drained only after the old daemon exited:\n${daemon.log()}`);
});

for (const workers of [0, 2]) {
  testEachEngine(`a port change in the config is applied by rainbowd upgrade${workers > 0 ? ` with ${workers} proxy workers` : ''}: the new daemon listens on the new port, the old port is refused once the old proxy is gone`, { timeout: 60_000, engines: workers === 0 ? ENGINES : ['node'] }, async (t, engine) => {
    const { daemon } = await startAppDaemon(t, { name: `upgrade-port-${engine}-${workers}`, engine, config: { workers } });
    stopSuccessorsAtEnd(t, daemon);
    const configFile = join(daemon.dir, 'rainbow.conf.json');
    const newPort = await getPort({ host: '127.0.0.1' });
    writeFileSync(configFile, JSON.stringify({ ...JSON.parse(readFileSync(configFile, 'utf8')), port: newPort }));
    await daemon.waitForLog(/reload-ignored key=port .*needs rainbowd upgrade \(or a restart\)/);

    // While the new port is taken, the upgrade fails with that reason and the old daemon serves on.
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(newPort, '127.0.0.1', resolve));
    const refused = await cli(daemon, ['upgrade']);
    await new Promise((resolve) => taken.close(resolve));
    assert.equal(refused.code, 1, describeCli(refused));
    assert.match(refused.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${newPort} for the proxy: it is already in use`));
    assert.equal((await request(daemon.proxyPort, '/', { agent: false })).status, 200);

    const upgraded = await cli(daemon, ['upgrade']);
    assert.equal(upgraded.code, 0, describeCli(upgraded));
    assert.equal((await request(newPort, '/', { agent: false })).status, 200);
    assert.deepEqual((await daemon.status()).proxy.port, newPort);
    await waitFor(() => request(daemon.proxyPort, '/', { agent: false }).then(() => false, (error: NodeJS.ErrnoException) => error.code === 'ECONNREFUSED'), { timeout: 30_000, what: 'the old port to be refused once the old proxy is gone' });
    if (engine === 'haproxy') await assertShutdownStopsHaproxy(daemon, await daemonPid(daemon));
  });
}

test('with controlSocket, the socket file is the new daemon\'s after rainbowd upgrade: the CLI reaches it there once the old one has exited', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'upgrade-socket', config: { workers: 0, controlSocket: 'control.sock' } });
  stopSuccessorsAtEnd(t, daemon);
  const socket = join(daemon.dir, 'control.sock');
  const upgraded = await cli(daemon, ['upgrade']);
  assert.equal(upgraded.code, 0, describeCli(upgraded));
  await waitFor(() => !isAlive(daemon.pid), { timeout: 30_000, what: 'the old daemon to exit' });
  const successor = await daemonPid(daemon);
  assert.ok(statSync(socket).isSocket(), 'the socket file is still there');
  const status = await runCli(['status', '--control-socket', socket], { cwd: tmpdir() });
  assert.equal(status.code, 0, describeCli(status));
  assert.match(status.stdout, new RegExp(`pid ${successor}`));
});

test('an app that keeps crashing at start keeps its restart backoff across rainbowd upgrade: not started at once, the next delay doubles on', { timeout: 90_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'upgrade-backoff', appArgs: '--health exit', config: { workers: 0 }, waitUntilActive: false });
  stopSuccessorsAtEnd(t, daemon);
  // 0.5 s, 1 s, 2 s, 4 s, then 8 s: long enough for the upgrade to happen while it waits.
  await waitFor(async () => {
    const service = await daemon.service();
    return !service.deploying && (service.nextRestartInMs ?? 0) >= 6000;
  }, { timeout: 40_000, what: 'a restart scheduled 8 s ahead' });
  const upgraded = await cli(daemon, ['upgrade']);
  assert.equal(upgraded.code, 0, describeCli(upgraded));

  const successor = await waitFor(async () => {
    const pid = await daemonPid(daemon);
    return pid === daemon.pid ? undefined : pid;
  }, { timeout: 30_000, what: 'the new daemon' });
  const service = await daemon.service();
  assert.equal(service.deploying, false, 'the new daemon does not start the crashing app at once');
  assert.ok(service.nextRestartInMs !== null && service.nextRestartInMs > 0, `the scheduled restart goes on: ${JSON.stringify(service)}`);
  assert.match(daemon.log(), new RegExp(`default restart-scheduled inMs=\\d+ reason="the restart rainbowd pid ${daemon.pid} had scheduled`));
  // Its attempt fails like the others, and the backoff doubles from where it was.
  await daemon.waitForLog(/default restart-scheduled inMs=16000 /, 30_000);
  assert.equal(await daemonPid(daemon), successor);
});

test('POST /upgrade from a web page is refused, and nothing changes', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'upgrade-cross-site', config: { workers: 0 } });
  const crossSite = await request(daemon.controlPort, '/upgrade', { method: 'POST', body: '', headers: { origin: 'http://evil.example' } });
  assert.equal(crossSite.status, 403, crossSite.body);
  assert.equal(await daemonPid(daemon), daemon.pid);
  assert.equal((await request(daemon.proxyPort, '/')).status, 200);
});

test('a change of the number of proxy workers, to 0 and from 0 too, is applied by rainbowd upgrade under load with no failed request', { timeout: 120_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'upgrade-workers', config: { workers: 2 } });
  stopSuccessorsAtEnd(t, daemon);
  const app = await daemon.waitForActive();
  const configFile = join(daemon.dir, 'rainbow.conf.json');
  const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 2, newConnectionClients: 1, maxDuration: 90_000 });

  let previous = 2;
  for (const workers of [1, 0, 2]) {
    const running = await daemonPid(daemon);
    writeFileSync(configFile, JSON.stringify({ ...JSON.parse(readFileSync(configFile, 'utf8')), workers }));
    // Not left to the file watch: a new daemon's may not be set up yet.
    process.kill(running, 'SIGHUP');
    await daemon.waitForLog(new RegExp(`reload-ignored key=workers running=${previous} configured=${workers} .*needs rainbowd upgrade \\(or a restart\\)`));
    const upgraded = await cli(daemon, ['upgrade']);
    assert.equal(upgraded.code, 0, describeCli(upgraded));
    const status = await daemon.status();
    assert.equal(status.proxy.workers, workers);
    assert.equal(proxyWorkers(status.pid).length, workers, `the new daemon runs ${workers} proxy worker(s)`);
    const before = load.snapshot().total;
    await waitFor(() => load.snapshot().total >= before + 50, { timeout: 20_000, what: `50 responses with ${workers} worker(s)` });
    previous = workers;
  }
  const result = await load.stop();
  assert.equal(result.errorCount, 0, describeLoad(result));
  assert.deepEqual(Object.keys(result.byStatus), ['200'], describeLoad(result));
  assert.equal((await daemon.service()).generations[0]?.pid, app.pid, 'the app was not restarted');
});
