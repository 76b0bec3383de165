import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertOneServing, redeployWhileHeld, startService, stateOf } from '../helpers/service.js';

// At most `maxGenerations` generations of a service are alive: a deploy that would make one
// more stops the oldest draining one at once instead of waiting for its drain. In-process
// (test/helpers/service.ts); a request held on #1 keeps it draining.

test('past maxGenerations the oldest draining generation is stopped at once, its request cut, and the log says so', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t, { config: { maxGenerations: 2 } });
  const { service } = setup;
  const { held, deploy: second } = await redeployWhileHeld(setup, 'second');

  const third = await service.redeploy('third');
  assert.equal(third.generation, 3);
  const limits = setup.events('limit');
  assert.equal(limits.length, 1, JSON.stringify(limits));
  assert.equal(limits[0]!.generation, 1);
  assert.match(limits[0]!.reason ?? '', /^3 generations alive, more than maxGenerations 2: default#1 is stopped without waiting for its drain$/);
  assert.equal(stateOf(service, 1), undefined, 'generation #1 is still alive');
  assert.deepEqual(
    setup.events('drained').filter((event) => event.generation === 1).map((event) => event.cut),
    [1],
    'the drain of #1 did not end by cutting its request',
  );
  const cut = await held.response.then((response) => `${response.status} from #${response.headers['x-generation'] ?? '-'}`, (error: Error) => error.message);
  assert.notEqual(cut, '200 from #1', 'the request held by #1 was answered as if its drain had been waited for');

  const secondAnswer = await second;
  assert.ok(secondAnswer.ok && secondAnswer.value.generation === 2, `the deploy of #2 answered ${JSON.stringify(secondAnswer)}`);
  await assertOneServing(setup, 3);
});

test('within maxGenerations a draining generation is left to finish its drain', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t, { config: { maxGenerations: 3 } });
  const { service } = setup;
  const { held, deploy: second } = await redeployWhileHeld(setup, 'second');

  assert.equal((await service.redeploy('third')).generation, 3);
  assert.equal(stateOf(service, 1), 'draining');
  assert.deepEqual(setup.events('limit'), []);
  await held.abandon();
  assert.ok((await second).ok);
  await assertOneServing(setup, 3);
});
