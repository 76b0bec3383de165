import assert from 'node:assert/strict';
import { startAppDaemon } from '../helpers/daemon.js';
import { testEachEngine } from '../helpers/engines.js';
import { header, request } from '../helpers/http.js';
import { appProcesses, describeProcesses, isAlive, markedProcesses } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

// Per engine: each must take the old generation out of its data path before rainbowd stops
// the app, and send the next request to the new one.

testEachEngine('an app that ignores SIGTERM is SIGKILLed after stopTimeout', { timeout: 60_000 }, async (t, engine) => {
  const { daemon, marker } = await startAppDaemon(t, { name: 'ignore-sigterm', appArgs: '--on-sigterm ignore', engine, config: { stopTimeout: '1s' } });
  const old = await daemon.waitForActive();
  const oldProcesses = markedProcesses(marker);
  assert.equal(appProcesses(marker).length, 1, describeProcesses(oldProcesses));

  const killed = waitFor(() => oldProcesses.every((info) => !isAlive(info.pid)), { timeout: 30_000, interval: 20, what: `generation #${old.id}'s processes to be killed` })
    .then(() => Date.now())
    .catch((error: Error) => {
      throw new Error(`${error.message}\n${describeProcesses(oldProcesses.filter((info) => isAlive(info.pid)))}`);
    });
  killed.catch(() => undefined); // awaited below; no unhandled rejection if the test fails first
  const answer = await daemon.redeploy();
  assert.equal(answer.status, 200, JSON.stringify(answer.body));

  // The app logs the SIGTERM it ignores; from then on it must live about stopTimeout.
  const sigtermSeen = await daemon.waitForLogTime(new RegExp(`\\[default#${old.id}\\] .*got SIGTERM`), 30_000);
  const lifetimeAfterSigterm = (await killed) - sigtermSeen;
  assert.ok(lifetimeAfterSigterm >= 700, `killed ${lifetimeAfterSigterm} ms after SIGTERM, before stopTimeout (1 s)`);
  assert.ok(lifetimeAfterSigterm <= 6000, `killed ${lifetimeAfterSigterm} ms after SIGTERM, long after stopTimeout (1 s)`);
  await daemon.waitForLog(new RegExp(`default#${old.id}\\b.*(SIGKILL|kill)`, 'i'), 5000);

  const fresh = await request(daemon.proxyPort, '/');
  assert.equal(header(fresh, 'x-generation'), String(answer.body.generation));
});

const masters = [
  { args: '--workers 2', description: 'an app whose master forks workers leaves no worker behind after a redeploy' },
  {
    args: '--workers 2 --master-exits-first',
    description: 'an app whose master exits on SIGTERM before its workers leaves no orphaned worker behind after a redeploy',
  },
] as const;

for (const { args, description } of masters) {
  testEachEngine(description, { timeout: 60_000 }, async (t, engine) => {
    const { daemon, marker } = await startAppDaemon(t, { name: 'workers', appArgs: args, engine, config: { stopTimeout: '2s' } });
    const old = await daemon.waitForActive();
    // master + 2 workers
    await waitFor(() => appProcesses(marker).length === 3, { timeout: 10_000, what: 'the master and its 2 workers' });
    const oldProcesses = markedProcesses(marker);

    const answer = await daemon.redeploy();
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.ok((answer.body.generation ?? 0) > old.id);

    await waitFor(() => oldProcesses.every((info) => !isAlive(info.pid)), { timeout: 15_000, what: `generation #${old.id}'s master and workers to be gone` }).catch(
      (error: Error) => {
        throw new Error(`${error.message}\nstill alive:\n${describeProcesses(oldProcesses.filter((info) => isAlive(info.pid)))}`);
      },
    );
    const fresh = await request(daemon.proxyPort, '/');
    assert.equal(fresh.status, 200);
    assert.equal(header(fresh, 'x-generation'), String(answer.body.generation));
    await waitFor(() => appProcesses(marker).length === 3, { timeout: 10_000, what: 'only the new master and its 2 workers' }).catch((error: Error) => {
      throw new Error(`${error.message}\n${describeProcesses(appProcesses(marker))}`);
    });

    const exit = await daemon.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal(describeProcesses(markedProcesses(marker)), '(none)', 'processes left after the daemon exited');
  });
}
