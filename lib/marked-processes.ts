import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { signalGroup, signalProcess, waitFor } from './process-group.js';

// The environment is the one mark a process cannot lose by leaving its process group or its
// parent: `setsid cmd &`, a double fork, a daemonizing worker all inherit it. rainbowd puts
// variables in every app's environment and finds their carriers through /proc/PID/environ:
// a generation's strays when it stops, a dead rainbowd's apps when the next one starts.
// Linux only (elsewhere nothing is found); a process that clears its environment escapes.

/** Set to a value unique to one launch of one generation's app. */
export const GENERATION_MARKER = 'RAINBOWD_GENERATION_MARKER';

export interface MarkedProcess {
  pid: number;
  env: Map<string, string>;
}

/** Readable in `ps e`: which rainbowd, which generation, and a random part no one else has. */
export function newGenerationMarker(service: string, generation: number): string {
  return `${process.pid}/${service}#${generation}/${randomBytes(6).toString('hex')}`;
}

/** Live processes (never rainbowd itself) whose environment has `variable`, set to `value` if given. */
export function findMarked(variable: string, value?: string): MarkedProcess[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const found: MarkedProcess[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const env = readEnvironment(entry, variable);
    if (env && (value === undefined || env.get(variable) === value)) found.push({ pid: Number(entry), env });
  }
  return found;
}

/**
 * SIGTERM to `pids` (and to `groupId`, if given), SIGKILL to whatever still carries
 * `variable=value` after `timeoutMs`. Says which it took.
 */
export async function stopMarked(pids: number[], variable: string, value: string, timeoutMs: number, groupId: number | null = null): Promise<'SIGTERM' | 'SIGKILL'> {
  // Checked again before each signal: a pid that ended meanwhile may belong to someone else now.
  const live = () => pids.filter((pid) => isMarked(pid, variable, value));
  const signalAll = (signal: NodeJS.Signals) => {
    if (groupId !== null) signalGroup(groupId, signal);
    for (const pid of live()) signalProcess(pid, signal);
  };
  const gone = () => live().length === 0;
  signalAll('SIGTERM');
  if (await waitFor(gone, timeoutMs)) return 'SIGTERM';
  signalAll('SIGKILL');
  await waitFor(gone, 2000);
  return 'SIGKILL';
}

/** Whether the live process `pid` carries `variable=value`: it is still the one rainbowd marked, not a reused pid. */
export function isMarked(pid: number, variable: string, value: string): boolean {
  return readEnvironment(String(pid), variable)?.get(variable) === value;
}

function readEnvironment(pid: string, variable: string): Map<string, string> | null {
  let raw: Buffer;
  try {
    raw = readFileSync(`/proc/${pid}/environ`);
  } catch {
    return null; // gone, or not ours to read
  }
  if (!raw.includes(`${variable}=`)) return null;
  const env = new Map<string, string>();
  for (const pair of raw.toString('utf8').split('\0')) {
    const equals = pair.indexOf('=');
    if (equals > 0) env.set(pair.slice(0, equals), pair.slice(equals + 1));
  }
  return env;
}
