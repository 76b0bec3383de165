import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startAppDaemon, startDaemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { isAlive, proxyWorkers } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

// The data path in worker processes: what the supervisor must keep true across them.

test('a proxy worker that dies is replaced, and the proxy keeps answering', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'worker-dies', config: { workers: 2 } });
  const workers = await waitFor(() => (proxyWorkers(daemon.pid).length === 2 ? proxyWorkers(daemon.pid) : undefined), { timeout: 5000, what: 'two proxy workers' });
  process.kill(workers[0]!.pid, 'SIGKILL');
  await daemon.waitForLog(new RegExp(`proxy-worker-exited pid=${workers[0]!.pid}`));
  const replaced = await waitFor(
    () => {
      const now = proxyWorkers(daemon.pid);
      return now.length === 2 && !now.some((worker) => worker.pid === workers[0]!.pid) ? now : undefined;
    },
    { timeout: 10_000, what: 'a new worker in place of the killed one' },
  );
  assert.ok(replaced.some((worker) => worker.pid === workers[1]!.pid), 'the other worker was left alone');
  // Fresh connections land on whichever worker accepts them: every one must be answered.
  for (let i = 0; i < 20; i++) {
    const answer = await request(daemon.proxyPort, '/', { timeout: 5000, agent: false });
    assert.equal(answer.status, 200, `request ${i + 1} after the replacement: ${answer.status} ${answer.body}`);
  }
});

test('the proxy workers exit with the daemon, even when it is SIGKILLed', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'worker-orphans', config: { workers: 2 } });
  const workers = await waitFor(() => (proxyWorkers(daemon.pid).length === 2 ? proxyWorkers(daemon.pid) : undefined), { timeout: 5000, what: 'two proxy workers' });
  daemon.signal('SIGKILL');
  await daemon.exited;
  await waitFor(() => workers.every((worker) => !isAlive(worker.pid)), { timeout: 5000, what: 'the orphaned workers to exit' });
  // Nothing holds the port: a new daemon can listen on it.
  const again = await startDaemon(t, { config: { target: '127.0.0.1:1', workers: 2 }, waitUntilActive: false, proxyPort: daemon.proxyPort });
  assert.equal((await request(again.proxyPort, '/', { timeout: 5000 })).status, 503);
});

test('a drain waits for a request in flight on any worker; status shows it', { timeout: 120_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'worker-drain', config: { workers: 2, drainTimeout: '20s' } });
  const first = await daemon.waitForActive();
  // Several requests on fresh connections, so they are spread over both workers, held by the
  // app until the test releases them: the drain must wait for them however long that takes.
  const slow = Array.from({ length: 4 }, () => request(daemon.proxyPort, '/hold?id=worker-drain', { timeout: 120_000, agent: false }));
  await waitFor(async () => (await daemon.service()).generations[0]?.inFlight === 4, { timeout: 30_000, what: 'four requests in flight in /status' });
  const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 4, newConnectionClients: 2, maxDuration: 60_000 });
  let answered = false;
  const redeploy = daemon.redeploy().finally(() => (answered = true));
  const draining = await waitFor(
    async () => (await daemon.service()).generations.find((generation) => generation.id === first.id && generation.state === 'draining'),
    { timeout: 30_000, what: 'the first generation draining' },
  );
  assert.ok(draining.inFlight >= 4, `the held requests are counted while it drains: ${draining.inFlight} in flight`);
  assert.equal(answered, false, 'the redeploy answered while its drain had requests in flight');
  await request(first.port, '/release?id=worker-drain');
  const answers = await Promise.all(slow);
  assert.deepEqual(answers.map((answer) => answer.status), [200, 200, 200, 200], 'every held request finished on the old generation');
  const result = (await redeploy).body;
  assert.equal(result.ok, true, JSON.stringify(result));
  const loadResult = await load.stop();
  assert.equal(loadResult.errorCount, 0, describeLoad(loadResult));
  assert.deepEqual(Object.keys(loadResult.byStatus), ['200'], describeLoad(loadResult));
  assert.doesNotMatch(daemon.log(), /drained .*cut=/, 'nothing was cut');
});

test('a hung proxy worker does not hold up a deploy: it is killed and replaced', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'worker-hung', config: { workers: 2, drainTimeout: '1s' } });
  const workers = await waitFor(() => (proxyWorkers(daemon.pid).length === 2 ? proxyWorkers(daemon.pid) : undefined), { timeout: 5000, what: 'two proxy workers' });
  const hung = workers[0]!.pid;
  process.kill(hung, 'SIGSTOP'); // alive, but answers nothing
  t.after(() => {
    if (isAlive(hung)) process.kill(hung, 'SIGKILL');
  });
  const answer = await daemon.redeploy({ timeout: 30_000 });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal((await daemon.service()).generations.length, 1, 'the old generation was stopped');
  assert.match(daemon.log(), new RegExp(`proxy-worker-unresponsive pid=${hung}`));
  await waitFor(() => !isAlive(hung) && proxyWorkers(daemon.pid).length === 2, { timeout: 10_000, what: 'the hung worker gone and replaced' });
});
