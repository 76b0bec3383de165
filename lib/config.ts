import path from 'node:path';
import { cosmiconfig, defaultLoaders, type Loader } from 'cosmiconfig';
import { parseDuration } from './duration.js';
import { configError, RainbowError } from './errors.js';
import type { LogFormat } from './log.js';

export interface HealthCheckConfig {
  path: string;
  intervalMs: number;
  timeoutMs: number;
}

export interface ServiceConfig {
  name: string;
  /** Launch command (supervised service); exactly one of `run` and `target` is set. */
  run?: string;
  /** `host:port` of an app someone else runs (external service). */
  target?: string;
  hosts: string[];
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
  logFormat: LogFormat;
  services: ServiceConfig[];
}

/** Run options that flags and the environment give, winning over the file. */
export interface RunOverrides {
  port?: number;
  controlPort?: number;
  host?: string;
  controlHost?: string;
  logFormat?: LogFormat;
}

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

// Options the config file may set, besides the keys of the default service.
const daemonKeys = ['port', 'controlPort', 'host', 'controlHost', 'logFormat', 'services'] as const;
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

export async function findConfigFile(cwd: string): Promise<string | null> {
  const explorer = cosmiconfig('rainbow', {
    searchPlaces,
    searchStrategy: 'none',
    cache: false,
    loaders: { '.json': loadJson, noExt: defaultLoaders.noExt },
  });
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
  const explorer = cosmiconfig('rainbow', { cache: false, loaders: { '.json': loadJson, noExt: defaultLoaders.noExt } });
  const loaded = await explorer.load(file).catch((error: unknown) => {
    throw asConfigError(error, file);
  });
  return validateConfig(loaded?.config ?? {}, file, overrides);
}

export function validateConfig(raw: unknown, file: string, overrides: RunOverrides = {}): DaemonConfig {
  const v = new Validator(file);
  const config = v.object(raw, '(top level)');
  v.knownKeys(config, [...daemonKeys, ...serviceKeys], '');
  if (config.services !== undefined) {
    throw configError(file, 'services', 'absent: named services are not supported by this version yet');
  }
  const port = overrides.port ?? v.port(config.port, 'port') ?? 7000;
  const dir = path.dirname(path.resolve(file));
  return {
    file,
    host: overrides.host ?? v.string(config.host, 'host') ?? '127.0.0.1',
    port,
    controlHost: overrides.controlHost ?? v.string(config.controlHost, 'controlHost') ?? '127.0.0.1',
    controlPort: overrides.controlPort ?? v.port(config.controlPort, 'controlPort') ?? port + 1,
    logFormat: overrides.logFormat ?? v.oneOf(config.logFormat, 'logFormat', ['text', 'json'] as const) ?? 'text',
    services: [v.service(config, DEFAULT_SERVICE, '', dir)],
  };
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
        throw new RainbowError(
          'CONFIG_INVALID',
          `${this.file}: unknown key "${prefix}${key}" (expected one of: ${known.join(', ')})`,
        );
      }
    }
  }

  string(value: unknown, key: string): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value.trim() === '') this.fail(key, 'a non-empty string', value);
    return value;
  }

  port(value: unknown, key: string): number | undefined {
    if (value === undefined) return undefined;
    if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 65535) {
      this.fail(key, 'a port number from 1 to 65535', value);
    }
    return value as number;
  }

  integer(value: unknown, key: string, min: number, max: number): number | undefined {
    if (value === undefined) return undefined;
    if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
      this.fail(key, `a whole number from ${min} to ${max}`, value);
    }
    return value as number;
  }

  duration(value: unknown, key: string): number | undefined {
    if (value === undefined) return undefined;
    try {
      return parseDuration(value);
    } catch {
      return this.fail(key, 'a duration like "30s", "500ms", "2m" or a number of milliseconds', value);
    }
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

  target(value: unknown, key: string): string | undefined {
    const target = this.string(value, key);
    if (target === undefined) return undefined;
    const match = /^([^\s:/]+|\[[0-9a-fA-F:]+\]):(\d+)$/.exec(target);
    if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
      this.fail(key, 'a "host:port" address such as "127.0.0.1:3000"', value);
    }
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
    this.knownKeys(fine, ['path', 'interval', 'timeout'], `${prefix}healthCheck.`);
    const healthPath =
      this.string(fine.path, `${prefix}healthCheck.path`) ??
      this.string(config.healthCheckPath, `${prefix}healthCheckPath`) ??
      '/';
    if (!healthPath.startsWith('/')) this.fail(`${prefix}healthCheckPath`, 'a path starting with "/"', healthPath);
    return {
      path: healthPath,
      intervalMs: this.duration(fine.interval, `${prefix}healthCheck.interval`) ?? 50,
      timeoutMs: this.duration(fine.timeout, `${prefix}healthCheck.timeout`) ?? 5000,
    };
  }

  service(config: Record<string, unknown>, name: string, prefix: string, dir: string): ServiceConfig {
    const run = this.string(config.run, `${prefix}run`);
    const target = this.target(config.target, `${prefix}target`);
    if ((run === undefined) === (target === undefined)) {
      throw new RainbowError(
        'CONFIG_INVALID',
        `${this.file}: set exactly one of "${prefix}run" (a command that starts the app) or "${prefix}target" (host:port of an app already running)${run === undefined ? ', found neither' : ', found both'}`,
      );
    }
    const warmupMs = this.duration(config.warmupTime, `${prefix}warmupTime`);
    return {
      name,
      ...(run === undefined ? {} : { run }),
      ...(target === undefined ? {} : { target }),
      // At the top level `host` is the listen address; the default service is the catch-all.
      hosts: [],
      cwd: path.resolve(dir, this.string(config.cwd, `${prefix}cwd`) ?? '.'),
      env: this.env(config.env, `${prefix}env`),
      healthCheck: this.healthCheck(config, prefix),
      ...(warmupMs === undefined ? {} : { warmupMs }),
      deployTimeoutMs: this.duration(config.deployTimeout, `${prefix}deployTimeout`) ?? 60_000,
      drainTimeoutMs: this.duration(config.drainTimeout, `${prefix}drainTimeout`) ?? 30_000,
      stopTimeoutMs: this.duration(config.stopTimeout, `${prefix}stopTimeout`) ?? 10_000,
      maxGenerations: this.integer(config.maxGenerations, `${prefix}maxGenerations`, 1, 100) ?? 10,
      watch: (this.stringList(config.watch, `${prefix}watch`) ?? []).map((watched) => path.resolve(dir, watched)),
    };
  }
}

function asConfigError(error: unknown, file?: string): RainbowError {
  if (error instanceof RainbowError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new RainbowError('CONFIG_NOT_FOUND', `${file ?? 'config'}: no such file`);
  if (code === 'EACCES') return new RainbowError('CONFIG_INVALID', `${file ?? 'config'}: permission denied`);
  const where = file ?? (/in (\S+)/.exec(String(error))?.[1] ?? 'config');
  return new RainbowError('CONFIG_INVALID', `${where}: ${firstLine(error)}`);
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n').find((line) => line.trim() !== '')?.trim() ?? text;
}

function lineAndColumn(content: string, position: number): string {
  const before = content.slice(0, position).split('\n');
  return `line ${before.length}, column ${before.at(-1)!.length + 1}`;
}

