import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// Compiled helpers live in dist/test/helpers/: the repository root is three levels up.
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const daemonBin = resolve(repoRoot, 'bin', 'rainbowd.js');
export const fixtureApp = resolve(repoRoot, 'test', 'fixtures', 'app.mjs');

export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

// A `run` line for the fixture app: `$1` is the port and `$2` the pidfile, as rainbowd passes
// them. Extra arguments are inserted unquoted so that they may use `$(...)`.
export function appRunLine(marker: string, extraArgs = '', { pidfile = true } = {}): string {
  const pidfileArg = pidfile ? ' --pidfile "$2"' : '';
  const extra = extraArgs === '' ? '' : ` ${extraArgs}`;
  return `${shellQuote(process.execPath)} ${shellQuote(fixtureApp)} --port "$1"${pidfileArg} --tag ${marker}${extra}`;
}
