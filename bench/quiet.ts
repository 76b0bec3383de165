// Other processes on the machine (CI neighbours, other jobs) are noise in every figure: the
// benchmark waits for them to go quiet before a run, and measures how much they took during it.
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { machineBusySeconds, ownCpuSeconds } from './proc.js';

/** Above this share of the machine's CPU taken by other processes, a run is disturbed. */
export const DISTURBED_SHARE = 0.05;

const SAMPLE_MS = 1000;

export interface CpuMark {
  machine: number;
  own: number;
  at: number;
}

export function markCpu(): CpuMark {
  return { machine: machineBusySeconds(), own: ownCpuSeconds(), at: Date.now() };
}

/**
 * The share of the machine's CPU used since `mark` by processes other than the benchmark, its
 * exited children, and `alsoOursSeconds` (CPU of our processes still running).
 */
export function otherShareSince(mark: CpuMark, alsoOursSeconds = 0): number {
  const now = markCpu();
  const other = now.machine - mark.machine - (now.own - mark.own) - alsoOursSeconds;
  const capacity = ((now.at - mark.at) / 1000) * os.cpus().length;
  return capacity > 0 ? Math.round((Math.max(0, other) / capacity) * 1000) / 1000 : 0;
}

/**
 * Waits, at most `maxWaitMs`, until other processes have used less than DISTURBED_SHARE of the
 * CPU for a whole second; our own processes must be idle meanwhile. Returns the share seen last.
 */
export async function waitForQuiet(maxWaitMs: number, progress: (line: string) => void): Promise<number> {
  const deadline = Date.now() + maxWaitMs;
  let told = false;
  for (;;) {
    const mark = markCpu();
    await sleep(SAMPLE_MS);
    const share = otherShareSince(mark);
    if (share <= DISTURBED_SHARE || Date.now() >= deadline) return share;
    if (!told) progress(`other processes are using ${(share * 100).toFixed(0)}% of the CPU: waiting up to ${Math.round(maxWaitMs / 1000)} s for them`);
    told = true;
  }
}
