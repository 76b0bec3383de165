import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

// Which app processes the rainbowd running on a config owns, and which of them is each
// service's active generation, on which port: written next to the config at every switch,
// because a rainbowd that is killed cannot tell its successor. The next rainbowd on the
// config reads it to adopt the active generations (adoption.ts) and, while its writer is
// alive, to leave that writer's apps alone. Removed when rainbowd exits cleanly.

export interface RecordedGeneration {
  service: string;
  generation: number;
  /** The generation new requests went to when the record was written. */
  active: boolean;
  port: number;
  /** The wrapper shell's pid, which is also the app's process group. */
  groupId: number;
  /** Its RAINBOWD_GENERATION_MARKER: tells the app from a process that reused its pid. */
  marker: string;
  pidfile: string;
}

export interface GenerationRecord {
  daemonPid: number;
  generations: RecordedGeneration[];
}

const RECORD_NAME = 'rainbow.generations.json';

export function generationRecordFile(configFile: string): string {
  return path.join(path.dirname(configFile), RECORD_NAME);
}

/** Synchronous and atomic (temp file + rename): it is written from the switch itself. */
export function writeGenerationRecord(configFile: string, generations: RecordedGeneration[]): void {
  const file = generationRecordFile(configFile);
  const temporary = `${file}.${process.pid}.tmp`;
  const record: GenerationRecord = { daemonPid: process.pid, generations };
  writeFileSync(temporary, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
}

export function readGenerationRecord(configFile: string): GenerationRecord | null {
  try {
    const record = JSON.parse(readFileSync(generationRecordFile(configFile), 'utf8')) as Partial<GenerationRecord>;
    if (!Number.isSafeInteger(record.daemonPid) || !Array.isArray(record.generations)) return null;
    return { daemonPid: record.daemonPid!, generations: record.generations.filter(isRecordedGeneration) };
  } catch {
    return null; // none, or not readable: nothing is adopted, what was left is stopped
  }
}

/** Synchronous: it runs in the crash handler too. Leaves another daemon's record alone. */
export function removeGenerationRecord(configFile: string, pid: number): void {
  if (readGenerationRecord(configFile)?.daemonPid === pid) rmSync(generationRecordFile(configFile), { force: true });
}

function isRecordedGeneration(value: unknown): value is RecordedGeneration {
  const entry = value as Partial<RecordedGeneration> | null;
  return (
    typeof entry === 'object' && entry !== null &&
    typeof entry.service === 'string' && Number.isSafeInteger(entry.generation) && typeof entry.active === 'boolean' &&
    Number.isInteger(entry.port) && Number.isSafeInteger(entry.groupId) && entry.groupId! > 1 &&
    typeof entry.marker === 'string' && typeof entry.pidfile === 'string'
  );
}
