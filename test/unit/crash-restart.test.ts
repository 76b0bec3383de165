import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertOneServing, broken, get, redeployWhileHeld, startService } from '../helpers/service.js';
import { waitFor } from '../helpers/wait.js';

// The active app dying on its own is restarted as a new generation, after 0.5 s, then twice
// as long after each failure in a row. In-process (test/helpers/service.ts); the app is
// killed with SIGKILL, so it has no say in it.

function killActiveApp(setup: { service: { status(): { activeGeneration: number | null; generations: Array<{ id: number; pid: number | null }> } } }): number {
  const status = setup.service.status();
  const active = status.generations.find((generation) => generation.id === status.activeGeneration);
  assert.ok(active?.pid, `no active app to kill: ${JSON.stringify(status)}`);
  process.kill(active.pid, 'SIGKILL');
  return active.id;
}

test('an active app that dies is restarted as a new generation after 0.5 s; meanwhile status shows the restart and clients get 503', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  killActiveApp(setup);
  await waitFor(() => service.status().nextRestartInMs !== null, { timeout: 10_000, interval: 5, what: 'a restart scheduled' });

  const down = service.status();
  assert.equal(down.activeGeneration, null);
  assert.equal(down.restarts, 1);
  assert.deepEqual(
    setup.events('restart-scheduled').map(({ inMs, reason }) => ({ inMs, reason })),
    [{ inMs: 500, reason: 'default#1 crashed; no generation is serving' }],
  );
  assert.match(setup.events('stopping').find((event) => event.generation === 1)?.reason ?? '', /^crashed: /);
  const meanwhile = await get(setup.port);
  // Answered while no generation was up, unless the restart was quicker than this request.
  if (service.active === null) assert.equal(meanwhile.status, 503, meanwhile.body);

  await waitFor(() => service.active?.id === 2, { timeout: 10_000, interval: 5, what: 'generation #2 active' });
  assert.equal(service.status().nextRestartInMs, null);
  await assertOneServing(setup, 2);
});

test('each failed restart in a row doubles the wait before the next, and a redeploy meanwhile cancels the restart it waits for', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  const release = service.config;
  service.reconfigure(broken(release));
  killActiveApp(setup);
  await waitFor(() => setup.events('restart-scheduled').length === 2, { timeout: 10_000, interval: 5, what: 'a second restart scheduled after the first one failed' });

  assert.deepEqual(
    setup.events('restart-scheduled').map(({ inMs, reason }) => ({ inMs, reason })),
    [
      { inMs: 500, reason: 'default#1 crashed; no generation is serving' },
      { inMs: 1000, reason: 'deploy of default#2 failed; no generation is serving' },
    ],
  );
  service.reconfigure(release);
  const fixed = await service.redeploy('fixed release');
  assert.equal(fixed.generation, 3);
  assert.equal(fixed.previous, null);
  assert.equal(service.status().nextRestartInMs, null, 'the restart is still scheduled: it would replace the generation just deployed');
  await assertOneServing(setup, 3);
});

test('an app that dies while its generation drains is not restarted: the deploy that replaced it serves', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  const { held, deploy } = await redeployWhileHeld(setup, 60_000, 'second');

  const pid = service.status().generations.find((generation) => generation.id === 1)!.pid!;
  process.kill(pid, 'SIGKILL');
  const answer = await deploy;
  assert.ok(answer.ok && answer.value.generation === 2, `the deploy answered ${JSON.stringify(answer)}`);
  assert.notEqual((await held.response.catch((error: Error) => ({ status: error.message }))).status, 200);
  assert.deepEqual(setup.events('restart-scheduled'), []);
  assert.equal(service.status().restarts, 0);
  await assertOneServing(setup, 2);
});
