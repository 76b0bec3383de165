import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertOneServing, broken, get, redeployWhileHeld, startService } from '../helpers/service.js';
import type { Service } from '../../lib/service.js';
import { request } from '../helpers/http.js';
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
  const { held, deploy } = await redeployWhileHeld(setup, 'second');

  const pid = service.status().generations.find((generation) => generation.id === 1)!.pid!;
  process.kill(pid, 'SIGKILL');
  const answer = await deploy;
  assert.ok(answer.ok && answer.value.generation === 2, `the deploy answered ${JSON.stringify(answer)}`);
  assert.notEqual((await held.response.catch((error: Error) => ({ status: error.message }))).status, 200);
  assert.deepEqual(setup.events('restart-scheduled'), []);
  assert.equal(service.status().restarts, 0);
  await assertOneServing(setup, 2);
});

/** The active app crashes on its own (the fixture's `/crash`); returns how long it had been up. */
async function crashActiveApp(service: Service): Promise<{ id: number; ageMs: number }> {
  const active = service.status().generations.find((generation) => generation.state === 'active');
  assert.ok(active, `no active generation: ${JSON.stringify(service.status())}`);
  await request(active.port, '/crash').catch(() => undefined);
  return { id: active.id, ageMs: active.ageMs };
}

test('crash restarts back off longer after each crash in a row, and start over from 0.5 s once the app stayed up the stable period', { timeout: 90_000 }, async (t) => {
  // Long enough that a freshly restarted app is crashed well within it even on a loaded machine.
  const stableAfterMs = 5000;
  const setup = await startService(t, { stableAfterMs });
  const { service } = setup;
  const delays = () => setup.events('restart-scheduled').map(({ inMs }) => inMs);
  const waitUntilActive = (id: number) => waitFor(() => service.active?.id === id && service.active.state === 'active', { timeout: 30_000, interval: 5, what: `generation #${id} active` });

  for (let id = 1; id <= 3; id++) {
    const crashed = await crashActiveApp(service);
    assert.ok(crashed.ageMs < stableAfterMs, `#${id} had been up ${crashed.ageMs} ms, past the stable period: this test needs a shorter start`);
    await waitUntilActive(id + 1);
  }
  assert.deepEqual(delays(), [500, 1000, 2000]);

  await waitFor(() => service.status().generations.find((generation) => generation.id === 4)!.ageMs >= stableAfterMs, { timeout: stableAfterMs + 10_000, interval: 20, what: '#4 up for the stable period' });
  await crashActiveApp(service);
  await waitUntilActive(5);
  assert.deepEqual(delays(), [500, 1000, 2000, 500]);
  assert.match(setup.events('stopping').find((event) => event.generation === 4)?.reason ?? '', /^crashed: exited with code 1 after \d/);
  await assertOneServing(setup, 5);
});
