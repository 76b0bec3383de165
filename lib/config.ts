import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { cosmiconfig, defaultLoaders, type Loader } from 'cosmiconfig';
import { parseDuration } from './duration.js';
import { configError, messageOf, RainbowError } from './errors.js';
import { DEFAULT_FORWARDED_FIELDS, FORWARDED_FIELDS, type ForwardedField } from './forward-headers.js';
import { didYouMean } from './suggest.js';
import type { LogFormat } from './log.js';
import { findRouteClash } from './route-clash.js';
import { findTargetLoop, parseTarget } from './target-address.js';

export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

export interface HealthCheckConfig {
  path: string;
  intervalMs: number;
  timeoutMs: number;
  /** Fail the deploy after this many 5xx answers in a row; null = only at deployTimeout. */
  failAfter: number | null;
}

export interface ServiceConfig {
  name: string;
  /** Launch command (supervised service); exactly one of `run` and `target` is set. */
  run?: string;
  /** `host:port` of an app someone else runs (external service). */
  target?: string;
  /** Host names routed to this service (exact or `*.example.com`); none = the catch-all. */
  hosts: string[];
  /** Only requests under this path go to the service; null = every path. */
  pathPrefix: string | null;
  stripPathPrefix: boolean;
  cwd: string;
  env: Record<string, string>;
  healthCheck: HealthCheckConfig;
  warmupMs?: number;
  deployTimeoutMs: number;
  drainTimeoutMs: number;
  stopTimeoutMs: number;
  maxGenerations: number;
  watch: string[];
}

export interface DaemonConfig {
  /** The file the config came from; null when there was none and flags said it all. */
  file: string | null;
  host: string;
  port: number;
  controlHost: string;
  controlPort: number;
  /** A unix socket for the control API besides its TCP port; null = none. */
  controlSocket: string | null;
  /** The bearer token every control request needs; null = none. Never logged. */
  controlToken: string | null;
  logFormat: LogFormat;
  /** Addresses (e.g. the local nginx) whose X-Forwarded-* headers are believed. */
  trustedProxies: string[];
  /** The fields saying who the client is that rainbowd sets on each request. */
  forwardedFields: ForwardedField[];
  /** Proxy worker processes; 0 = the proxy runs in the daemon's own process. */
  workers: number;
  /** The data path: rainbowd's own proxy, or HAProxy driven through its runtime API. */
  engine: Engine;
  /** The haproxy program (a name looked up on PATH, or a path), for `"engine": "haproxy"`. */
  haproxyPath: string;
  /** After this long with an idle event loop, rainbowd's processes give back what a burst made V8 keep (idle-memory.ts); 0 = never. */
  releaseIdleMemoryAfterMs: number;
  /** The default service (top-level keys) first, if there is one. */
  services: ServiceConfig[];
}

/** Run options that flags and the environment give, winning over the file. */
export interface RunOverrides {
  port?: number;
  controlPort?: number;
  host?: string;
  controlHost?: string;
  controlSocket?: string;
  controlToken?: string;
  logFormat?: LogFormat;
  workers?: number;
  engine?: Engine;
}

export const ENGINES = ['node', 'haproxy'] as const;
export type Engine = (typeof ENGINES)[number];

export const MAX_WORKERS = 64;
/**
 * Five minutes: a daemon idle that long is idle (a night, a quiet site) and gets its memory
 * back, while bursts minutes apart keep a warm young generation: a heavy burst 15 s after a
 * release measured p99 14-61 ms (median ~27), after the same pause without one 11-29 ms
 * (median ~20). It also stays clear of the benchmark's interleaved rounds, which leave a
 * target idle 70-80 s between its runs.
 */
const DEFAULT_RELEASE_IDLE_MEMORY_AFTER_MS = 5 * 60_000;

export const DEFAULT_SERVICE = 'default';

export const searchPlaces = [
  'rainbow.conf.json',
  '.rainbowrc',
  '.rainbowrc.json',
  'rainbow.config.js',
  'rainbow.config.mjs',
  'rainbow.config.cjs',
  'package.json',
];

