import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isAlive } from './process-group.js';

// Where the rainbowd running on a config listens for commands, written next to that config
// once it listens and removed when it exits. The CLI and the git hook read it first, so they
// reach the daemon that runs, even after the file on disk changed its port (which needs a
// restart to apply) or stopped being a valid config. No secret in it: the token stays in the
// config or the environment.

export interface DaemonRecord {
  pid: number;
  config: string;
  controlHost: string;
  controlPort: number;
  controlSocket: string | null;
}

const RECORD_NAME = 'rainbow.daemon.json';

function recordFile(dir: string): string {
  return path.join(dir, RECORD_NAME);
}

/** One key per line, so that a shell script (the git hook) can read it with sed. */
export function writeRecord(record: DaemonRecord): void {
  const file = recordFile(path.dirname(record.config));
  const temporary = `${file}.${record.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(temporary, file);
}

/**
 * A plain pidfile (`--pidfile`) for service managers: systemd's PIDFile= follows it to the
 * new daemon after `rainbowd upgrade`, as the new one writes it before the old one exits.
 */
export function writePidfile(file: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${process.pid}\n`);
  renameSync(temporary, file);
}

/** Synchronous: it runs in the crash handler too. Leaves a newer daemon's pid alone. */
export function removePidfile(file: string, pid: number): void {
  try {
    if (Number(readFileSync(file, 'utf8').trim()) === pid) rmSync(file, { force: true });
  } catch {
    // gone already
  }
}

/** Synchronous: it runs in the crash handler too. Leaves a newer daemon's record alone. */
export function removeRecord(configFile: string, pid: number): void {
  const file = recordFile(path.dirname(configFile));
  if (readRecord(file)?.pid === pid) rmSync(file, { force: true });
}

/** The record in `dir` of a rainbowd that is still running, if there is one. */
export function findRunningDaemon(dir: string): DaemonRecord | null {
  const record = readRecord(recordFile(dir));
  return record !== null && isAlive(record.pid) ? record : null;
}

function readRecord(file: string): DaemonRecord | null {
  try {
    const record = JSON.parse(readFileSync(file, 'utf8')) as Partial<DaemonRecord>;
    const valid = Number.isSafeInteger(record.pid) && typeof record.config === 'string' && typeof record.controlHost === 'string' && Number.isInteger(record.controlPort);
    return valid ? (record as DaemonRecord) : null;
  } catch {
    return null;
  }
}

