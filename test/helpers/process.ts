import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  exe: string;
  argv: string[];
}

// A string to put on a fixture's command line, so that the test can find every process it
// caused (including orphans that left the daemon's process tree) and nothing else.
export function uniqueMarker(name: string): string {
  return `rbtest-${name}-${randomBytes(4).toString('hex')}`;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
  return readProcess(pid)?.state !== 'Z';
}

// Every live process (zombies excluded) whose command line contains `marker`: the wrapper
// shells rainbowd spawns as well as the apps.
export function markedProcesses(marker: string): ProcessInfo[] {
  return liveProcesses().filter((info) => info.pid !== process.pid && info.argv.some((arg) => arg.includes(marker)));
}

// The marked processes that are the fixture app itself (node), not a shell around it.
export function appProcesses(marker: string): ProcessInfo[] {
  return markedProcesses(marker).filter((info) => basename(info.exe || info.argv[0] || '') === 'node');
}

// The daemon's proxy worker processes (they name themselves rainbowd-proxy).
export function proxyWorkers(daemonPid: number): ProcessInfo[] {
  return liveProcesses().filter((info) => info.ppid === daemonPid && info.argv[0] === 'rainbowd-proxy');
}

function liveProcesses(): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = readProcess(Number(entry));
    if (info !== undefined && info.state !== 'Z') found.push(info);
  }
  return found;
}

export function describeProcesses(processes: ProcessInfo[]): string {
  if (processes.length === 0) return '(none)';
  return processes.map((info) => `pid=${info.pid} ppid=${info.ppid} pgid=${info.pgid} ${info.state} ${info.argv.join(' ')}`).join('\n');
}

// Test cleanup only: whatever the daemon left behind must not outlive the test run.
export function killMarkedProcesses(marker: string): void {
  for (const info of markedProcesses(marker)) {
    try {
      process.kill(info.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function readProcess(pid: number): ProcessInfo | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((arg) => arg !== '');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name in parentheses may itself contain spaces or parentheses.
    const [state = '?', ppid = '0', pgid = '0'] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    let exe = '';
    try {
      exe = readlinkSync(`/proc/${pid}/exe`);
    } catch {
      // a zombie or a process we may not inspect
    }
    return { pid, ppid: Number(ppid), pgid: Number(pgid), state, exe, argv };
  } catch {
    return undefined;
  }
}

export interface Memory {
  // Resident set size now, and its peak over the process's life, in bytes.
  rss: number;
  peakRss: number;
}

export function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peakRss: kb('VmHWM') };
}

// The live processes under `pid`: its children, theirs, and so on.
export function descendants(pid: number): ProcessInfo[] {
  const all = liveProcesses();
  const found: ProcessInfo[] = [];
  let parents = new Set([pid]);
  while (parents.size > 0) {
    const children = all.filter((info) => parents.has(info.ppid));
    found.push(...children);
    parents = new Set(children.map((info) => info.pid));
  }
  return found;
}
