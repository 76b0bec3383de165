import { readdirSync, readFileSync } from 'node:fs';
import treeKill from 'tree-kill';

// Each app runs in its own process group (spawned detached), so the group is how rainbowd
// finds every process of a generation, including workers whose master already exited.

interface ProcStat {
  pid: number;
  state: string;
  parentPid: number;
  groupId: number;
  sessionId: number;
}

const procAvailable = (() => {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
})();

function readStat(pid: number | string): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return {
      pid: Number(pid),
      state: fields[0]!,
      parentPid: Number(fields[1]),
      groupId: Number(fields[2]),
      sessionId: Number(fields[3]),
    };
  } catch {
    return null;
  }
}

/** Pids of the live processes that `matches`. */
function liveProcesses(matches: (stat: ProcStat) => boolean): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(entry);
    // A zombie is already dead; in a container whose init does not reap, it would linger.
    if (stat && stat.state !== 'Z' && matches(stat)) found.push(stat.pid);
  }
  return found;
}

/** Live (non-zombie) pids of a process group. */
export function groupMembers(groupId: number): number[] {
  if (!procAvailable) return signalGroup(groupId, 0) ? [groupId] : [];
  return liveProcesses((stat) => stat.groupId === groupId);
}

/** Live (non-zombie) children of a process. */
export function childrenOf(pid: number): number[] {
  return procAvailable ? liveProcesses((stat) => stat.parentPid === pid) : [];
}

/** The process group of a live process, or null (gone, a zombie, or no /proc to ask). */
export function groupOf(pid: number): number | null {
  const stat = readStat(pid);
  return stat === null || stat.state === 'Z' ? null : stat.groupId;
}

export function isAlive(pid: number): boolean {
  if (procAvailable) {
    const stat = readStat(pid);
    return stat !== null && stat.state !== 'Z';
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `pid` is in the group or the session rainbowd gave the app: safe to signal. */
export function belongsTo(pid: number, groupId: number): boolean {
  if (!procAvailable) return true;
  const stat = readStat(pid);
  return stat !== null && (stat.groupId === groupId || stat.sessionId === groupId);
}

export function signalGroup(groupId: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-groupId, signal);
    return true;
  } catch {
    return false;
  }
}

export function signalProcess(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILL to the group and to every descendant of `rootPid`, even ones that left the group. */
export async function killAll(groupId: number, rootPid: number | null): Promise<void> {
  if (rootPid !== null && isAlive(rootPid)) {
    await new Promise<void>((resolve) => treeKill(rootPid, 'SIGKILL', () => resolve()));
  }
  signalGroup(groupId, 'SIGKILL');
}

export async function waitFor(condition: () => boolean, timeoutMs: number, intervalMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return true;
}
