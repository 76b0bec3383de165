// Redeploys under constant load: rainbowd in front of the hello app, wrk running the whole
// time, N deploys one after another. Every request must succeed, and each deploy is split
// into its steps from rainbowd's log (ISO timestamps, the app's own "listening" line) and
// the control API's answer.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FixtureApp } from './apps.js';
import { errorCount, runWrk, startWrk, type LoadSpec, type RunningLoad, type WrkResult } from './load.js';
import { Rainbowd, type DeployAnswer, type LogLine } from './rainbowd.js';
import type { BenchContext } from './side-by-side.js';
import { median } from './stats.js';

export interface DeployPlan {
  app: FixtureApp;
  deploys: number;
  /** rainbowd's proxy workers; undefined: its default. */
  workers: number | undefined;
  /** rainbowd's data path; undefined: its default (node). */
  engine: 'node' | 'haproxy' | undefined;
  /** Its duration is that of the steady run before the deploys, for comparison. */
  load: LoadSpec;
  warmupSeconds: number;
}

/** Milliseconds from the trigger (the POST /redeploy being sent) to each step. */
export interface DeploySteps {
  /** rainbowd logged the deploy: the control API got the request. */
  received: number | null;
  /** The new generation's process was spawned. */
  started: number | null;
  /** The app said it listens (its own timestamp). */
  listening: number | null;
  /** The first health check that answered 2xx. */
  healthy: number | null;
  /** New requests go to the new generation. */
  switched: number | null;
  /** The previous generation has no request in flight. */
  drained: number | null;
  /** The previous generation's process is gone. */
  stopped: number | null;
  /** The POST /redeploy answer arrived. */
  answered: number;
}

export const STEP_NAMES = ['received', 'started', 'listening', 'healthy', 'switched', 'drained', 'stopped', 'answered'] as const;

export interface DeployRecord {
  number: number;
  generation: number;
  previous: number | null;
  steps: DeploySteps;
  /** As rainbowd answered it: ms since the deploy began inside the daemon. */
  timings: DeployAnswer['timings'];
}

export interface DeployOutcome {
  app: string;
  /** rainbowd's proxy workers during the redeploys (0: one process). */
  workers: number;
  engine: 'node' | 'haproxy';
  command: string | null;
  deploys: DeployRecord[];
  medians: Record<(typeof STEP_NAMES)[number], number | null>;
  /** Medians of the gaps the issue cares about. */
  gaps: { listeningToHealthy: number | null; healthyToSwitched: number | null; switchedToDrained: number | null; drainedToStopped: number | null };
  /** The same load on the same daemon just before, without deploys. */
  steady: WrkResult | null;
  load: WrkResult | null;
  errors: number | null;
  liveGenerationsAfter: number;
  notes: string[];
}

// Between deploys: the previous generation drains and stops within the deploy (the answer
// waits for it), so a short pause only keeps the deploys from running back to back.
const PAUSE_BETWEEN_DEPLOYS_MS = 300;
const LOAD_BEFORE_FIRST_DEPLOY_MS = 1000;

