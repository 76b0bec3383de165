import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import getPort from 'get-port';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAppDaemon, startDaemon } from '../helpers/daemon.js';
import { testEachEngine } from '../helpers/engines.js';
import { header, request } from '../helpers/http.js';
import { appProcesses, describeProcesses, markedProcesses, proxyWorkers, uniqueMarker } from '../helpers/process.js';
import { appRunLine, daemonBin, shellQuote } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} stops every generation and the daemon exits 0, leaving no process behind`, { timeout: 60_000 }, async (t) => {
    const { daemon, marker } = await startAppDaemon(t, { name: `shutdown-${signal}`, appArgs: '--workers 2' });
    await waitFor(() => appProcesses(marker).length === 3, { timeout: 10_000, what: 'the master and its 2 workers' });

    daemon.signal(signal);
    const exit = await Promise.race([daemon.exited, sleep(30_000, undefined, { ref: false })]);
    assert.deepEqual(exit, { code: 0, signal: null }, `the daemon did not exit 0 within 30 s of ${signal}`);
    assert.equal(describeProcesses(markedProcesses(marker)), '(none)', 'processes left after the daemon exited');
  });
}

testEachEngine('a request in flight at SIGTERM completes before the daemon exits', { timeout: 60_000 }, async (t, engine) => {
  const { daemon, marker } = await startAppDaemon(t, { name: 'shutdown-in-flight', appArgs: '--on-sigterm exit', engine });
  const active = await daemon.waitForActive();

  const slow = request(daemon.proxyPort, '/slow?ms=2000', { timeout: 15_000 });
  await daemon.waitForInFlight();
  daemon.signal('SIGTERM');

  // The proxy is the daemon: a response proves the daemon waited for the request.
  const response = await slow;
  assert.equal(response.status, 200, response.body);
  assert.equal(header(response, 'x-generation'), String(active.id));
  const exit = await daemon.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.equal(describeProcesses(markedProcesses(marker)), '(none)', 'processes left after the daemon exited');
});

test('an app that ignores SIGTERM does not keep the daemon from shutting down', { timeout: 60_000 }, async (t) => {
  const { daemon, marker } = await startAppDaemon(t, { name: 'shutdown-ignore', appArgs: '--on-sigterm ignore', config: { stopTimeout: '1s' } });

  const started = Date.now();
  const exit = await daemon.stop(20_000);
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - started >= 700, 'the daemon did not give the app its stopTimeout');
  assert.equal(describeProcesses(markedProcesses(marker)), '(none)', 'processes left after the daemon exited');
});

// The app's shell starts a process that leaves the app's process group and its parent (a
// double fork with setsid) before it starts the app itself: `(setsid node -e ... TAG &)`.
function appWithStray(marker: string, appArgs = ''): { run: string; strays: () => Array<{ pid: number; pgid: number; generation: string | undefined }> } {
  const tag = `${marker}-stray`;
  const run = `(setsid ${shellQuote(process.execPath)} -e 'setInterval(() => {}, 1 << 30)' ${tag} >/dev/null 2>&1 &); ${appRunLine(marker, appArgs)}`;
  const strays = () =>
    markedProcesses(marker)
      .filter((info) => info.argv[1] === '-e' && info.argv.at(-1) === tag)
      .map((info) => ({ pid: info.pid, pgid: info.pgid, generation: /(?:^|\0)RAINBOWD_GENERATION=(\d+)/.exec(readFileSync(`/proc/${info.pid}/environ`, 'utf8'))?.[1] }));
  return { run, strays };
}

test('processes an app started outside its process group (setsid, a double fork) are stopped with its generation, at a redeploy and at shutdown', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('strays');
  const { run, strays } = appWithStray(marker);
  const daemon = await startDaemon(t, { marker, config: { run, healthCheckPath: '/health', stopTimeout: '2s' } });
  await waitFor(() => strays().length === 1, { timeout: 10_000, what: "generation 1's stray process" });
  const [first] = strays();
  assert.equal(first!.generation, '1');
  assert.equal(first!.pgid, first!.pid, "the stray leads a group of its own, not the app's");

  const redeployed = await daemon.redeploy();
  assert.equal(redeployed.status, 200, JSON.stringify(redeployed.body));
  // The answer comes once generation 1 is stopped: its stray must be gone with it.
  await waitFor(() => strays().every((info) => info.generation === '2') && strays().length === 1, { timeout: 5000, what: `only generation 2's stray (seen: ${JSON.stringify(strays())})` });
  assert.match(daemon.log(), /default#1 stopped .*1 process\(es\) that had left its process group stopped too/);

  assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
  await waitFor(() => strays().length === 0, { timeout: 5000, what: 'no stray process after the daemon exited' }).catch((error: Error) => {
    throw new Error(`${error.message}\n${describeProcesses(markedProcesses(marker))}`);
  });
});

// Makes the daemon throw from a signal handler: a stand-in for a bug in rainbowd.
const INJECT_BUG = `data:text/javascript,process.on('SIGUSR2', () => { throw new Error('injected bug'); });`;

test('a crash (an exception nothing caught) is logged as a bug, the apps get SIGTERM (with what left their process group) and rainbowd exits 1', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('crashed');
  const { run, strays } = appWithStray(marker, '--workers 2');
  const daemon = await startDaemon(t, { marker, config: { run, healthCheckPath: '/health' }, nodeArgs: ['--import', INJECT_BUG] });
  await waitFor(() => appProcesses(marker).length === 4 && strays().length === 1, { timeout: 10_000, what: 'the master, its 2 workers and a process that left their group' });

  daemon.signal('SIGUSR2');
  const exit = await Promise.race([daemon.exited, sleep(10_000, undefined, { ref: false })]);
  assert.deepEqual(exit, { code: 1, signal: null });
  assert.match(daemon.log(), /rainbowd crashed reason="internal error, please report it: Error: injected bug\\n.*; every app was sent SIGTERM"/);
  assert.deepEqual(readdirSync(tmpdir()).filter((entry) => entry.startsWith(`rainbowd-${daemon.pid}-`)), [], 'its runtime directory is removed');
  await waitFor(() => markedProcesses(marker).length === 0 && proxyWorkers(daemon.pid).length === 0, { timeout: 10_000, what: 'the apps and proxy workers to exit' });
});

// Makes installing rainbowd's SIGHUP handler throw: a stand-in for a bug in the start sequence.
const INJECT_START_BUG = `data:text/javascript,const on = process.on; process.on = function (event, ...rest) { if (event === 'SIGHUP') throw new Error('injected start bug'); return on.call(this, event, ...rest); };`;

test('an exception in the start sequence stops rainbowd with exit 1 and the error, rather than leaving it listening without deploying', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await getPort({ host: '127.0.0.1' });
  const controlPort = await getPort({ host: '127.0.0.1', exclude: [port] });
  const configFile = join(dir, 'rainbow.conf.json');
  writeFileSync(configFile, JSON.stringify({ run: 'sleep 600', workers: 0, port, controlPort }));
  // Killed after the timeout if it hangs on, which is the bug.
  const result = await promisify(execFile)(process.execPath, ['--import', INJECT_START_BUG, daemonBin, 'run', '--config', configFile], { timeout: 15_000 }).then(
    () => assert.fail('rainbowd exited 0'),
    (error: { code: number | null; signal: string | null; stderr: string }) => error,
  );
  assert.deepEqual([result.code, result.signal], [1, null], result.stderr);
  assert.match(result.stderr, /^rainbowd: internal error \(please report it\): Error: injected start bug\n/);
});