/** The names looked for, as a person reads them: in messages and help. */
export function describeSearchPlaces(): string {
  return searchPlaces.map((name) => (name === 'package.json' ? 'package.json "rainbow"' : name)).join(', ');
}

// JSON.parse's own message names a position; users want a line and column.
const loadJson: Loader = (filepath, content) => {
  try {
    return JSON.parse(content) as unknown;
  } catch (error) {
    const position = /position (\d+)/.exec(String(error))?.[1];
    const where = position === undefined ? '' : ` at ${lineAndColumn(content, Number(position))}`;
    throw new RainbowError('CONFIG_INVALID', `${filepath}: not valid JSON${where}: ${firstLine(error)}`);
  }
};

// Every loader's error names its file: cosmiconfig's JS loaders do not, and its YAML loader
// puts the reason on a line after "YAML Error in FILE:". A config that is `null` is said so:
// cosmiconfig would take the file for missing.
function naming(loader: Loader): Loader {
  return async (filepath, content) => {
    let config: unknown;
    try {
      config = await loader(filepath, content);
    } catch (error) {
      throw error instanceof RainbowError ? error : new RainbowError('CONFIG_INVALID', `${filepath}: ${describeLoadError(error, filepath)}`);
    }
    if (config === null) throw new RainbowError('CONFIG_INVALID', `${filepath}: the config is null; it must be an object like {"run": "..."}`);
    return config;
  };
}

// import() alone: cosmiconfig falls back to require() when import() fails, and on Node 20.19+
// (which can require ES modules) that replaces a syntax error with a misleading one.
// import() keeps a module for the life of the process, by URL (a CommonJS one by path, in
// require's cache): a reload after an edit would apply the old config. The URL names the
// content, so an edited file is a new module and an unchanged one is not loaded again.
// (Files the config itself imports are not read again.)
const { cache: requireCache } = createRequire(import.meta.url);
const loadModule: Loader = async (filepath, content) => {
  delete requireCache[filepath];
  const version = createHash('sha256').update(content).digest('hex').slice(0, 16);
  return ((await import(`${pathToFileURL(filepath).href}?content=${version}`)) as { default?: unknown }).default;
};

