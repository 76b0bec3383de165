// The command line of `npm run bench`, and what each mode runs.
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { AppName } from './apps.js';
import type { LoadSpec } from './load.js';
import type { Tools } from './tools.js';

export const USAGE = `usage: npm run bench [-- options]

  --quick          under a minute: the hello-world app only, 1 round of 2 s, 3 deploys
  --rounds N       interleaved rounds per app (default: 5 for hello-world, 3 for the others)
  --duration S     seconds per wrk run (default 8)
  --deploys N      redeploys under load (default 10)
  --workers N      rainbowd's proxy workers in the redeploy benchmark (default: rainbowd's own)
  --engine E       rainbowd's engine in the redeploy benchmark: node or haproxy (default node)
  --only LIST      run only these parts: hello,slow,gunicorn,deploy
  --without LIST   act as if these were not installed: wrk,nginx,haproxy,gunicorn
  --compare FILE   also show this run next to an earlier results file (\`last\`: the newest one)
  --pin            each proxy under test on CPU 0 and its app on CPU 1 (wrk where the kernel
                   puts it; rainbowd's proxy workers on both): on 2 cores the kernel otherwise
                   pairs the proxy with the app in some runs and not in others (bench/README.md)
  --keep           keep the temporary directory (configs, logs) and print its path
  --help`;

export interface Plan {
  mode: 'full' | 'quick';
  apps: { name: AppName; rounds: number; extraConnections?: number }[];
  load: LoadSpec;
  warmupSeconds: number;
  /** Before each run, how long to wait for other processes to go quiet. */
  quietWaitMs: number;
  /** After an app's loads, measure rainbowd's memory again once it has given back what it kept (not in --quick). */
  idleMemory: boolean;
  /** Redeploys under load; 0: that part is not run. */
  deploys: number;
  /** rainbowd's proxy workers for the redeploys; undefined: its default. */
  deployWorkers: number | undefined;
  /** rainbowd's engine for the redeploys; undefined: its default. */
  deployEngine: 'node' | 'haproxy' | undefined;
  without: (keyof Tools)[];
  compare?: string;
  /** The proxy under test on CPU 0, its app on CPU 1. */
  pin: boolean;
  keep: boolean;
}

export function parseOptions(argv: string[]): Plan {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      deploys: { type: 'string' },
      workers: { type: 'string' },
      engine: { type: 'string' },
      only: { type: 'string', default: '' },
      without: { type: 'string', default: '' },
      compare: { type: 'string' },
      pin: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const positive = (name: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const number = Number(value);
    if (!Number.isInteger(number) || number < 1) throw new TypeError(`--${name} must be a whole number ≥ 1, got ${JSON.stringify(value)}`);
    return number;
  };
  const rounds = positive('rounds', values.rounds);
  const duration = positive('duration', values.duration);
  const deploys = positive('deploys', values.deploys);
  if (values.workers !== undefined && !/^\d+$/.test(values.workers)) throw new TypeError(`--workers must be a whole number ≥ 0, got ${JSON.stringify(values.workers)}`);
  const deployWorkers = values.workers === undefined ? undefined : Number(values.workers);
  if (values.engine !== undefined && values.engine !== 'node' && values.engine !== 'haproxy') throw new TypeError(`--engine must be node or haproxy, got ${JSON.stringify(values.engine)}`);
  const deployEngine = values.engine as Plan['deployEngine'];
  const quick = values.quick;
  if (values.pin && os.availableParallelism() < 2) throw new TypeError(`--pin needs 2 CPUs, this machine has ${os.availableParallelism()}`);
  const without = list('without', values.without, ['wrk', 'nginx', 'haproxy', 'gunicorn'] as const);
  const parts = ['hello', 'slow', 'gunicorn', 'deploy'] as const;
  const only = list('only', values.only, parts);
  const wanted = (part: (typeof parts)[number]) => only.length === 0 || only.includes(part);
  const apps: Plan['apps'] = quick
    ? [{ name: 'hello', rounds: rounds ?? 1 }]
    : [
        { name: 'hello', rounds: rounds ?? 5 },
        // The 256-connection run: does the proxy hold its latency when many clients wait?
        { name: 'slow', rounds: rounds ?? 3, extraConnections: 256 },
        { name: 'gunicorn', rounds: rounds ?? 3 },
      ];
  return {
    mode: quick ? 'quick' : 'full',
    apps: apps.filter((app) => wanted(app.name)),
    load: { threads: 2, connections: 64, durationSeconds: duration ?? (quick ? 2 : 8) },
    warmupSeconds: quick ? 1 : 2,
    // --quick checks that everything works (CI): it does not wait for a quiet machine.
    quietWaitMs: quick ? 0 : 20_000,
    idleMemory: !quick,
    deploys: wanted('deploy') ? (deploys ?? (quick ? 3 : 10)) : 0,
    deployWorkers,
    deployEngine,
    without,
    compare: values.compare,
    pin: values.pin,
    keep: values.keep,
  };
}

function list<T extends string>(option: string, value: string, allowed: readonly T[]): T[] {
  const names = value.split(',').filter(Boolean);
  for (const name of names) {
    if (!allowed.includes(name as T)) throw new TypeError(`--${option} takes ${allowed.join(', ')}; got ${JSON.stringify(name)}`);
  }
  return names as T[];
}