export async function benchmarkDeploys(context: BenchContext, plan: DeployPlan): Promise<DeployOutcome> {
  const { registry, tools, progress } = context;
  const directory = path.join(context.workspace, 'deploy');
  await mkdir(directory, { recursive: true });
  const notes: string[] = [];
  progress(`deploy: starting rainbowd in front of the ${plan.app.name} app`);
  const rainbowd = await Rainbowd.start(registry, context.root, path.join(directory, 'rainbowd'), plan.app.runLine, {
    ...(plan.workers === undefined ? {} : { workers: plan.workers }),
    ...(plan.engine === undefined ? {} : { engine: plan.engine }),
  });
  let load: RunningLoad | undefined;
  try {
    let steady: WrkResult | null = null;
    if (tools.wrk) {
      progress(`deploy: warming up (${plan.warmupSeconds} s), then the same load without deploys (${plan.load.durationSeconds} s)`);
      await runWrk(registry, tools.wrk, rainbowd.proxyUrl, { ...plan.load, durationSeconds: plan.warmupSeconds }, directory);
      steady = await runWrk(registry, tools.wrk, rainbowd.proxyUrl, plan.load, directory);
      // Long enough for every deploy; interrupted when they are done.
      const spec = { ...plan.load, durationSeconds: 30 + plan.deploys * 10 };
      load = startWrk(registry, tools.wrk, rainbowd.proxyUrl, spec, directory);
      await sleep(LOAD_BEFORE_FIRST_DEPLOY_MS);
    } else {
      notes.push('wrk is not available: the deploys ran without load, so errors under load were not measured');
    }

    const triggers: { number: number; at: number; answeredAt: number; answer: DeployAnswer }[] = [];
    for (let number = 1; number <= plan.deploys; number++) {
      const at = Date.now();
      const answer = await rainbowd.redeploy();
      triggers.push({ number, at, answeredAt: Date.now(), answer });
      progress(`deploy ${number}/${plan.deploys}: generation ${answer.generation} live, previous stopped after ${answer.timings.stoppedMs ?? '?'} ms`);
      await sleep(PAUSE_BETWEEN_DEPLOYS_MS);
    }
    const loadResult = load ? await load.interrupt() : null;
    const liveGenerationsAfter = await settledGenerations(rainbowd);

    const events = parseLog(rainbowd.log);
    const deploys = triggers.map(({ number, at, answeredAt, answer }): DeployRecord => {
      const current = events.get(answer.generation) ?? {};
      const previous = answer.previous === null ? {} : (events.get(answer.previous) ?? {});
      const since = (time: number | undefined) => (time === undefined ? null : time - at);
      return {
        number,
        generation: answer.generation,
        previous: answer.previous,
        timings: answer.timings,
        steps: {
          received: since(current.deploy),
          started: since(current.starting),
          listening: since(current.listening),
          healthy: since(current.healthy),
          switched: since(current.active),
          drained: since(previous.drained),
          stopped: since(previous.stopped),
          answered: answeredAt - at,
        },
      };
    });
    const stepMedian = (pick: (steps: DeploySteps) => number | null): number | null => {
      const values = deploys.map((deploy) => pick(deploy.steps)).filter((value): value is number => value !== null);
      return values.length ? median(values) : null;
    };
    const gap = (from: (typeof STEP_NAMES)[number], to: (typeof STEP_NAMES)[number]) =>
      stepMedian((steps) => (steps[from] === null || steps[to] === null ? null : steps[to]! - steps[from]!));
    const medians = Object.fromEntries(STEP_NAMES.map((name) => [name, stepMedian((steps) => steps[name])])) as DeployOutcome['medians'];
    const missing = STEP_NAMES.filter((name) => medians[name] === null);
    if (missing.length) notes.push(`not found in rainbowd's log: ${missing.join(', ')}`);
    return {
      app: plan.app.name,
      workers: (await rainbowd.status()).proxy.workers,
      engine: plan.engine ?? 'node',
      command: tools.wrk ? `wrk -t${plan.load.threads} -c${plan.load.connections} --latency, running through every deploy` : null,
      deploys,
      medians,
      gaps: {
        listeningToHealthy: gap('listening', 'healthy'),
        healthyToSwitched: gap('healthy', 'switched'),
        switchedToDrained: gap('switched', 'drained'),
        drainedToStopped: gap('drained', 'stopped'),
      },
      steady,
      load: loadResult,
      errors: loadResult ? errorCount(loadResult) : null,
      liveGenerationsAfter,
      notes,
    };
  } finally {
    await load?.abort();
    await rainbowd.stop();
  }
}

/** How many generations are alive once the last deploy has settled (should be 1). */
async function settledGenerations(rainbowd: Rainbowd): Promise<number> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await rainbowd.status();
    const live = status.services.flatMap((service) => service.generations).filter((generation) => !['stopped', 'failed'].includes(generation.state)).length;
    if (live <= 1 || Date.now() >= deadline) return live;
    await sleep(100);
  }
}

type GenerationEvents = Partial<Record<'deploy' | 'starting' | 'listening' | 'healthy' | 'active' | 'draining' | 'drained' | 'stopping' | 'stopped', number>>;

// `2026-11-23T11:57:53.421Z default#2 healthy port=34255 pid=5158`
const EVENT_LINE = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) [^\s#]+#(\d+) (\w[\w-]*)/;
// `[default#2] listening on 127.0.0.1:34255 at 2026-11-23T11:57:53.401Z` (bench/apps/serve.mjs)
const LISTENING_LINE = /^\[[^\s#]+#(\d+)\] listening on \S+ at (\S+Z)$/;

/** The first time each lifecycle event was logged, per generation. */
export function parseLog(lines: readonly LogLine[]): Map<number, GenerationEvents> {
  const events = new Map<number, GenerationEvents>();
  const record = (generation: number, event: string, time: number) => {
    const known = events.get(generation) ?? {};
    const key = event as keyof GenerationEvents;
    if (known[key] === undefined) known[key] = time;
    events.set(generation, known);
  };
  for (const { text } of lines) {
    const event = EVENT_LINE.exec(text);
    if (event) {
      record(Number(event[2]), event[3]!, Date.parse(event[1]!));
      continue;
    }
    const listening = LISTENING_LINE.exec(text);
    if (listening) record(Number(listening[1]), 'listening', Date.parse(listening[2]!));
  }
  return events;
}
