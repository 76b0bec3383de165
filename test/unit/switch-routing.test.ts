import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { validateConfig } from '../../lib/config.js';
import { readGenerationRecord } from '../../lib/generation-record.js';
import { Logger } from '../../lib/log.js';
import { Proxy } from '../../lib/proxy.js';
import type { RouteTable } from '../../lib/route-table.js';
import { ServiceRegistry } from '../../lib/service-registry.js';
import { header, request } from '../helpers/http.js';
import { appRunLine } from '../helpers/paths.js';
import { killMarkedProcesses, uniqueMarker } from '../helpers/process.js';
import { startTarget } from '../helpers/target.js';
import { waitFor } from '../helpers/wait.js';

// A data path that takes a table some time after it is published, as HAProxy does (runtime
// commands, a reload): a switch, a mode change or a new service is reported done only once
// requests follow it.

/** The in-process proxy, taking each table 50 ms after it is published. */
class LateRoutes extends Proxy {
  private routed: Promise<void> = Promise.resolve();
  /** Called as each table takes effect. */
  onRouted: (table: RouteTable) => void = () => {};

  override update(table: RouteTable): void {
    this.routed = this.routed.then(async () => {
      await sleep(50);
      super.update(table);
      this.onRouted(table);
    });
  }

  override whenRouted(): Promise<void> {
    return this.routed;
  }
}

async function started(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-switch-'));
  const marker = uniqueMarker('switch-routing');
  const log = new Logger('text', new PassThrough().resume());
  const raw = { run: appRunLine(marker), healthCheckPath: '/health', healthCheck: { interval: '20ms' }, stopTimeout: '5s' };
  const dataPath = new LateRoutes(log);
  await dataPath.listen(0, '127.0.0.1');
  const registry = new ServiceRegistry(validateConfig(raw, join(dir, 'rainbow.conf.json')), { log, dataPath, runtimeDir: dir, via: 'rainbowd-switch-test' });
  t.after(async () => {
    await Promise.all(registry.all().map((service) => service.stopAll('the test is over')));
    await dataPath.stop();
    killMarkedProcesses(marker);
    rmSync(dir, { recursive: true, force: true });
  });
  await registry.redeploy(undefined, 'initial deploy');
  await dataPath.whenRouted();
  return { registry, marker, dataPath, dir, port: (dataPath.server.address() as AddressInfo).port };
}

test('a redeployed generation is listed active only once the data path sends new requests to it', { timeout: 60_000 }, async (t) => {
  const { registry, port } = await started(t);
  const service = registry.service('default');
  const first = service.active!.id;
  const redeploying = service.redeploy('test');
  await waitFor(() => service.status().generations.some((generation) => generation.state === 'active' && generation.id !== first), { timeout: 10_000, interval: 1, what: 'a new active generation' });
  const next = service.status().generations.find((generation) => generation.state === 'active')!.id;
  assert.equal(header(await request(port, '/', { agent: false }), 'x-generation'), String(next), 'a request right after the switch went to the previous generation');
  await redeploying;
});

test('stop and start answer once the data path routes by them', { timeout: 60_000 }, async (t) => {
  const { registry, port } = await started(t);
  await registry.changeMode('default', { action: 'stop', message: 'back soon' });
  assert.equal((await request(port, '/', { agent: false })).status, 503, 'a request right after stop reached the app');
  await registry.changeMode('default', { action: 'start' });
  assert.equal((await request(port, '/', { agent: false })).status, 200, 'a request right after start got the maintenance page');
});

test('a deploy of a new service answers once its host routes to it', { timeout: 60_000 }, async (t) => {
  const { registry, port, marker } = await started(t);
  const web = await startTarget(t, { service: 'web', label: 'web', marker });
  await registry.deploy('web', { target: web.address, host: 'web.test', healthCheck: { path: '/health' } });
  assert.equal(header(await request(port, '/', { agent: false, headers: { host: 'web.test' } }), 'x-service'), 'web', 'a request right after the deploy went to another service');
});

test('the generation record is written once the switch is routed, not before: writing it does not delay the switch', { timeout: 60_000 }, async (t) => {
  const { registry, dataPath, dir } = await started(t);
  registry.keepRecord();
  const recordedActive = () => readGenerationRecord(join(dir, 'rainbow.conf.json'))?.generations.find((generation) => generation.active)?.generation;
  const service = registry.service('default');
  const first = service.active!.id;
  const seenAtSwitch: Array<number | undefined> = [];
  dataPath.onRouted = (table) => {
    if (table.services[0]?.upstream?.generation !== first) seenAtSwitch.push(recordedActive());
  };
  await service.redeploy('test');
  assert.deepEqual(seenAtSwitch, [first], 'the record named the new generation before the data path routed to it');
  assert.equal(recordedActive(), service.active!.id);
});
