import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { TestContext } from 'node:test';
import type { DeployResult } from '../../lib/api.js';
import { type ServiceConfig, validateConfig } from '../../lib/config.js';
import { isRainbowError } from '../../lib/errors.js';
import { DEFAULT_FORWARDED_FIELDS } from '../../lib/forward-headers.js';
import { Logger } from '../../lib/log.js';
import { Proxy } from '../../lib/proxy.js';
import type { DataPath, RouteTable } from '../../lib/route-table.js';
import { RESTART_BACKOFF, Service } from '../../lib/service.js';
import { header, request, type Response } from './http.js';
import { appRunLine } from './paths.js';
import { killMarkedProcesses, uniqueMarker } from './process.js';
import { waitFor } from './wait.js';

// The deploy logic in the test's own process: one real Service, the fixture app as its
// generations, a real in-process Proxy as its data path. Deploys take a fraction of a second
// and nothing is mocked.

/**
 * The in-process Proxy, except that `release` answers when the test lets it: as the answer
 * of proxy workers comes after a round trip, during which the drain is over but the
 * generation's sockets are not closed yet.
 */
export class HeldRelease implements DataPath {
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

/** One logged event (the logger writes JSON lines here). */
export type LoggedEvent = { event: string; service?: string; generation?: number; reason?: string } & Record<string, unknown>;

export interface ServiceSetup {
  service: Service;
  dataPath: HeldRelease;
  /** The proxy's port. */
  port: number;
  /** The service's directory: its cwd, where `files` were written. */
  dir: string;
  /** Every event logged so far, oldest first; `name` keeps only those. */
  events: (name?: string) => LoggedEvent[];
}

export interface ServiceOptions {
  /** Config keys of the service, over the test defaults (health checks every 20 ms). */
  config?: Record<string, unknown>;
  /** Added to the fixture app's command line (a shell word list: `$(cat f)` works). */
  appArgs?: string;
  /** Files written in the service's directory before its first deploy. */
  files?: Record<string, string>;
  /** How long a crashed app must have stayed up for its restarts to start over from the first delay (30 s in rainbowd). */
  stableAfterMs?: number;
}

/** A supervised service of the fixture app, deployed once (generation 1 serves). */
export async function startService(t: TestContext, { config = {}, appArgs = '', files = {}, stableAfterMs }: ServiceOptions = {}): Promise<ServiceSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-service-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const marker = uniqueMarker('service');
  const logged: LoggedEvent[] = [];
  const out = new PassThrough().setEncoding('utf8');
  out.on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) if (line !== '') logged.push(JSON.parse(line) as LoggedEvent);
  });
  const log = new Logger('json', out);
  const raw = { run: appRunLine(marker, appArgs), healthCheckPath: '/health', healthCheck: { interval: '20ms' }, drainTimeout: '30s', stopTimeout: '5s', ...config };
  const [serviceConfig] = validateConfig(raw, join(dir, 'rainbow.conf.json')).services;
  const dataPath = new HeldRelease(new Proxy(log));
  await dataPath.listen(0, '127.0.0.1');
  const service: Service = new Service(serviceConfig!, {
    log,
    runtimeDir: dir,
    ownerEnv: {},
    dataPath,
    routesChanged: () => dataPath.update({ services: [service.route()], trustedProxies: [], forwardedFields: DEFAULT_FORWARDED_FIELDS, via: 'rainbowd-service-test' }),
    restartBackoff: { ...RESTART_BACKOFF, stableAfterMs: stableAfterMs ?? RESTART_BACKOFF.stableAfterMs },
  });
  t.after(async () => {
    dataPath.letGo();
    await service.stopAll('the test is over');
    await dataPath.stop();
    killMarkedProcesses(marker);
    rmSync(dir, { recursive: true, force: true });
    if (!(t as TestContext & { passed?: boolean }).passed) for (const event of logged) t.diagnostic(JSON.stringify(event));
  });
  await service.redeploy('initial deploy');
  return {
    service,
    dataPath,
    port: (dataPath.proxy.server.address() as AddressInfo).port,
    dir,
    events: (name) => logged.filter((event) => name === undefined || event.event === name),
  };
}

/** `release` with an app that exits at start (the fixture's `--health exit`): a broken release. */
export function broken(release: ServiceConfig): ServiceConfig {
  return { ...release, run: `${release.run} --health exit` };
}

export function get(port: number, path = '/', timeout = 5000): Promise<Response> {
  return request(port, path, { timeout });
}

export function stateOf(service: Service, id: number): string | undefined {
  return service.status().generations.find((generation) => generation.id === id)?.state;
}

export async function waitForState(service: Service, id: number, state: string): Promise<void> {
  await waitFor(() => stateOf(service, id) === state, { timeout: 30_000, interval: 5, what: `generation #${id} ${state} (it is ${stateOf(service, id)})` });
}

export interface HeldRequest {
  /** Its answer (wrapped: awaiting the holder would await the response). */
  response: Promise<Response>;
  /** Tells the app to answer it now (the fixture's `/release`, sent to the app itself). */
  release(): Promise<void>;
  /** The client gives up on it: the generation has nothing in flight any more. */
  abandon(): Promise<void>;
}

let heldRequests = 0;

/**
 * A request held by generation `id` of the app until the test releases or abandons it
 * (the fixture's `/hold`), once the proxy counts it in flight: it ends when the test says,
 * not after a time a slow machine may outlast.
 */
export async function holdRequest(setup: ServiceSetup, id: number): Promise<HeldRequest> {
  const client = new AbortController();
  const name = `held-${++heldRequests}`;
  const response = request(setup.port, `/hold?id=${name}`, { timeout: 120_000, signal: client.signal });
  const generation = await waitFor(() => setup.service.status().generations.find((candidate) => candidate.id === id && candidate.inFlight === 1), {
    timeout: 30_000,
    interval: 5,
    what: `a request in flight on #${id}`,
  });
  return {
    response,
    release: async () => {
      await request(generation.port, `/release?id=${name}`);
    },
    abandon: async () => {
      client.abort();
      await response.catch(() => undefined);
    },
  };
}

export interface DrainingDeploy {
  /** The generation that was active, now draining. */
  old: number;
  held: HeldRequest;
  /** The redeploy's answer, still to come: it answers once `old` has drained and stopped. */
  deploy: Promise<Settled<DeployResult>>;
}

/**
 * A redeploy while a held request (holdRequest) keeps the active generation busy: resolves
 * once that one is draining, with the request and the redeploy's answer still to come.
 */
export async function redeployWhileHeld(setup: ServiceSetup, reason = 'test'): Promise<DrainingDeploy> {
  const { service } = setup;
  const old = service.active!.id;
  const held = await holdRequest(setup, old);
  const deploy = settled(service.redeploy(reason));
  await waitForState(service, old, 'draining');
  return { old, held, deploy };
}

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** The promise's outcome, kept as a value: the answer of a command run in the background. */
export function settled<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

export function codeOf(error: unknown): string {
  return isRainbowError(error) ? error.code : `not a RainbowError: ${String(error)}`;
}

/** Exactly one generation is alive and active, it is the service's active one, and the proxy sends requests to it. */
export async function assertOneServing(setup: ServiceSetup, expected: number): Promise<void> {
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
