// What a run produced: Markdown tables for people (the terminal, the README, an issue), and
// the JSON file with every run for comparing with later runs.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { DeployOutcome } from './deploy.js';
import { DISTURBED_SHARE } from './quiet.js';
import type { WrkResult } from './load.js';
import type { AppOutcome, LoadOutcome, TargetSummary } from './side-by-side.js';

export interface BenchResults {
  format: 1;
  mode: 'full' | 'quick';
  argv: string[];
  startedAt: string;
  finishedAt: string;
  seconds: number;
  machine: { cpus: number; cpuModel: string; os: string; memoryMB: number };
  versions: Record<string, string>;
  setup: string[];
  apps: AppOutcome[];
  deploy: DeployOutcome | null;
  /** CPU the rest of the machine used while the benchmark ran: noise in every figure. */
  otherProcesses: { cpuSeconds: number; shareOfMachine: number; loadAverageAtStart: number } | null;
  notes: string[];
  failures: string[];
}

export async function writeResults(root: string, results: BenchResults): Promise<string> {
  const directory = path.join(root, 'bench', 'results');
  await mkdir(directory, { recursive: true });
  const file = path.join(directory, `${results.startedAt.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}

export function renderReport(results: BenchResults): string {
  const parts: string[] = [];
  parts.push(
    `Machine: ${results.machine.cpus} × ${results.machine.cpuModel}, ${results.machine.os}. ` +
      `Versions: ${Object.entries(results.versions).map(([name, version]) => `${name} ${version}`).join(' · ')}.`,
  );
  parts.push(results.setup.map((line) => `- ${line}`).join('\n'));
  for (const app of results.apps) {
    for (const load of app.loads) parts.push(renderLoad(app, load));
    for (const note of app.notes) parts.push(`> ${app.title}: ${note}`);
  }
  const memory = renderMemory(results.apps);
  if (memory) parts.push(memory);
  if (results.deploy) parts.push(renderDeploy(results.deploy));
  if (results.notes.length) parts.push(results.notes.map((note) => `> ${note}`).join('\n'));
  const other = results.otherProcesses;
  if (other) {
    parts.push(`Other processes used ${(other.shareOfMachine * 100).toFixed(1)}% of the machine's CPU over the whole ${results.seconds} s run (load average ${other.loadAverageAtStart} at the start).`);
  }
  const kept = results.apps.flatMap((app) => app.loads.flatMap((load) => load.runs.filter((run) => !run.discarded)));
  const disturbed = kept.filter((run) => run.otherCpuShare > DISTURBED_SHARE);
  if (disturbed.length) {
    const worst = Math.max(...disturbed.map((run) => run.otherCpuShare));
    parts.push(
      loud([
        `${disturbed.length} of the ${kept.length} runs in the tables ran while other processes took more than ${DISTURBED_SHARE * 100}% of the CPU (up to ${(worst * 100).toFixed(0)}%):`,
        'their figures are noisy. Run again on a quiet machine.',
      ]),
    );
  }
  if (results.failures.length) parts.push(loud(results.failures.map((failure) => `FAILED: ${failure}`)));
  return `${parts.join('\n\n')}\n`;
}

function renderLoad(app: AppOutcome, load: LoadOutcome): string {
  const byName = new Map(load.targets.map((target) => [target.target, target]));
  const direct = byName.get('direct');
  const nginx = byName.get('nginx');
  const rows = load.targets.map((target) => [
    target.target,
    formatRate(target.requestsPerSecond),
    ratio(target.requestsPerSecond, direct?.requestsPerSecond),
    ratio(target.requestsPerSecond, nginx?.requestsPerSecond),
    formatMs(target.p50Ms),
    formatMs(target.p99Ms),
    ratio(target.p99Ms, nginx?.p99Ms),
    target === direct || !direct ? '—' : `${signedMs(target.p50Ms - direct.p50Ms)} / ${signedMs(target.p99Ms - direct.p99Ms)}`,
    describeErrors(target),
    target.proxyCpuMicrosPerRequest === null ? '—' : `${Math.round(target.proxyCpuMicrosPerRequest)} µs`,
  ]);
  const repeated = load.runs.filter((run) => run.discarded).length;
  const heading =
    `### ${app.title}, ${load.spec.connections} connections\n\n\`${load.command}\`, median of ${load.rounds} interleaved round${load.rounds === 1 ? '' : 's'}` +
    (repeated ? ` (${repeated} run${repeated === 1 ? '' : 's'} disturbed by other processes, repeated)` : '');
  return `${heading}\n\n${table(
    ['target', 'req/s', '× direct', '× nginx', 'p50', 'p99', 'p99 × nginx', 'added p50 / p99 vs direct', 'errors', 'proxy CPU/req'],
    rows,
    'lrrrrrrrrr',
  )}`;
}

function renderMemory(apps: AppOutcome[]): string | undefined {
  const rows = apps.flatMap((app) =>
    app.rainbowdMemory
      .filter((memory) => memory.idle)
      .map(({ target, workers, engine, idle, afterLoad, afterIdle }) => [
        app.title,
        `${target} (${engine === 'haproxy' ? 'daemon + HAProxy' : workers === 0 ? 'one process' : `daemon + ${workers} workers`})`,
        megabytes(idle?.rssMB),
        megabytes(afterLoad?.rssMB),
        megabytes(afterIdle?.rssMB),
        megabytes(afterLoad?.peakRssMB ?? idle?.peakRssMB),
      ]),
  );
  if (!rows.length) return undefined;
  return `### rainbowd memory (one daemon per app; RSS of the daemon and its proxy workers, or its HAProxy, together)\n\n${table(['in front of', 'rainbowd', 'RSS idle', 'RSS after the load runs', 'RSS once idle again', 'peak RSS (sum of each process\'s peak)'], rows, 'llrrrr')}`;
}

