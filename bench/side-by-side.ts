// One app with every target in front of it (nothing, rainbowd as one process and with proxy
// workers, nginx, haproxy), driven by
// the same load in interleaved rounds: round-robin over the targets, each round starting
// one target further, so drift of the machine (heat, other jobs) spreads over all of them.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import getPort from 'get-port';
import { defaultWorkers } from '../lib/config.js';
import type { FixtureApp } from './apps.js';
import { waitForHttp } from './http.js';
import { describeLoad, errorCount, runWrk, type LoadSpec, type SocketErrors, type WrkResult } from './load.js';
import { startHaproxy, startNginx, startUndiciMinimal } from './peers.js';
import { childrenNamed, groupCpuSeconds, groupMemoryOf, groupOf, type Memory, pinGroup, sumMemory } from './proc.js';
import type { Launched, ProcessRegistry } from './processes.js';
import { DISTURBED_SHARE, markCpu, otherShareSince, waitForQuiet } from './quiet.js';
import { Rainbowd } from './rainbowd.js';
import { median, sum } from './stats.js';
import type { Tools } from './tools.js';

export type TargetName = 'direct' | 'rainbowd' | 'rainbowd-workers' | 'rainbowd-haproxy' | 'undici-minimal' | 'nginx' | 'haproxy';
export const TARGET_ORDER: readonly TargetName[] = ['direct', 'rainbowd', 'rainbowd-workers', 'rainbowd-haproxy', 'undici-minimal', 'nginx', 'haproxy'];

/** The proxy workers of the rainbowd-workers target: the default where it has some, else 2. */
export const BENCH_WORKERS = Math.max(2, defaultWorkers());

/** The ways rainbowd can run its data path: in the daemon's process, in worker processes, and HAProxy (the haproxy engine). */
const RAINBOWD_VARIANTS: ReadonlyArray<{ name: TargetName; workers: number; engine: 'node' | 'haproxy' }> = [
  { name: 'rainbowd', workers: 0, engine: 'node' },
  { name: 'rainbowd-workers', workers: BENCH_WORKERS, engine: 'node' },
  { name: 'rainbowd-haproxy', workers: 0, engine: 'haproxy' },
];

/** `releaseIdleMemoryAfter` for the memory measured once rainbowd is idle again. */
const IDLE_MEMORY_PERIOD_S = 10;

// A run during which other processes took more than DISTURBED_SHARE of the CPU is run again,
// at most this many times.
const RUNS_AGAIN_WHEN_DISTURBED = 2;

export interface BenchContext {
  registry: ProcessRegistry;
  root: string;
  tools: Tools;
  workspace: string;
  /** Progress, for the person waiting (stderr). */
  progress: (line: string) => void;
  /** Before each run: its proxy on CPU 0 (proxy workers on both), its app on CPU 1. */
  pin: boolean;
}

export interface LoadPlan {
  spec: LoadSpec;
  rounds: number;
}

export interface AppPlan {
  app: FixtureApp;
  warmupSeconds: number;
  /** Before each run, how long to wait for other processes to go quiet (0: do not sample). */
  quietWaitMs: number;
  /** After the loads, measure rainbowd's memory again once it has given back what it kept. */
  idleMemory: boolean;
  load: LoadPlan;
  /** A second load on the same processes (256 connections on the 20 ms app). */
  extraLoad?: LoadPlan;
}

interface Target {
  name: TargetName;
  url: string;
  /** Any of these exiting spoils the run. */
  processes: Launched[];
  /** The proxy's process groups (rainbowd's and its HAProxy's), whose CPU time is charged to it (none for direct). */
  proxyGroups: number[];
  /** The app's process group behind this target. */
  appGroup?: number;
  /** Where --pin lets its proxy run: one CPU, or both for rainbowd's proxy workers, which are there to use them. */
  proxyCpus: '0' | '0,1';
}