function describeLoadError(error: unknown, filepath: string): string {
  if (!(error instanceof Error)) return String(error);
  const reason = error.message.split('\n').find((line) => line.trim() !== '' && !line.startsWith('YAML Error in'))?.trim() ?? error.message;
  const line = error.stack?.match(new RegExp(`${escapeRegExp(filepath)}(?:\\?content=\\w+)?:(\\d+)`))?.[1];
  const kind = error.name === 'Error' || error.name === 'YAMLException' ? '' : `${error.name}: `;
  return `${line === undefined ? '' : `line ${line}: `}${kind}${reason}`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const loaders = {
  '.json': naming(loadJson),
  '.js': naming(loadModule),
  '.mjs': naming(loadModule),
  '.cjs': naming(loadModule),
  noExt: naming(defaultLoaders.noExt),
};

// Options the config file may set, besides the keys of the default service.
const daemonKeys = ['port', 'controlPort', 'host', 'controlHost', 'controlSocket', 'controlToken', 'logFormat', 'trustedProxies', 'forwardedFields', 'workers', 'engine', 'haproxyPath', 'releaseIdleMemoryAfter', 'services'] as const;
// Keys of the default service (top level) and of each named service.
const serviceKeys = [
  'run',
  'target',
  'healthCheckPath',
  'healthCheck',
  'warmupTime',
  'cwd',
  'env',
  'deployTimeout',
  'drainTimeout',
  'stopTimeout',
  'maxGenerations',
  'watch',
] as const;
// Only named services route by host and path: at the top level `host` is the listen address.
const namedServiceKeys = [...serviceKeys, 'host', 'pathPrefix', 'stripPathPrefix'] as const;
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const SERVICE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/i;

export async function findConfigFile(cwd: string): Promise<string | null> {
  // An empty rainbow.conf.json is found, and then reported as empty, not as missing.
  const explorer = cosmiconfig('rainbow', { searchPlaces, searchStrategy: 'none', cache: false, loaders, ignoreEmptySearchPlaces: false });
  const found = await explorer.search(cwd).catch((error: unknown) => {
    throw asConfigError(error);
  });
  return found?.filepath ?? null;
}

/**
 * Reads and validates a config file. Each call reads the file anew (cosmiconfig's cache is
 * off), which is what a reload needs.
 */
export async function loadConfig(file: string, overrides: RunOverrides = {}): Promise<DaemonConfig> {
  const explorer = cosmiconfig('rainbow', { cache: false, loaders });
  const loaded = await explorer.load(file).catch((error: unknown) => {
    throw asConfigError(error, file);
  });
  if (loaded === null || loaded.isEmpty) {
    throw new RainbowError('CONFIG_INVALID', `${file}: the file is empty; it needs at least {"run": "..."} (the command that starts the app)`);
  }
  const config = validateConfig(loaded.config, file, overrides);
  for (const service of config.services) {
    const loop = await findTargetLoop(service.target, config);
    if (loop) throw new RainbowError('CONFIG_INVALID', `${file}: "${service.name === DEFAULT_SERVICE ? '' : `services.${service.name}.`}target": ${loop}`);
  }
  return config;
}

export function validateConfig(raw: unknown, file: string, overrides: RunOverrides = {}): DaemonConfig {
  const v = new Validator(file);
  const config = v.object(raw, '(top level)');
  v.knownKeys(config, [...daemonKeys, ...serviceKeys], '');
  const named = config.services === undefined ? {} : v.object(config.services, 'services');
  const dir = path.dirname(path.resolve(file));
  const services: ServiceConfig[] = [];
  // With named services the top level may describe no app at all: then there is no catch-all.
  if (config.run !== undefined || config.target !== undefined || config.services === undefined) {
    services.push(v.service(config, DEFAULT_SERVICE, '', dir, { hosts: [], pathPrefix: null, stripPathPrefix: true }));
  }
  for (const [name, raw] of Object.entries(named)) {
    if (!SERVICE_NAME.test(name) || name === DEFAULT_SERVICE) {
      v.fail(`services.${name}`, `named with letters, digits, "-", "_" or "." (and not "${DEFAULT_SERVICE}", the top-level service's name)`);
    }
    const service = v.namedService(raw, name, `services.${name}.`, dir);
    const clash = findRouteClash(services, service);
    if (clash) throw new RainbowError('CONFIG_INVALID', `${file}: "services.${name}": ${clash}`);
    services.push(service);
  }
  // The file's values are checked even where a flag overrides them: the next run without
  // the flag must not be the first to hear that the file is wrong.
  const fromFile = {
    host: v.string(config.host, 'host'),
    port: v.port(config.port, 'port'),
    controlHost: v.string(config.controlHost, 'controlHost'),
    controlPort: v.port(config.controlPort, 'controlPort'),
    controlSocket: v.string(config.controlSocket, 'controlSocket'),
    controlToken: v.token(config.controlToken, 'controlToken'),
    logFormat: v.oneOf(config.logFormat, 'logFormat', ['text', 'json'] as const),
    workers: v.integer(config.workers, 'workers', 0, MAX_WORKERS),
    engine: v.oneOf(config.engine, 'engine', ENGINES),
    haproxyPath: v.string(config.haproxyPath, 'haproxyPath'),
  };
  const controlToken = overrides.controlToken ?? fromFile.controlToken ?? null;
  if (fromFile.controlHost !== undefined) v.controlHost(fromFile.controlHost, controlToken);
  const port = overrides.port ?? fromFile.port ?? 7000;
  const controlSocket = overrides.controlSocket ?? fromFile.controlSocket;
  const engine = overrides.engine ?? fromFile.engine ?? 'node';
  const workers = overrides.workers ?? fromFile.workers;
  // HAProxy does the proxying itself: proxy workers would have nothing to do.
  if (engine === 'haproxy' && workers !== undefined && workers > 0) {
    v.fail('workers', '0 or left out with "engine": "haproxy" (workers applies to the node engine; with haproxy, HAProxy does the proxying)', workers);
  }
  return {
    file,
    host: overrides.host ?? fromFile.host ?? '127.0.0.1',
    port,
    controlHost: v.controlHost(overrides.controlHost ?? fromFile.controlHost ?? '127.0.0.1', controlToken),
    controlPort: overrides.controlPort ?? fromFile.controlPort ?? port + 1,
    controlSocket: controlSocket === undefined ? null : path.resolve(dir, controlSocket),
    controlToken,
    logFormat: overrides.logFormat ?? fromFile.logFormat ?? 'text',
    trustedProxies: v.stringList(config.trustedProxies, 'trustedProxies') ?? [],
    forwardedFields: v.forwardedFields(config.forwardedFields) ?? [...DEFAULT_FORWARDED_FIELDS],
    workers: workers ?? (engine === 'haproxy' ? 0 : defaultWorkers()),
    engine,
    // A bare name is looked up on PATH; a path is relative to the config file, like "cwd".
    haproxyPath: fromFile.haproxyPath?.includes('/') ? path.resolve(dir, fromFile.haproxyPath) : (fromFile.haproxyPath ?? 'haproxy'),
    releaseIdleMemoryAfterMs: v.releaseIdleMemoryAfter(config.releaseIdleMemoryAfter) ?? DEFAULT_RELEASE_IDLE_MEMORY_AFTER_MS,
    services,
  };
}

/**
 * Validates one service definition that does not come from the config file: the body of
 * `PUT /services/NAME` (`rainbowd deploy`) or an entry of the state file.
 */
export function validateServiceDefinition(raw: unknown, name: string, source: string, dir: string): ServiceConfig {
  const v = new Validator(source);
  if (!SERVICE_NAME.test(name) || name === DEFAULT_SERVICE) {
    throw new RainbowError('BAD_REQUEST', `${source}: service names use letters, digits, "-", "_" or "." (and not "${DEFAULT_SERVICE}"), got ${JSON.stringify(name)}`);
  }
  return v.namedService(raw, name, '', dir);
}

class Validator {
  constructor(private readonly file: string) {}

  fail(key: string, expected: string, got?: unknown): never {
    throw configError(this.file, key, expected, got);
  }

  object(value: unknown, key: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(key, 'an object', value);
    return value as Record<string, unknown>;
  }

  knownKeys(object: Record<string, unknown>, known: readonly string[], prefix: string): void {
    for (const key of Object.keys(object)) {
      if (!known.includes(key)) {
        const suggestion = didYouMean(key, known, (name) => `"${prefix}${name}"`);
        throw new RainbowError('CONFIG_INVALID', `${this.file}: unknown key "${prefix}${key}"${suggestion} (expected one of: ${known.join(', ')})`);
      }
    }
  }

  string(value: unknown, key: string): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value.trim() === '') this.fail(key, 'a non-empty string', value);
    return value;
  }

  // The control API can deploy and stop apps: without a token, only this machine may reach it.
  controlHost(value: string, token: string | null): string {
    if (token === null && !LOOPBACK.has(value.toLowerCase())) {
      this.fail('controlHost', 'a loopback address (127.0.0.1, ::1 or localhost) unless "controlToken" is set: without a token the control API has no authentication', value);
    }
    return value;
  }

  token(value: unknown, key: string): string | undefined {
    if (value === undefined) return undefined;
    // Not quoted back in the message: it is a secret.
    if (typeof value !== 'string' || !isValidToken(value)) this.fail(key, TOKEN_EXPECTED);
    return value;
  }

  port(value: unknown, key: string): number | undefined {
    return this.integer(value, key, 1, 65535, 'a port number from 1 to 65535');
  }

  integer(value: unknown, key: string, min: number, max: number, expected = `a whole number from ${min} to ${max}`): number | undefined {
    if (value === undefined) return undefined;
    // "7000" in quotes is the commonest slip: say what to write instead.
    if (typeof value === 'string' && /^\s*-?\d+\s*$/.test(value)) this.fail(key, `${expected}, written without quotes: ${value.trim()}, not ${JSON.stringify(value)}`);
    if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) this.fail(key, expected, value);
    return value as number;
  }

  duration(value: unknown, key: string): number | undefined {
    if (value === undefined) return undefined;
    try {
      return parseDuration(value);
    } catch (error) {
      return this.fail(key, messageOf(error), value);
    }
  }

  /** 0 (never), or long enough that idle means idle: a check each few milliseconds would itself keep the process busy. */
  releaseIdleMemoryAfter(value: unknown): number | undefined {
    const ms = this.duration(value, 'releaseIdleMemoryAfter');
    if (ms !== undefined && ms !== 0 && ms < 1000) this.fail('releaseIdleMemoryAfter', '0 (never) or a duration of at least 1s', value);
    return ms;
  }

  oneOf<T extends string>(value: unknown, key: string, allowed: readonly T[]): T | undefined {
    if (value === undefined) return undefined;
    if (!allowed.includes(value as T)) this.fail(key, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`, value);
    return value as T;
  }

  stringList(value: unknown, key: string): string[] | undefined {
    if (value === undefined) return undefined;
    const list = typeof value === 'string' ? [value] : value;
    if (!Array.isArray(list) || list.some((item) => typeof item !== 'string' || item === '')) {
      this.fail(key, 'a string or a list of strings', value);
    }
    return list as string[];
  }

  /** Field names in any case, as HTTP takes them. */
  forwardedFields(value: unknown): ForwardedField[] | undefined {
    const names = this.stringList(value, 'forwardedFields')?.map((name) => name.toLowerCase());
    const unknown = names?.find((name) => !FORWARDED_FIELDS.includes(name as ForwardedField));
    if (unknown !== undefined) this.fail('forwardedFields', `a list of ${FORWARDED_FIELDS.map((name) => `"${name}"`).join(', ')}`, unknown);
    return names as ForwardedField[] | undefined;
  }

  target(value: unknown, key: string): string | undefined {
    const target = this.string(value, key);
    if (target === undefined) return undefined;
    if (!parseTarget(target)) this.fail(key, 'a "host:port" address such as "127.0.0.1:3000"', value);
    return target;
  }

  env(value: unknown, key: string): Record<string, string> {
    if (value === undefined) return {};
    const env = this.object(value, key);
    for (const [name, item] of Object.entries(env)) {
      if (typeof item !== 'string' && typeof item !== 'number' && typeof item !== 'boolean') {
        this.fail(`${key}.${name}`, 'a string, number or boolean', item);
      }
    }
    return Object.fromEntries(Object.entries(env).map(([name, item]) => [name, String(item)]));
  }

  healthCheck(config: Record<string, unknown>, prefix: string): HealthCheckConfig {
    const fine = config.healthCheck === undefined ? {} : this.object(config.healthCheck, `${prefix}healthCheck`);
    this.knownKeys(fine, ['path', 'interval', 'timeout', 'failAfter'], `${prefix}healthCheck.`);
    const pathKey = fine.path === undefined ? `${prefix}healthCheckPath` : `${prefix}healthCheck.path`;
    const healthPath = this.string(fine.path ?? config.healthCheckPath, pathKey) ?? '/';
    if (!healthPath.startsWith('/')) this.fail(pathKey, 'a path starting with "/"', healthPath);
    return {
      path: healthPath,
      intervalMs: this.duration(fine.interval, `${prefix}healthCheck.interval`) ?? 50,
      timeoutMs: this.duration(fine.timeout, `${prefix}healthCheck.timeout`) ?? 5000,
      failAfter: this.integer(fine.failAfter, `${prefix}healthCheck.failAfter`, 1, 1000) ?? null,
    };
  }

  namedService(raw: unknown, name: string, prefix: string, dir: string): ServiceConfig {
    const config = this.object(raw, prefix.slice(0, -1) || name);
    this.knownKeys(config, namedServiceKeys, prefix);
    const pathPrefix = this.string(config.pathPrefix, `${prefix}pathPrefix`);
    if (pathPrefix !== undefined && (!pathPrefix.startsWith('/') || /[?#\s]/.test(pathPrefix))) {
      this.fail(`${prefix}pathPrefix`, 'a path starting with "/", like "/api"', pathPrefix);
    }
    const strip = config.stripPathPrefix;
    if (strip !== undefined && typeof strip !== 'boolean') this.fail(`${prefix}stripPathPrefix`, 'true or false', strip);
    const hosts = this.stringList(config.host, `${prefix}host`) ?? [];
    for (const host of hosts) {
      if (!/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(host)) {
        this.fail(`${prefix}host`, 'host names like "app.example.com" or "*.example.com"', host);
      }
    }
    const normalized = pathPrefix === undefined || pathPrefix === '/' ? null : pathPrefix.replace(/\/+$/, '');
    return this.service(config, name, prefix, dir, { hosts, pathPrefix: normalized, stripPathPrefix: strip ?? true });
  }

  service(
    config: Record<string, unknown>,
    name: string,
    prefix: string,
    dir: string,
    routes: Pick<ServiceConfig, 'hosts' | 'pathPrefix' | 'stripPathPrefix'>,
  ): ServiceConfig {
    const run = this.string(config.run, `${prefix}run`);
    const target = this.target(config.target, `${prefix}target`);
    if ((run === undefined) === (target === undefined)) {
      throw new RainbowError(
        'CONFIG_INVALID',
        `${this.file}: set exactly one of "${prefix}run" (a command that starts the app) or "${prefix}target" (host:port of an app already running)${run === undefined ? ', found neither' : ', found both'}`,
      );
    }
    const warmupMs = this.duration(config.warmupTime, `${prefix}warmupTime`);
    const cwd = path.resolve(dir, this.string(config.cwd, `${prefix}cwd`) ?? '.');
    if (run !== undefined && !isDirectory(cwd)) this.fail(`${prefix}cwd`, `an existing directory (the app is started there), but ${cwd} is not one`);
    return {
      name,
      ...(run === undefined ? {} : { run }),
      ...(target === undefined ? {} : { target }),
      ...routes,
      cwd,
      env: this.env(config.env, `${prefix}env`),
      healthCheck: this.healthCheck(config, prefix),
      ...(warmupMs === undefined ? {} : { warmupMs }),
      deployTimeoutMs: this.duration(config.deployTimeout, `${prefix}deployTimeout`) ?? 60_000,
      drainTimeoutMs: this.duration(config.drainTimeout, `${prefix}drainTimeout`) ?? 30_000,
      stopTimeoutMs: this.duration(config.stopTimeout, `${prefix}stopTimeout`) ?? DEFAULT_STOP_TIMEOUT_MS,
      maxGenerations: this.integer(config.maxGenerations, `${prefix}maxGenerations`, 1, 100) ?? 10,
      watch: (this.stringList(config.watch, `${prefix}watch`) ?? []).map((watched) => path.resolve(dir, watched)),
    };
  }
}

export const TOKEN_EXPECTED = 'a string of at least 16 printable ASCII characters without spaces, e.g. from `openssl rand -hex 32`';

export function isValidToken(token: string): boolean {
  return /^[\x21-\x7e]{16,}$/.test(token);
}

/**
 * On 1 or 2 cores the proxy shares them with the app and nginx: measured on 2 cores, workers
 * added CPU per request and ~50 MB each, and throughput only where the app left a core idle
 * (bench/README.md). With more cores there is room for them: one per core, up to 4.
 */
export function defaultWorkers(): number {
  const cores = os.availableParallelism();
  return cores <= 2 ? 0 : Math.min(cores, 4);
}

export function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

function asConfigError(error: unknown, file?: string): RainbowError {
  if (error instanceof RainbowError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new RainbowError('CONFIG_NOT_FOUND', `${file ?? 'config'}: no such file`, { cause: error });
  if (code === 'EACCES') return new RainbowError('CONFIG_INVALID', `${file ?? 'config'}: permission denied`, { cause: error });
  return new RainbowError('CONFIG_INVALID', `${file ?? 'config'}: ${firstLine(error)}`, { cause: error });
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n').find((line) => line.trim() !== '')?.trim() ?? text;
}

function lineAndColumn(content: string, position: number): string {
  const before = content.slice(0, position).split('\n');
  return `line ${before.length}, column ${before.at(-1)!.length + 1}`;
}

