// What the benchmark reads from /proc: memory of one process, CPU time of a process group.
import { readdirSync, readFileSync } from 'node:fs';

// USER_HZ: the unit of utime and stime in /proc/PID/stat. 100 on every Linux we run on.
const TICKS_PER_SECOND = 100;

export interface Memory {
  rssMB: number;
  peakRssMB: number;
}

/** VmRSS and VmHWM (peak RSS) of `pid`, or undefined when it is gone. */
export function memoryOf(pid: number): Memory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMB: round1(kib('VmRSS') / 1024), peakRssMB: round1(kib('VmHWM') / 1024) };
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) used so far by the live processes of process group `groupId`. */
export function groupCpuSeconds(groupId: number): number {
  let ticks = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const fields = statFields(Number(name));
    // Fields after the command name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    if (fields && Number(fields[2]) === groupId) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS_PER_SECOND;
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
