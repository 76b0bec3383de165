// `npm run bench [-- --quick]`: rainbowd side by side with nothing, nginx and haproxy in
// front of the same apps under the same load, then redeploys under load. Prints Markdown
// tables, writes bench/results/<time>.json, and stops every process it started, also on
// failure and on Ctrl-C.
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultWorkers } from '../lib/config.js';
import { fixtureApps } from './apps.js';
import { loadEarlierResults, renderComparison } from './compare.js';
import { benchmarkDeploys } from './deploy.js';
import { USAGE, parseOptions, type Plan } from './options.js';
import { PEER_WORKERS } from './peers.js';
import { ProcessRegistry } from './processes.js';
import { DISTURBED_SHARE, markCpu, otherShareSince } from './quiet.js';
import { renderReport, writeResults, type BenchResults } from './report.js';
import { BENCH_WORKERS, benchmarkApp, type AppPlan, type BenchContext } from './side-by-side.js';
import { INSTALL_HINT, findTools, versions, type Tools } from './tools.js';

// Compiled to dist/bench/run.js: the repository root is two levels up.
const root = fileURLToPath(new URL('../../', import.meta.url));

async function main(plan: Plan, context: BenchContext, results: BenchResults): Promise<void> {
  const apps = fixtureApps(root, context.tools);
  for (const { name, rounds, extraConnections } of plan.apps) {
    if (interrupted) return;
    const app = apps[name];
    if (app.missing) {
      context.progress(`${name}: skipped, ${app.missing}`);
      continue;
    }
    const appPlan: AppPlan = {
      app,
      warmupSeconds: plan.warmupSeconds,
      quietWaitMs: plan.quietWaitMs,
      idleMemory: plan.idleMemory,
      load: { spec: plan.load, rounds },
      extraLoad: extraConnections ? { spec: { ...plan.load, connections: extraConnections }, rounds } : undefined,
    };
    // One app failing (a proxy that dies, say) does not throw away the others' numbers.
    try {
      results.apps.push(await benchmarkApp(context, appPlan));
    } catch (error) {
      if (interrupted) return;
      results.failures.push(`${app.title}: ${(error as Error).message}`);
      context.progress(`${name}: FAILED: ${(error as Error).message}`);
    }
  }
  if (interrupted || plan.deploys === 0) return;
  try {
    results.deploy = await benchmarkDeploys(context, { app: apps.hello, deploys: plan.deploys, workers: plan.deployWorkers, engine: plan.deployEngine, load: plan.load, warmupSeconds: plan.warmupSeconds });
  } catch (error) {
    if (interrupted) return;
    results.failures.push(`redeploys under load: ${(error as Error).message}`);
    context.progress(`deploy: FAILED: ${(error as Error).message}`);
  }
}

const started = Date.now();
const cpuAtStart = markCpu();
let plan: Plan;
try {
  plan = parseOptions(process.argv.slice(2));
} catch (error) {
  console.error(`${(error as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
// Nothing the benchmark runs writes into the repository (gunicorn would add __pycache__).
process.env.PYTHONDONTWRITEBYTECODE = '1';
const workspace = await mkdtemp(path.join(os.tmpdir(), 'rainbowd-bench-'));
// nginx started as root runs its worker as nobody, which must reach its files here.
await chmod(workspace, 0o755);
const registry = new ProcessRegistry(`${process.pid}-${randomBytes(4).toString('hex')}`);
const progress = (line: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

let cleaning: Promise<void> | undefined;
const cleanUp = (): Promise<void> =>
  (cleaning ??= (async () => {
    await registry.stopAll(20_000);
    const escaped = registry.sweep();
    if (escaped) console.error(`killed ${escaped} process(es) that outlived their process group`);
    if (plan.keep) console.error(`kept ${workspace}`);
    else await rm(workspace, { recursive: true, force: true });
  })());

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (interrupted) {
      registry.killAllNow();
      process.exit(130);
    }
    interrupted = true;
    console.error(`\n${signal}: stopping every process the benchmark started (again to kill them at once)`);
    void cleanUp().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });
}
for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (error) => {
    console.error(`benchmark crashed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    void cleanUp().finally(() => process.exit(1));
  });
}