export interface Run {
  round: number;
  target: TargetName;
  wrk: WrkResult;
  proxyCpuSeconds: number | null;
  appCpuSeconds: number | null;
  /** Share of the machine's CPU that processes not part of this run used while it ran. */
  otherCpuShare: number;
  /** Disturbed by other processes and run again: not in the medians. */
  discarded: boolean;
}

export interface TargetSummary {
  target: TargetName;
  /** Runs in the medians (disturbed runs that were repeated are not). */
  runs: number;
  /** Medians over the rounds. */
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Totals over the rounds: one failed request anywhere counts. */
  socketErrors: SocketErrors;
  badStatus: number;
  errors: number;
  proxyCpuMicrosPerRequest: number | null;
  appCpuMicrosPerRequest: number | null;
}

export interface LoadOutcome {
  command: string;
  spec: LoadSpec;
  rounds: number;
  targets: TargetSummary[];
  runs: Run[];
}

export interface RainbowdMemory {
  target: TargetName;
  /** Proxy worker processes; the figures are of the daemon and its workers (or its HAProxy) together. */
  workers: number;
  engine: 'node' | 'haproxy';
  idle?: Memory;
  afterLoad?: Memory;
  /** Once idle again and `releaseIdleMemoryAfter` has given back what V8 kept (the period shortened for the benchmark). */
  afterIdle?: Memory;
}

export interface AppOutcome {
  app: string;
  title: string;
  notes: string[];
  loads: LoadOutcome[];
  rainbowdMemory: RainbowdMemory[];
}

