// What the benchmark reads from /proc: memory and CPU time of a process group; and where
// its processes may run.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

// USER_HZ: the unit of utime and stime in /proc/PID/stat. 100 on every Linux we run on.
const TICKS_PER_SECOND = 100;

export interface Memory {
  rssMB: number;
  peakRssMB: number;
}

/**
 * VmRSS and VmHWM (peak RSS) summed over the live processes of process group `groupId`: a
 * daemon and its proxy workers (its apps run in groups of their own). The peak is the sum of
 * each process's own peak. Undefined when none is left.
 */
export function groupMemoryOf(groupId: number): Memory | undefined {
  let rssKiB = 0;
  let peakKiB = 0;
  let found = false;
  for (const { pid } of groupMembers(groupId)) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
      rssKiB += kib('VmRSS');
      peakKiB += kib('VmHWM');
      found = true;
    } catch {
      // exited meanwhile
    }
  }
  return found ? { rssMB: round1(rssKiB / 1024), peakRssMB: round1(peakKiB / 1024) } : undefined;
}

/** Several groups' memory together (rainbowd's and its HAProxy's); undefined when none is left. */
export function sumMemory(parts: Array<Memory | undefined>): Memory | undefined {
  const found = parts.filter((part): part is Memory => part !== undefined);
  if (found.length === 0) return undefined;
  return { rssMB: round1(found.reduce((total, part) => total + part.rssMB, 0)), peakRssMB: round1(found.reduce((total, part) => total + part.peakRssMB, 0)) };
}

/** The live children of `pid` whose command is `name` (HAProxy's master under rainbowd). */
export function childrenNamed(pid: number, name: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields && Number(fields[1]) === pid && readComm(Number(entry)) === name) found.push(Number(entry));
  }
  return found;
}

function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** CPU seconds (user + system) used so far by the live processes of process group `groupId`. */
export function groupCpuSeconds(groupId: number): number {
  let ticks = 0;
  // Fields after the command name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
  for (const { fields } of groupMembers(groupId)) ticks += Number(fields[11]) + Number(fields[12]);
  return ticks / TICKS_PER_SECOND;
}

/** Lets every thread of every live process of the group run on `cpus` only (taskset's list: `0`, `0,1`). */
export function pinGroup(groupId: number, cpus: string): void {
  for (const { pid } of groupMembers(groupId)) {
    try {
      execFileSync('taskset', ['--all-tasks', '--cpu-list', '--pid', cpus, String(pid)], { stdio: 'ignore' });
    } catch (error) {
      // One that exited meanwhile needs no pinning; a missing taskset stops the benchmark.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('--pin needs taskset (apt-get install util-linux)');
    }
  }
}

/** The live processes of a process group, with their /proc/PID/stat fields. */
function groupMembers(groupId: number): Array<{ pid: number; fields: string[] }> {
  const members: Array<{ pid: number; fields: string[] }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const fields = statFields(Number(name));
    if (fields && Number(fields[2]) === groupId) members.push({ pid: Number(name), fields });
  }
  return members;
}

export function groupOf(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields ? Number(fields[2]) : undefined;
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name in parentheses may itself contain spaces or parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

/** CPU seconds the whole machine has spent busy since boot (user, nice, system, irq, softirq), from /proc/stat. */
export function machineBusySeconds(): number {
  const [, user, nice, system, , , irq, softirq] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
  return (user! + nice! + system! + irq! + softirq!) / TICKS_PER_SECOND;
}

/** CPU seconds used by the benchmark and every process of it that has exited (and been waited for). */
export function ownCpuSeconds(): number {
  const fields = statFields(process.pid)!;
  // utime stime cutime cstime
  return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND;
}
