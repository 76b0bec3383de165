import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeployResult } from '../../lib/api.js';
import { header } from '../helpers/http.js';
import { assertOneServing, codeOf, get, holdRequest, redeployWhileHeld, settled, type Settled, startService, waitForState } from '../helpers/service.js';
import { waitFor } from '../helpers/wait.js';

// Rollback racing a deploy's drain, a crash restart and itself: one Service in this process,
// the fixture app as its generations, a real Proxy as its data path. Whatever the order,
// exactly one generation is active and serves, and every answer says what happened.

type Answer = Settled<DeployResult>;

function assertUndone(answer: Answer, what: string): void {
  assert.ok(!answer.ok && codeOf(answer.error) === 'ROLLED_BACK', `${what} answered ${describe(answer)}, not that a rollback undid it`);
}

test('a rollback after the old generation drained, while its sockets are being released, is refused and the deploy serves', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service, dataPath } = setup;
  dataPath.hold();
  const deploy = settled(service.redeploy('test'));
  // #1 had nothing in flight: its drain is over at once, and the answer of release is held.
  await waitFor(() => dataPath.held === 1, { timeout: 10_000, interval: 5, what: 'the release of #1 under way' });

  const rollback = settled(service.rollback());
  dataPath.letGo();
  const refused = await rollback;
  assert.ok(!refused.ok, `the rollback claimed success: ${JSON.stringify(refused.ok && refused.value)}`);
  assert.equal(codeOf(refused.error), 'NO_ROLLBACK');
  assert.match(String(refused.error), /default#1 has finished draining and is stopping; redeploy instead/);
  const answer = await deploy;
  assert.ok(answer.ok, `the deploy failed: ${answer.ok ? '' : String(answer.error)}`);
  assert.equal(answer.value.generation, 2);
  await assertOneServing(setup, 2);
});

test('a rollback during the drain takes the old generation back, and the deploy answers that it was rolled back', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  const { held, deploy } = await redeployWhileHeld(setup);
  assert.equal((await get(setup.port)).headers['x-generation'], '2');

  const rolledBack = await service.rollback();
  await held.release();
  assert.equal(rolledBack.generation, 1);
  assert.equal(rolledBack.previous, 2);
  const answer = await deploy;
  assertUndone(answer, 'the deploy');
  assert.match(String(!answer.ok && answer.error), /deployed default#2, but a rollback then took default#1 back into service before it had drained; default#1 serves/);
  await assertOneServing(setup, 1);
  const slow = await held.response;
  assert.equal(slow.status, 200);
  assert.equal(header(slow, 'x-generation'), '1');
});

test('a rollback undone by a second rollback answers so, and the generation taken back serves', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  const { held, deploy } = await redeployWhileHeld(setup);
  const heldOnTwo = await holdRequest(setup, 2);
  const first = settled(service.rollback());
  await waitForState(service, 2, 'draining');

  // It decides at once; it answers once #1, which it retires, has drained.
  const second = service.rollback();
  await Promise.all([held.release(), heldOnTwo.release()]);
  assert.equal((await second).generation, 2);
  assertUndone(await first, 'the first rollback');
  assertUndone(await deploy, 'the deploy');
  assert.equal((await held.response).status, 200);
  assert.equal((await heldOnTwo.response).status, 200);
  await waitFor(() => service.status().generations.length === 1, { timeout: 10_000, interval: 5, what: 'only one generation left' });
  await assertOneServing(setup, 2);
});

test('a rollback while a crashed generation waits for its restart takes the draining one back and cancels the restart', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  const { held, deploy } = await redeployWhileHeld(setup);
  const crashed = service.status().generations.find((generation) => generation.id === 2)!;
  process.kill(crashed.pid!, 'SIGKILL');
  await waitFor(() => service.status().nextRestartInMs !== null, { timeout: 10_000, interval: 5, what: 'a restart scheduled after the crash' });

  const rolledBack = await service.rollback();
  assert.equal(rolledBack.generation, 1);
  assert.equal(service.status().nextRestartInMs, null, 'the restart is still scheduled: it would replace the generation rolled back to');
  await held.release();
  assertUndone(await deploy, 'the deploy');
  assert.equal((await held.response).status, 200);
  await waitFor(() => service.status().generations.length === 1, { timeout: 10_000, interval: 5, what: 'only #1 left' });
  await assertOneServing(setup, 1);
});

test('whenever a rollback comes in a drain that is ending, one generation is active and serves, and both answers agree with it', { timeout: 120_000 }, async (t) => {
  const setup = await startService(t);
  const { service, dataPath } = setup;
  // The drain of each deploy waits for one held request; the rollback comes around the
  // moment the test lets that request end, from before to after. The data path's release
  // answers only once the rollback has been asked for, so a rollback after the drain always
  // meets that window.
  for (const offsetMs of [-20, -5, 0, 5, 20, 60]) {
    dataPath.hold();
    const { old, held, deploy } = await redeployWhileHeld(setup, `test, rollback ${offsetMs} ms from the end of the drain`);
    const fresh = service.active!.id;
    // The order of two events is what this test varies: these delays are its input, not waits for a condition.
    let rollback: Promise<Answer>;
    if (offsetMs < 0) {
      rollback = settled(service.rollback());
      await sleep(-offsetMs);
      await held.release();
    } else {
      const released = held.release();
      await sleep(offsetMs);
      // The rollback decides before its first await; the release answers after that.
      rollback = settled(service.rollback());
      await released;
    }
    dataPath.letGo();
    const [deployAnswer, rollbackAnswer] = await Promise.all([deploy, rollback]);
    assert.equal((await held.response).status, 200);

    const story = `rollback ${offsetMs} ms from the end of the drain: deploy ${describe(deployAnswer)}, rollback ${describe(rollbackAnswer)}`;
    if (rollbackAnswer.ok) {
      assert.equal(rollbackAnswer.value.generation, old, story);
      assertUndone(deployAnswer, story);
      await assertOneServing(setup, old);
    } else {
      assert.equal(codeOf(rollbackAnswer.error), 'NO_ROLLBACK', story);
      assert.ok(deployAnswer.ok && deployAnswer.value.generation === fresh, story);
      await assertOneServing(setup, fresh);
    }
  }
});

function describe(answer: Answer): string {
  return answer.ok ? `ok #${answer.value.generation}` : `${codeOf(answer.error)}`;
}