export async function benchmarkApp(context: BenchContext, plan: AppPlan): Promise<AppOutcome> {
  const { registry, tools, progress } = context;
  const { app } = plan;
  const directory = path.join(context.workspace, app.name);
  const outcome: AppOutcome = { app: app.name, title: app.title, notes: [], loads: [], rainbowdMemory: [] };
  const started: { stop(): Promise<void> }[] = [];
  try {
    progress(`${app.name}: starting the app, and rainbowd, nginx and haproxy in front of it`);
    await mkdir(directory, { recursive: true });
    const appPort = await getPort({ host: '127.0.0.1' });
    const { file, args } = app.command(appPort);
    const direct = registry.launch(app.name, file, args, { cwd: directory, logFile: path.join(directory, 'app.log') });
    started.push({ stop: () => direct.stop(10_000) });
    const directUrl = `http://127.0.0.1:${appPort}/`;
    await waitForHttp(directUrl, app.title, [direct]);
    const targets: Target[] = [{ name: 'direct', url: directUrl, processes: [direct], proxyGroups: [], appGroup: direct.pid, proxyCpus: '0' }];

    const daemonGroups = new Map<RainbowdMemory, number[]>();
    const rainbowds: Rainbowd[] = [];
    for (const variant of RAINBOWD_VARIANTS) {
      if (variant.engine === 'haproxy' && !tools.haproxy) {
        outcome.notes.push(`no ${variant.name} column: haproxy is not available`);
        continue;
      }
      const rainbowd = await Rainbowd.start(registry, context.root, path.join(directory, variant.name), app.runLine, variant);
      started.push(rainbowd);
      rainbowds.push(rainbowd);
      const status = await rainbowd.status();
      const appPid = status.services[0]?.generations.find((generation) => generation.state === 'active')?.pid ?? undefined;
      // HAProxy runs in a process group of its own, a child of the daemon.
      const proxyGroups = [status.pid, ...childrenNamed(status.pid, 'haproxy')].flatMap((pid) => groupOf(pid) ?? []);
      targets.push({ name: variant.name, url: rainbowd.proxyUrl, processes: [rainbowd.process], proxyGroups, appGroup: appPid ? groupOf(appPid) : undefined, proxyCpus: status.proxy.workers > 0 ? '0,1' : '0' });
      const memory: RainbowdMemory = { target: variant.name, workers: status.proxy.workers, engine: variant.engine };
      outcome.rainbowdMemory.push(memory);
      daemonGroups.set(memory, proxyGroups);
    }

    for (const [name, start] of [['nginx', startNginx], ['haproxy', startHaproxy]] as const) {
      const executable = tools[name];
      if (!executable) {
        outcome.notes.push(`no ${name} column: ${name} is not available`);
        continue;
      }
      const peer = await start(registry, executable, path.join(directory, name), appPort);
      started.push({ stop: () => peer.process.stop(10_000) });
      targets.push({ name, url: peer.url, processes: [peer.process, direct], proxyGroups: [peer.process.pid], appGroup: direct.pid, proxyCpus: '0' });
    }
    const minimal = await startUndiciMinimal(registry, context.root, path.join(directory, 'undici-minimal'), appPort);
    started.push({ stop: () => minimal.process.stop(10_000) });
    targets.push({ name: minimal.name, url: minimal.url, processes: [minimal.process, direct], proxyGroups: [minimal.process.pid], appGroup: direct.pid, proxyCpus: '0' });

    const measureMemory = (when: 'idle' | 'afterLoad' | 'afterIdle') => {
      for (const [memory, groups] of daemonGroups) memory[when] = sumMemory(groups.map(groupMemoryOf));
    };
    measureMemory('idle');
    if (!tools.wrk) {
      outcome.notes.push('no load was run: wrk is not available');
      return outcome;
    }
    const warmup: LoadSpec = { ...plan.load.spec, durationSeconds: plan.warmupSeconds };
    for (const target of targets) {
      progress(`${app.name}: warming up ${target.name} (${plan.warmupSeconds} s)`);
      await runWrk(registry, tools.wrk, target.url, warmup, directory);
    }
    for (const load of [plan.load, plan.extraLoad]) {
      if (load) outcome.loads.push(await interleavedRuns(context, app.name, targets, load, plan.quietWaitMs, directory));
    }
    measureMemory('afterLoad');
    if (plan.idleMemory) {
      // Its default (minutes) would make the benchmark wait that long: the same release,
      // sooner. Three periods: V8 may not shrink at the first one after a burst.
      progress(`${app.name}: rainbowd idle with "releaseIdleMemoryAfter": "${IDLE_MEMORY_PERIOD_S}s", measuring its memory after ${3 * IDLE_MEMORY_PERIOD_S + 5} s`);
      await Promise.all(rainbowds.map((rainbowd) => rainbowd.reload({ releaseIdleMemoryAfter: `${IDLE_MEMORY_PERIOD_S}s` })));
      await new Promise((resolve) => setTimeout(resolve, (3 * IDLE_MEMORY_PERIOD_S + 5) * 1000));
      measureMemory('afterIdle');
    }
    return outcome;
  } finally {
    // Newest first: the proxies before the apps behind them.
    for (const running of started.reverse()) await running.stop();
  }
}

async function interleavedRuns(context: BenchContext, appName: string, targets: Target[], load: LoadPlan, quietWaitMs: number, directory: string): Promise<LoadOutcome> {
  const runs: Run[] = [];
  for (let round = 0; round < load.rounds; round++) {
    for (let index = 0; index < targets.length; index++) {
      const target = targets[(round + index) % targets.length]!;
      for (let attempt = 0; ; attempt++) {
        if (quietWaitMs > 0) await waitForQuiet(quietWaitMs, context.progress);
        const run = await measuredRun(context, target, load.spec, directory, round + 1);
        runs.push(run);
        const errors = errorCount(run.wrk);
        const disturbed = run.otherCpuShare > DISTURBED_SHARE;
        const again = disturbed && attempt < RUNS_AGAIN_WHEN_DISTURBED;
        run.discarded = again;
        context.progress(
          `${appName} c=${load.spec.connections} round ${round + 1}/${load.rounds} ${target.name.padEnd(8)} ` +
            `${Math.round(run.wrk.requestsPerSecond).toString().padStart(6)} req/s  p50 ${run.wrk.latencyMs.p50.toFixed(2)} ms  ` +
            `p99 ${run.wrk.latencyMs.p99.toFixed(2)} ms${errors ? `  ERRORS ${errors}` : ''}` +
            (disturbed ? `  (other processes took ${(run.otherCpuShare * 100).toFixed(0)}% of the CPU${again ? ': run again' : ''})` : ''),
        );
        if (!again) break;
      }
    }
  }
  const present = TARGET_ORDER.filter((name) => targets.some((target) => target.name === name));
  return {
    command: describeLoad(load.spec),
    spec: load.spec,
    rounds: load.rounds,
    targets: present.map((name) => summarize(name, runs.filter((run) => run.target === name))),
    runs,
  };
}

