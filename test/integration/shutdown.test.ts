import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAppDaemon } from '../helpers/daemon.js';
import { header, request } from '../helpers/http.js';
import { appProcesses, describeProcesses, markedProcesses } from '../helpers/process.js';
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

test('a request in flight at SIGTERM completes before the daemon exits', { timeout: 60_000 }, async (t) => {
  const { daemon, marker } = await startAppDaemon(t, { name: 'shutdown-in-flight', appArgs: '--on-sigterm exit' });
  const active = await daemon.waitForActive();

  const slow = request(daemon.proxyPort, '/slow?ms=2000', { timeout: 15_000 });
  await sleep(500);
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
