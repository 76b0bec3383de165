import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { validateConfig } from '../../lib/config.js';
import { isRainbowError } from '../../lib/errors.js';
import { listen } from '../../lib/listen.js';
import { Logger } from '../../lib/log.js';
import { Proxy } from '../../lib/proxy.js';
import { ServiceRegistry } from '../../lib/service-registry.js';
import { request } from '../helpers/http.js';
import { settled } from '../helpers/service.js';
import { waitFor } from '../helpers/wait.js';

// A rollback of a service deployed with `rainbowd deploy` brings back its previous target
// and the hosts it had then. Another service may have taken one of those hosts since: the
// rollback is refused as a deploy claiming it would be, and changes nothing. In-process: a
// real registry and Proxy, targets on node:http in this process.

interface Registry {
  registry: ServiceRegistry;
  proxyPort: number;
  stateFile: string;
  configFile: string;
}

async function startRegistry(t: TestContext): Promise<Registry> {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-rollback-routes-'));
  const log = new Logger('text', new PassThrough().resume());
  const proxy = new Proxy(log);
  await proxy.listen(0, '127.0.0.1');
  const proxyPort = (proxy.server.address() as AddressInfo).port;
  const configFile = join(dir, 'rainbow.conf.json');
  const config = validateConfig({ services: {}, port: proxyPort }, configFile);
  const registry = new ServiceRegistry(config, { log, dataPath: proxy, runtimeDir: dir, via: 'rainbowd-rollback-routes-test' });
  t.after(async () => {
    await Promise.all(registry.all().map((service) => service.stopAll('the test is over')));
    await proxy.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { registry, proxyPort, stateFile: join(dir, 'rainbow.state.json'), configFile };
}

interface Target {
  address: string;
  /** While closed, requests (health checks included) wait; `waiting` counts them. */
  gate: { closed: boolean; waiting: number; open(): void };
}

/** An app answering its name, on node:http in this process. */
async function target(t: TestContext, name: string): Promise<Target> {
  let waiters: Array<() => void> = [];
  const gate = {
    closed: false,
    get waiting() {
      return waiters.length;
    },
    open() {
      gate.closed = false;
      for (const go of waiters) go();
      waiters = [];
    },
  };
  const server = http.createServer((_request, response) => {
    const answer = () => response.end(name);
    if (gate.closed) waiters.push(answer);
    else answer();
  });
  await listen(server, 0, '127.0.0.1');
  t.after(() => {
    gate.open();
    server.closeAllConnections();
    server.close();
  });
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, gate };
}

async function servedAt(proxyPort: number, host: string): Promise<string> {
  const response = await request(proxyPort, '/', { headers: { host } });
  return `${response.status} ${response.body}`;
}

function isHostInUse(message: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isRainbowError(error), `not a RainbowError: ${String(error)}`);
    assert.equal(error.code, 'HOST_IN_USE');
    assert.match(error.message, message);
    return true;
  };
}

test('a rollback to hosts that another service took meanwhile is refused with the clash, and nothing changes: routes, target, state file', { timeout: 30_000 }, async (t) => {
  const { registry, proxyPort, stateFile } = await startRegistry(t);
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((name) => target(t, name)));
  await registry.deploy('api', { target: a!.address, host: 'x.test' });
  await registry.deploy('api', { target: b!.address, host: 'y.test' });
  // x.test is free now: another service takes it.
  await registry.deploy('site', { target: c!.address, host: 'x.test' });
  const saved = readFileSync(stateFile, 'utf8');

  await assert.rejects(registry.rollback('api'), isHostInUse(new RegExp(`^cannot roll back api to ${a!.address}: host is used by another service: host x\\.test belongs to "site"$`)));
  assert.equal(await servedAt(proxyPort, 'x.test'), '200 c');
  assert.equal(await servedAt(proxyPort, 'y.test'), '200 b');
  assert.equal(registry.service('api').config.target, b!.address);
  assert.deepEqual(registry.service('api').config.hosts, ['y.test']);
  assert.equal(readFileSync(stateFile, 'utf8'), saved, 'the refused rollback changed the state file');
});

test('while a rollback is health-checking the previous target, its hosts count as taken: a deploy or a reload claiming one is refused', { timeout: 30_000 }, async (t) => {
  const { registry, proxyPort, configFile } = await startRegistry(t);
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((name) => target(t, name)));
  await registry.deploy('api', { target: a!.address, host: 'x.test' });
  await registry.deploy('api', { target: b!.address, host: 'y.test' });
  a!.gate.closed = true;
  const rollback = settled(registry.rollback('api'));
  await waitFor(() => a!.gate.waiting > 0, { timeout: 10_000, interval: 5, what: 'the rollback health-checking the previous target' });

  await assert.rejects(registry.deploy('site', { target: c!.address, host: 'x.test' }), isHostInUse(/^host is used by another service: host x\.test belongs to "api"$/));
  const reload = validateConfig({ services: { site: { target: c!.address, host: 'x.test' } }, port: proxyPort }, configFile);
  assert.match(registry.refusalOf(reload) ?? 'accepted', /"services\.site": host is used by another service: host x\.test belongs to "api"/);

  a!.gate.open();
  const rolledBack = await rollback;
  assert.ok(rolledBack.ok, `the rollback failed: ${!rolledBack.ok && String(rolledBack.error)}`);
  assert.equal(await servedAt(proxyPort, 'x.test'), '200 a');
});
