import { readFile, rename, writeFile } from 'node:fs/promises';
import { MAX_DURATION_MS } from './duration.js';
import { describeValue, messageOf } from './errors.js';
import type { ServiceMode } from './api.js';

// What `rainbowd deploy`, `pause` and `stop` changed at run time, kept next to the config so
// that a restart brings it back. Written atomically (temp file + rename). Read entry by
// entry: one unreadable entry is reported and skipped, never takes the others down.

export interface SavedService {
  /** The definition given to `rainbowd deploy` (services deployed at run time only). */
  deployed?: Record<string, unknown>;
  mode?: ServiceMode;
  message?: string | null;
  maxPauseMs?: number;
}

export interface LoadedState {
  services: Map<string, SavedService>;
  /** Entries that could not be read, as they are in the file, to be written back untouched. */
  unreadable: Map<string, SavedService>;
  problems: string[];
}

const VERSION = 1;

export class StateFile {
  private writing: Promise<unknown> = Promise.resolve();

  constructor(readonly file: string) {}

  async load(): Promise<LoadedState> {
    const services = new Map<string, SavedService>();
    const unreadable = new Map<string, SavedService>();
    const problems: string[] = [];
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(`${this.file}: cannot read it: ${messageOf(error)}`);
      return { services, unreadable, problems };
    }
    // A file that is not ours to read is set aside, not overwritten by the next save.
    const setAside = async (what: string) => {
      const kept = `${this.file}.corrupt`;
      await rename(this.file, kept).catch(() => undefined);
      problems.push(`${this.file}: ${what}; kept as ${kept}, starting without saved services`);
      return { services, unreadable, problems };
    };
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      return setAside(`not valid JSON (${messageOf(error)})`);
    }
    if (!isObject(parsed)) return setAside(`holds ${describeValue(parsed)}, not an object`);
    const entries = parsed.services;
    if (!isObject(entries)) return setAside(entries === undefined ? 'no "services" in it' : `its "services" is ${describeValue(entries)}, not an object`);
    for (const [name, entry] of Object.entries(entries)) {
      const problem = checkEntry(entry);
      if (problem) {
        problems.push(`${this.file}: service "${name}" skipped: ${problem}; the entry stays in the file until the name is deployed again`);
        unreadable.set(name, entry as SavedService);
      } else services.set(name, entry as SavedService);
    }
    return { services, unreadable, problems };
  }

  /**
   * Saves are queued so that two in a row cannot interleave their renames. A failed save
   * fails only its own caller: the next one tries again.
   */
  save(services: Map<string, SavedService>): Promise<void> {
    const content = `${JSON.stringify({ version: VERSION, services: Object.fromEntries(services) }, null, 2)}\n`;
    const write = async () => {
      const temporary = `${this.file}.${process.pid}.tmp`;
      await writeFile(temporary, content, { mode: 0o600 });
      await rename(temporary, this.file);
    };
    const saving = this.writing.then(write);
    this.writing = saving.catch(() => undefined);
    return saving;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkEntry(entry: unknown): string | null {
  if (!isObject(entry)) return 'not an object';
  const { deployed, mode, message, maxPauseMs } = entry;
  if (deployed !== undefined && !isObject(deployed)) return '"deployed" is not an object';
  if (mode !== undefined && mode !== 'running' && mode !== 'paused' && mode !== 'stopped') return `"mode" is ${JSON.stringify(mode)}`;
  if (message !== undefined && message !== null && typeof message !== 'string') return '"message" is not a string';
  if (maxPauseMs !== undefined && (typeof maxPauseMs !== 'number' || maxPauseMs < 0 || maxPauseMs > MAX_DURATION_MS)) return '"maxPauseMs" is not a duration';
  return null;
}
