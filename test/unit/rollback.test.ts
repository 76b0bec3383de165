import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeployResult } from '../../lib/api.js';
import { validateConfig } from '../../lib/config.js';
import { isRainbowError } from '../../lib/errors.js';
import { Logger } from '../../lib/log.js';
import { Proxy } from '../../lib/proxy.js';
import type { DataPath, RouteTable } from '../../lib/route-table.js';
import { Service } from '../../lib/service.js';
import { header, request, type Response } from '../helpers/http.js';
import { appRunLine } from '../helpers/paths.js';
import { killMarkedProcesses, uniqueMarker } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

// Rollback racing a deploy's drain, a crash restart and itself: one Service in this process,
// the fixture app as its generations, a real Proxy as its data path. Whatever the order,
// exactly one generation is active and serves, and every answer says what happened.

/**
 * The in-process Proxy, except that `release` answers when the test lets it: as the answer
 * of proxy workers comes after a round trip, during which the drain is over but the
 * generation's sockets are not closed yet.
 */
class HeldRelease implements DataPath {
  held = 0;
  private gate: Promise<void> = Promise.resolve();
  private open: () => void = () => {};

  constructor(readonly proxy: Proxy) {}

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  letGo(): void {
    this.open();
  }

  listen(port: number, host: string): Promise<void> {
    return this.proxy.listen(port, host);
  }
  update(table: RouteTable): void {
    this.proxy.update(table);
  }
  whenRouted(): Promise<void> {
    return this.proxy.whenRouted();
  }
  whenIdle(key: number): Promise<void> {
    return this.proxy.whenIdle(key);
  }
  async release(key: number): Promise<number> {
    this.held++;
    await this.gate;
    this.held--;
    return this.proxy.release(key);
  }
  inFlight(key: number): number {
    return this.proxy.inFlight(key);
  }
  close(): void {
    this.proxy.close();
  }
  stop(): Promise<void> {
    return this.proxy.stop();
  }
}

interface Setup {
  service: Service;
  dataPath: HeldRelease;
  port: number;
}

async function startService(t: TestContext): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-rollback-'));
  const marker = uniqueMarker('rollback');
  const lines: string[] = [];
  const out = new PassThrough().setEncoding('utf8');
  out.on('data', (chunk: string) => lines.push(chunk.trimEnd()));
  const log = new Logger('text', out);
  const raw = { run: appRunLine(marker), healthCheckPath: '/health', healthCheck: { interval: '20ms' }, drainTimeout: '30s', stopTimeout: '5s' };
  const [config] = validateConfig(raw, join(dir, 'rainbow.conf.json')).services;
  const dataPath = new HeldRelease(new Proxy(log));
  await dataPath.listen(0, '127.0.0.1');
  const service: Service = new Service(config!, {
    log,
    runtimeDir: dir,
    ownerEnv: {},
    dataPath,
    routesChanged: () => dataPath.update({ services: [service.route()], trustedProxies: [], via: 'rainbowd-rollback-test' }),
  });
  t.after(async () => {
    dataPath.letGo();
    await service.stopAll('the test is over');
    await dataPath.stop();
    killMarkedProcesses(marker);
    rmSync(dir, { recursive: true, force: true });
    if (!(t as TestContext & { passed?: boolean }).passed) for (const line of lines) t.diagnostic(line);
  });
  await service.redeploy('initial deploy');
  return { service, dataPath, port: (dataPath.proxy.server.address() as AddressInfo).port };
}

function get(port: number, path = '/', timeout = 5000): Promise<Response> {
  return request(port, path, { timeout });
}

function stateOf(service: Service, id: number): string | undefined {
  return service.status().generations.find((generation) => generation.id === id)?.state;
}

async function waitForState(service: Service, id: number, state: string): Promise<void> {
  await waitFor(() => stateOf(service, id) === state, { timeout: 10_000, interval: 5, what: `generation #${id} ${state} (it is ${stateOf(service, id)})` });
}

/** A request held by generation `id` of the app, once the proxy counts it in flight (wrapped: awaiting it would await the response). */
async function holdRequest(setup: Setup, id: number, ms: number): Promise<{ response: Promise<Response> }> {
  const response = get(setup.port, `/slow?ms=${ms}`, ms + 10_000);
  await waitFor(() => setup.service.status().generations.find((generation) => generation.id === id)?.inFlight === 1, { timeout: 5000, interval: 5, what: `a request in flight on #${id}` });
  return { response };
}

