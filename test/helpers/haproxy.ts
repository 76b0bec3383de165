import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive, markedProcesses, type ProcessInfo } from './process.js';

// The HAProxy of the daemon running on a test directory's config, found as rainbowd records
// it for its successor (rainbow.haproxy.json: its runtime directory, on HAProxy's command line).

interface Recorded {
  daemonPid: number;
  dir: string;
}

function recordOf(dir: string): Recorded | null {
  try {
    return JSON.parse(readFileSync(join(dir, 'rainbow.haproxy.json'), 'utf8')) as Recorded;
  } catch {
    return null;
  }
}

/** Every process of the recorded HAProxy (masters and workers), or none when none is recorded. */
export function haproxyProcesses(dir: string): ProcessInfo[] {
  const record = recordOf(dir);
  return record === null ? [] : markedProcesses(join(record.dir, 'haproxy.cfg'));
}

/** Its masters: those whose parent is not one of its processes (there should be one). */
export function haproxyMasters(dir: string): ProcessInfo[] {
  const processes = haproxyProcesses(dir);
  return processes.filter((info) => !processes.some((parent) => parent.pid === info.ppid));
}

/** Test cleanup only: an HAProxy that outlived the daemon a test killed must not outlive the test. */
export function killLeftHaproxy(dir: string): void {
  const record = recordOf(dir);
  if (record === null || isAlive(record.daemonPid)) return;
  for (const info of haproxyProcesses(dir)) {
    try {
      process.kill(info.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(record.dir, { recursive: true, force: true });
}
