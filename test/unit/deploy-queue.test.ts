import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertOneServing, broken, codeOf, redeployWhileHeld, settled, startService, stateOf } from '../helpers/service.js';

// Deploys of one service run one at a time: what arrives during a deploy waits for it, and
// everything that waits becomes one follow-up deploy. In-process (test/helpers/service.ts).

test('redeploys asked for while a deploy runs become one follow-up deploy, and each is answered with the deploy that served it', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  const first = settled(service.redeploy('first'));
  const waiting = ['second', 'third', 'fourth'].map((reason) => settled(service.redeploy(reason)));
  const status = service.status();
  assert.equal(status.deploying, true);
  assert.equal(status.queued, true);

  const answers = await Promise.all([first, ...waiting]);
  const deployed = answers.map((answer) => (answer.ok ? [answer.value.generation, answer.value.reason] : codeOf(answer.error)));
  // The follow-up carries the reason of the first trigger that waited for it.
  assert.deepEqual(deployed, [[2, 'first'], [3, 'second'], [3, 'second'], [3, 'second']]);
  assert.equal(setup.events('queued').length, 1, 'each trigger after the first one waiting was logged as queued again');
  assert.equal(service.status().queued, false);
  await assertOneServing(setup, 3);
});

test('the next deploy starts as soon as the one before it has switched, while the generation it replaced still drains', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  const { held, deploy: first } = await redeployWhileHeld(setup, 'first');

  const second = await service.redeploy('second');
  assert.equal(second.generation, 3);
  assert.equal(second.previous, 2);
  assert.equal(setup.events('queued').length, 0, 'the second deploy waited for the drain of the first');
  assert.equal(stateOf(service, 1), 'draining');

  await held.abandon();
  const firstAnswer = await first;
  assert.ok(firstAnswer.ok, `the first deploy failed: ${!firstAnswer.ok && String(firstAnswer.error)}`);
  assert.equal(firstAnswer.value.generation, 2);
  assert.ok(firstAnswer.value.timings.stoppedMs !== null, 'the first deploy answered before #1 had stopped');
  await assertOneServing(setup, 3);
});

test('a deploy that fails answers with its reason while the active generation serves on, and the deploy waiting behind it still runs', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  const release = service.config;
  // Each deploy takes the service's config when it starts: the broken one now, the fixed one after it.
  service.reconfigure(broken(release));
  const refusedDeploy = settled(service.redeploy('broken release'));
  service.reconfigure(release);
  const fixed = settled(service.redeploy('fixed release'));

  const refused = await refusedDeploy;
  assert.equal(!refused.ok && codeOf(refused.error), 'DEPLOY_FAILED');
  assert.match(String(!refused.ok && refused.error), /default#2 exited with code 1 before it was healthy; last output: app: refusing to start/);
  const answer = await fixed;
  assert.ok(answer.ok, `the deploy after the broken one failed: ${!answer.ok && String(answer.error)}`);
  assert.equal(answer.value.generation, 3);
  assert.equal(answer.value.previous, 1, 'the broken release took traffic from #1');
  assert.equal(setup.events('restart-scheduled').length, 0, 'a refused redeploy of a serving service scheduled a restart');
  await assertOneServing(setup, 3);
});