function renderDeploy(deploy: DeployOutcome): string {
  const how = deploy.engine === 'haproxy' ? 'with the haproxy engine' : deploy.workers === 0 ? 'as one process' : `with ${deploy.workers} proxy workers`;
  const lines: string[] = [`### Redeploys under load: ${deploy.deploys.length} deploys of the ${deploy.app} app, rainbowd ${how}`];
  if (deploy.load && deploy.errors !== null) {
    const load = deploy.load;
    const summary = (result: WrkResult) =>
      `${formatRate(result.requestsPerSecond)} req/s, p50 ${formatMs(result.latencyMs.p50)}, p99 ${formatMs(result.latencyMs.p99)}, max ${formatMs(result.latencyMs.max)}`;
    lines.push(
      `\`${deploy.command}\`: ${load.requests} requests in ${load.seconds.toFixed(1)} s, ${summary(load)}` +
        (deploy.steady ? ` (the same load without deploys, just before: ${summary(deploy.steady)})` : '') +
        `; **errors: ${deploy.errors}** (socket errors connect ${load.socketErrors.connect}, read ${load.socketErrors.read}, ` +
        `write ${load.socketErrors.write}, timeout ${load.socketErrors.timeout}; non-2xx ${load.badStatus})`,
    );
    if (deploy.errors > 0) lines.push(loud([`${deploy.errors} REQUEST(S) FAILED DURING REDEPLOYS: zero-downtime is broken (must be 0)`]));
  }
  if (deploy.liveGenerationsAfter !== 1) lines.push(loud([`${deploy.liveGenerationsAfter} generations alive after the last deploy settled (want 1)`]));
  lines.push('Milliseconds from the trigger (`POST /redeploy` sent) to each step; drained and stopped are the previous generation’s:');
  const cells = (values: (number | null)[]) => values.map((value) => (value === null ? '—' : String(Math.round(value))));
  const rows = deploy.deploys.map((record) => [
    String(record.number),
    `${record.previous ?? '—'} → ${record.generation}`,
    ...cells([record.steps.received, record.steps.started, record.steps.listening, record.steps.healthy, record.steps.switched, record.steps.drained, record.steps.stopped, record.steps.answered]),
  ]);
  const m = deploy.medians;
  rows.push(['**median**', '', ...cells([m.received, m.started, m.listening, m.healthy, m.switched, m.drained, m.stopped, m.answered])]);
  lines.push(
    table(
      ['deploy', 'generation', 'received', 'process started', 'app listening', 'first healthy answer', 'switched', 'old drained', 'old stopped', 'answered'],
      rows,
      'llrrrrrrrr',
    ),
  );
  const gap = (value: number | null) => (value === null ? '—' : `${Math.round(value)} ms`);
  lines.push(
    `Median gaps: app listening → first healthy answer ${gap(deploy.gaps.listeningToHealthy)} (health-check polling); ` +
      `first healthy answer → switched ${gap(deploy.gaps.healthyToSwitched)}; switched → old drained ${gap(deploy.gaps.switchedToDrained)}; ` +
      `old drained → old stopped ${gap(deploy.gaps.drainedToStopped)}.`,
  );
  for (const note of deploy.notes) lines.push(`> ${note}`);
  return lines.join('\n\n');
}

function describeErrors(target: TargetSummary): string {
  if (target.errors === 0) return '0';
  const kinds = Object.entries(target.socketErrors)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${kind} ${count}`);
  if (target.badStatus) kinds.push(`non-2xx ${target.badStatus}`);
  return `**${target.errors}** (${kinds.join(', ')})`;
}

/** A Markdown table padded to line up in a terminal too. `align`: one l or r per column. */
export function table(headers: string[], rows: string[][], align: string): string {
  const widths = headers.map((header, column) => Math.max(header.length, 3, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((cell, column) => (align[column] === 'r' ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join(' | ')} |`;
  const rule = `|${widths.map((width, column) => (align[column] === 'r' ? `${'-'.repeat(width + 1)}:` : `:${'-'.repeat(width + 1)}`)).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

function loud(messages: string[]): string {
  const bar = '!'.repeat(78);
  return [bar, ...messages.map((message) => `!!! ${message}`), bar].join('\n');
}

export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return '—';
  if (perSecond >= 10_000) return `${(perSecond / 1000).toFixed(1)}k`;
  if (perSecond >= 1000) return `${(perSecond / 1000).toFixed(2)}k`;
  return String(Math.round(perSecond));
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${Math.round(ms)} ms`;
}

function signedMs(ms: number): string {
  const text = formatMs(Math.abs(ms)).replace(' ms', '');
  return `${ms < 0 ? '−' : '+'}${text}`;
}

function ratio(value: number, reference: number | undefined): string {
  if (reference === undefined || !Number.isFinite(value) || !reference) return '—';
  return `${(value / reference).toFixed(2)}×`;
}

function megabytes(value: number | undefined): string {
  return value === undefined ? '—' : `${value.toFixed(0)} MB`;
}