const loadAverageAtStart = Math.round(os.loadavg()[0]! * 100) / 100;
const tools = await findTools();
for (const name of plan.without) tools[name] = undefined;
const results: BenchResults = {
  format: 1,
  mode: plan.mode,
  argv: process.argv.slice(2),
  startedAt: new Date(started).toISOString(),
  finishedAt: '',
  seconds: 0,
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown', os: `${os.type()} ${os.release()}`, memoryMB: Math.round(os.totalmem() / 2 ** 20) },
  versions: await versions(tools, root),
  setup: [
    `Load generator, proxy and app share the machine's ${os.cpus().length} cores; every target listens on 127.0.0.1.` +
      (plan.pin ? ' Pinned (--pin): before each run its proxy on CPU 0 (rainbowd-workers on both), its app on CPU 1, wrk where the kernel puts it; not in the redeploy benchmark.' : ''),
    `rainbowd is one process ("workers": 0); rainbowd-workers has ${BENCH_WORKERS} proxy worker processes; rainbowd's default here is ${defaultWorkers()}. nginx runs ${PEER_WORKERS} worker(s) (upstream keepalive 64, HTTP/1.1, Connection ""), haproxy ${PEER_WORKERS} thread(s) (http-reuse always), as many as rainbowd's default (at least 1); both keep-alive on both sides with the same timeouts and no access log. undici-minimal is issue 12's prototype: node:http and undici's Pool.dispatch with none of rainbowd's own work, in one process.`,
    'rainbowd launches its own copy of the app; direct, undici-minimal, nginx and haproxy share one. Errors are totals over all rounds (wrk socket errors + non-2xx); proxy CPU/req is the proxy processes’ user+system CPU per request.',
    `Each run waits for other processes to go quiet${plan.quietWaitMs ? '' : ' (not in --quick)'}, and is repeated (at most twice) when they took more than ${DISTURBED_SHARE * 100}% of the CPU during it.`,
  ],
  apps: [],
  deploy: null,
  otherProcesses: null,
  notes: [],
  failures: [],
};
for (const [name, found] of Object.entries(tools)) {
  if (found) continue;
  const why = plan.without.includes(name as keyof Tools) ? 'left out with --without' : `not installed (${INSTALL_HINT})`;
  results.notes.push(`${name} ${why}: ${name === 'wrk' ? 'no load runs' : `no ${name} ${name === 'gunicorn' ? 'app' : 'column'}`}`);
}

try {
  progress(`${plan.mode} benchmark; temporary files in ${workspace}`);
  await main(plan, { registry, root, tools, workspace, progress, pin: plan.pin }, results);
} finally {
  if (!interrupted) await cleanUp();
}
if (!interrupted) {
  results.finishedAt = new Date().toISOString();
  results.seconds = Math.round((Date.now() - started) / 100) / 10;
  // Everything we started has exited and been waited for: what else the machine did is noise.
  const shareOfMachine = otherShareSince(cpuAtStart);
  results.otherProcesses = {
    cpuSeconds: Math.round(shareOfMachine * results.seconds * results.machine.cpus * 10) / 10,
    shareOfMachine,
    loadAverageAtStart,
  };
  const file = await writeResults(root, results);
  console.log(renderReport(results));
  if (plan.compare) {
    try {
      const earlier = await loadEarlierResults(root, plan.compare, file);
      console.log(`${renderComparison(results, earlier.results, earlier.file)}\n`);
    } catch (error) {
      console.error((error as Error).message);
    }
  }
  console.log(`Results: ${file}`);
  progress(`done in ${results.seconds} s`);
  if (results.failures.length || (results.deploy?.errors ?? 0) > 0) process.exitCode = 1;
}
