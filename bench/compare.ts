// `--compare FILE|last`: this run's medians next to an earlier results file's, so a change to
// the data path shows what it won or lost.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { formatMs, formatRate, table, type BenchResults } from './report.js';

/** `last` is the newest file in bench/results/ other than `exclude`. */
export async function loadEarlierResults(root: string, which: string, exclude?: string): Promise<{ file: string; results: BenchResults }> {
  let file = which;
  if (which === 'last') {
    const directory = path.join(root, 'bench', 'results');
    const names = (await readdir(directory).catch(() => [] as string[])).filter((name) => name.endsWith('.json')).sort();
    const candidates = names.map((name) => path.join(directory, name)).filter((candidate) => candidate !== exclude);
    if (!candidates.length) throw new Error(`--compare last: no earlier results in ${directory}`);
    file = candidates[candidates.length - 1]!;
  }
  const results = JSON.parse(await readFile(file, 'utf8')) as BenchResults;
  if (results.format !== 1) throw new Error(`--compare ${file}: not a results file of this benchmark (format ${JSON.stringify(results.format)})`);
  return { file, results };
}

export function renderComparison(current: BenchResults, earlier: BenchResults, earlierFile: string): string {
  const before = new Map<string, { requestsPerSecond: number; p99Ms: number }>();
  for (const app of earlier.apps) {
    for (const load of app.loads) {
      for (const target of load.targets) before.set(`${app.app}/${load.spec.connections}/${target.target}`, target);
    }
  }
  const rows: string[][] = [];
  for (const app of current.apps) {
    for (const load of app.loads) {
      for (const target of load.targets) {
        const old = before.get(`${app.app}/${load.spec.connections}/${target.target}`);
        rows.push([
          `${app.app}, c=${load.spec.connections}`,
          target.target,
          formatRate(target.requestsPerSecond),
          old ? formatRate(old.requestsPerSecond) : '—',
          old ? change(target.requestsPerSecond, old.requestsPerSecond) : '—',
          formatMs(target.p99Ms),
          old ? formatMs(old.p99Ms) : '—',
          old ? change(target.p99Ms, old.p99Ms) : '—',
        ]);
      }
    }
  }
  const heading = `### Compared with ${path.basename(earlierFile)} (${earlier.mode}, ${earlier.versions.rainbowd ?? 'rainbowd ?'})`;
  return `${heading}\n\n${table(['app', 'target', 'req/s', 'before', 'change', 'p99', 'before', 'change'], rows, 'llrrrrrr')}`;
}

function change(now: number, before: number): string {
  if (!before) return '—';
  const percent = ((now - before) / before) * 100;
  return `${percent >= 0 ? '+' : '−'}${Math.abs(percent).toFixed(0)}%`;
}