async function measuredRun(context: BenchContext, target: Target, spec: LoadSpec, directory: string, round: number): Promise<Run> {
  const dead = target.processes.find((launched) => launched.hasExited);
  if (dead) throw new Error(`${target.name}: ${dead.describeExit()}; its last output:\n${dead.outputTail()}`);
  if (context.pin) {
    for (const group of target.proxyGroups) pinGroup(group, target.proxyCpus);
    if (target.appGroup !== undefined) pinGroup(target.appGroup, '1');
  }
  const before = cpuOf(target);
  const mark = markCpu();
  const wrk = await runWrk(context.registry, context.tools.wrk!, target.url, spec, directory);
  const after = cpuOf(target);
  const proxyCpuSeconds = difference(after.proxy, before.proxy);
  const appCpuSeconds = difference(after.app, before.app);
  return {
    round,
    target: target.name,
    wrk,
    proxyCpuSeconds,
    appCpuSeconds,
    // wrk has exited and been waited for: its CPU time is the benchmark's own by now.
    otherCpuShare: otherShareSince(mark, (proxyCpuSeconds ?? 0) + (appCpuSeconds ?? 0)),
    discarded: false,
  };
}

function summarize(target: TargetName, allRuns: Run[]): TargetSummary {
  // Errors count in every run; the figures come from the runs that were kept.
  const runs = allRuns.filter((run) => !run.discarded);
  const socketErrors: SocketErrors = { connect: 0, read: 0, write: 0, timeout: 0 };
  for (const run of allRuns) {
    for (const key of Object.keys(socketErrors) as (keyof SocketErrors)[]) socketErrors[key] += run.wrk.socketErrors[key];
  }
  const badStatus = sum(allRuns.map((run) => run.wrk.badStatus));
  const perRequest = (seconds: (run: Run) => number | null): number | null => {
    const values = runs.flatMap((run) => {
      const used = seconds(run);
      return used === null || run.wrk.requests === 0 ? [] : [(used * 1e6) / run.wrk.requests];
    });
    return values.length ? median(values) : null;
  };
  return {
    target,
    runs: runs.length,
    requestsPerSecond: median(runs.map((run) => run.wrk.requestsPerSecond)),
    p50Ms: median(runs.map((run) => run.wrk.latencyMs.p50)),
    p99Ms: median(runs.map((run) => run.wrk.latencyMs.p99)),
    socketErrors,
    badStatus,
    errors: sum(Object.values(socketErrors)) + badStatus,
    proxyCpuMicrosPerRequest: perRequest((run) => run.proxyCpuSeconds),
    appCpuMicrosPerRequest: perRequest((run) => run.appCpuSeconds),
  };
}

function cpuOf(target: Target): { proxy: number | null; app: number | null } {
  return {
    proxy: target.proxyGroups.length === 0 ? null : sum(target.proxyGroups.map(groupCpuSeconds)),
    app: target.appGroup === undefined ? null : groupCpuSeconds(target.appGroup),
  };
}

function difference(after: number | null, before: number | null): number | null {
  return after === null || before === null ? null : Math.round((after - before) * 1000) / 1000;
}