/**
 * A redeploy while a request of `ms` holds the active generation: answers once that one is
 * draining, with the request and the redeploy's answer still to come.
 */
async function redeployWhileHeld(setup: Setup, ms: number, reason = 'test'): Promise<{ old: number; sentAt: number; held: { response: Promise<Response> }; deploy: Promise<Answer> }> {
  const { service } = setup;
  const old = service.active!.id;
  const sentAt = Date.now();
  const held = await holdRequest(setup, old, ms);
  const deploy = settled(service.redeploy(reason));
  await waitForState(service, old, 'draining');
  return { old, sentAt, held, deploy };
}

type Answer = { ok: true; value: DeployResult } | { ok: false; error: unknown };

function assertUndone(answer: Answer, what: string): void {
  assert.ok(!answer.ok && codeOf(answer.error) === 'ROLLED_BACK', `${what} answered ${describe(answer)}, not that a rollback undid it`);
}

/** The promise's outcome, kept as a value: the answer of a command run in the background. */
function settled<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

function codeOf(error: unknown): string {
  return isRainbowError(error) ? error.code : `not a RainbowError: ${String(error)}`;
}

/** Exactly one generation is alive and active, it is the service's active one, and the proxy sends requests to it. */
async function assertOneServing(setup: Setup, expected: number): Promise<void> {
  const status = setup.service.status();
  assert.deepEqual(
    status.generations.map(({ id, state }) => ({ id, state })),
    [{ id: expected, state: 'active' }],
    `generations alive: ${JSON.stringify(status.generations)}`,
  );
  assert.equal(status.activeGeneration, expected);
  const response = await get(setup.port);
  assert.equal(response.status, 200, response.body);
  assert.equal(header(response, 'x-generation'), String(expected), 'the proxy sends requests elsewhere');
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
  const { held, deploy } = await redeployWhileHeld(setup, 3000);
  assert.equal((await get(setup.port)).headers['x-generation'], '2');

  const rolledBack = await service.rollback();
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
  const { held, deploy } = await redeployWhileHeld(setup, 3000);
  const heldOnTwo = await holdRequest(setup, 2, 3000);
  const first = settled(service.rollback());
  await waitForState(service, 2, 'draining');

  const second = await service.rollback();
  assert.equal(second.generation, 2);
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
  const { held, deploy } = await redeployWhileHeld(setup, 3000);
  const crashed = service.status().generations.find((generation) => generation.id === 2)!;
  process.kill(crashed.pid!, 'SIGKILL');
  await waitFor(() => service.status().nextRestartInMs !== null, { timeout: 10_000, interval: 5, what: 'a restart scheduled after the crash' });

  const rolledBack = await service.rollback();
  assert.equal(rolledBack.generation, 1);
  assert.equal(service.status().nextRestartInMs, null, 'the restart is still scheduled: it would replace the generation rolled back to');
  assertUndone(await deploy, 'the deploy');
  assert.equal((await held.response).status, 200);
  await waitFor(() => service.status().generations.length === 1, { timeout: 10_000, interval: 5, what: 'only #1 left' });
  await assertOneServing(setup, 1);
});

test('whenever a rollback comes in a drain that is ending, one generation is active and serves, and both answers agree with it', { timeout: 120_000 }, async (t) => {
  const setup = await startService(t);
  const { service, dataPath } = setup;
  const requestMs = 1000;
  // The drain of each deploy waits for one request of `requestMs`; the rollback comes around
  // the moment that request ends, from before to after. Its release answers only once the
  // rollback has been asked for, so a rollback after the drain always meets that window.
  for (const offsetMs of [-60, -20, -5, 0, 5, 20, 60]) {
    dataPath.hold();
    const { old, sentAt, held, deploy } = await redeployWhileHeld(setup, requestMs, `test, rollback ${offsetMs} ms from the end of the drain`);
    const fresh = service.active!.id;
    // The order of two events is what this test varies: this delay is its input, not a wait for a condition.
    await sleep(Math.max(0, sentAt + requestMs + offsetMs - Date.now()));
    // The rollback decides before its first await; the release answers after that.
    const rollback = settled(service.rollback());
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
