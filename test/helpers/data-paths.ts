import type { TestContext } from 'node:test';
import getPort from 'get-port';
import { DEFAULT_FORWARDED_FIELDS } from '../../lib/forward-headers.js';
import { HaproxyDataPath } from '../../lib/haproxy-data-path.js';
import { Proxy } from '../../lib/proxy.js';
import { ProxyWorkers } from '../../lib/proxy-workers.js';
import type { DataPath, RouteTable, ServiceRoute } from '../../lib/route-table.js';
import { findExecutable } from './executables.js';
import { log } from './proxy.js';

// Every data path rainbowd has, driven directly as the daemon drives it (route-table.ts): the
// proxy in the daemon's process, proxy workers, and the haproxy engine. A test of data-path
// behaviour runs once against each.

const haproxyMissing = (await findExecutable('haproxy')) === undefined && 'haproxy is not installed (apt-get install haproxy)';

export interface DataPathKind {
  name: string;
  create: () => DataPath;
  /** Why it cannot run on this machine, or false. */
  skip: string | false;
}

export const DATA_PATHS: readonly DataPathKind[] = [
  { name: 'the in-process proxy', create: () => new Proxy(log), skip: false },
  { name: 'proxy workers', create: () => new ProxyWorkers(2, log), skip: false },
  { name: 'the haproxy engine', create: () => new HaproxyDataPath({ haproxyPath: 'haproxy', configFile: null, log }), skip: haproxyMissing },
];

export const HAPROXY = DATA_PATHS[2]!;

/** This daemon's token in `Via` in the tables below. */
export const CONTRACT_VIA = 'rainbowd-contract';

/** The service `web`, catch-all, its active generation `key` on `upstreamPort` (none if null). */
export function route(upstreamPort: number | null, key: number, change: Partial<ServiceRoute> = {}): ServiceRoute {
  const upstream = upstreamPort === null ? null : { key, generation: key, host: '127.0.0.1', port: upstreamPort };
  return { name: 'web', hosts: [], pathPrefix: null, stripPathPrefix: true, mode: 'running', message: null, maxPauseMs: 30_000, upstream, ...change };
}

/** The route table the daemon would publish for `services`, with rainbowd's defaults unless `change` says otherwise. */
export function table(services: ServiceRoute[], change: Partial<RouteTable> = {}): RouteTable {
  return { services, trustedProxies: [], forwardedFields: DEFAULT_FORWARDED_FIELDS, via: CONTRACT_VIA, ...change };
}

/** Requests in flight to upstream `key`, as status reads them (HAProxy's counts are read when asked). */
export async function inFlightTo(dataPath: DataPath, key = 1): Promise<number> {
  await dataPath.readInFlight?.();
  return dataPath.inFlight(key);
}

/** A data path listening on a free port, stopped when the test ends. */
export async function started(t: TestContext, kind: DataPathKind, host = '127.0.0.1'): Promise<{ dataPath: DataPath; port: number }> {
  const dataPath = kind.create();
  const port = await getPort({ host });
  await dataPath.listen(port, host);
  t.after(() => dataPath.stop());
  return { dataPath, port };
}

/** A data path in front of one app on `appPort`, listening and routing to it. */
export async function routedTo(t: TestContext, kind: DataPathKind, appPort: number): Promise<{ dataPath: DataPath; port: number }> {
  const routed = await started(t, kind);
  routed.dataPath.update(table([route(appPort, 1)]));
  await routed.dataPath.whenRouted();
  return routed;
}
