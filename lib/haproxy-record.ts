import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RainbowError } from './errors.js';
import { isAlive } from './process-group.js';

// Where the HAProxy of the rainbowd running on a config keeps its runtime files (config,
// map, master and admin sockets, the fallback's socket), written next to that config when
// HAProxy starts: HAProxy outlives a rainbowd that is killed, and the next rainbowd on the
// config finds it here to take it over. `rainbowd upgrade` hands the same over directly.
// Removed when rainbowd stops HAProxy.

export interface HaproxyRecord {
  daemonPid: number;
  /** The directory of HAProxy's runtime files, for its whole life. */
  dir: string;
}

const RECORD_NAME = 'rainbow.haproxy.json';

/** HAProxy's runtime files in its directory; the fallback socket is this rainbowd's own (a successor's is another). */
export interface HaproxyFiles {
  config: string;
  adminSocket: string;
  masterSocket: string;
  activeMap: string;
  fallbackSocket: string;
}

export function haproxyFiles(dir: string): HaproxyFiles {
  const file = (name: string) => path.join(dir, name);
  return { config: file('haproxy.cfg'), adminSocket: file('admin.sock'), masterSocket: file('master.sock'), activeMap: file('active.map'), fallbackSocket: file(`${FALLBACK_PREFIX}${process.pid}.sock`) };
}

/** Short names: HAProxy refuses a unix socket path longer than this, and they live under TMPDIR. */
const HAPROXY_SOCKET_PATH_MAX = 97;
const DIR_PREFIX = 'rainbowd-ha-';
const FALLBACK_PREFIX = 'fb-';

/** Where a new HAProxy's runtime directory is made (mkdtemp's template). Throws ENGINE_UNAVAILABLE when TMPDIR is too deep for HAProxy's socket paths. */
export function haproxyDirTemplate(tmpdir: string): string {
  const template = path.join(tmpdir, DIR_PREFIX);
  // mkdtemp adds 6 characters; a pid has at most 7 digits.
  const longest = `${template}XXXXXX/${FALLBACK_PREFIX}1234567.sock`;
  if (longest.length > HAPROXY_SOCKET_PATH_MAX) {
    throw new RainbowError('ENGINE_UNAVAILABLE', `the haproxy engine cannot keep its sockets in ${tmpdir}: HAProxy takes unix socket paths of at most ${HAPROXY_SOCKET_PATH_MAX} characters and these would have ${longest.length}; set TMPDIR to a shorter directory (e.g. /tmp)`);
  }
  return template;
}

/** A rainbowd's fallback socket in an HAProxy directory (each rainbowd that ran it has its own). */
export function isFallbackSocket(file: string): boolean {
  return new RegExp(`^${FALLBACK_PREFIX}\\d+\\.sock$`).test(path.basename(file));
}

function recordFile(configFile: string): string {
  return path.join(path.dirname(configFile), RECORD_NAME);
}

export function writeHaproxyRecord(configFile: string, dir: string): void {
  const file = recordFile(configFile);
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify({ daemonPid: process.pid, dir } satisfies HaproxyRecord, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
}

/** The HAProxy a rainbowd that is no longer running left on this config, if it recorded one. A running rainbowd's is never returned. */
export function findLeftHaproxy(configFile: string): HaproxyRecord | null {
  const record = readHaproxyRecord(configFile);
  return record !== null && record.daemonPid !== process.pid && !isAlive(record.daemonPid) ? record : null;
}

/** Leaves another daemon's record alone. */
export function removeHaproxyRecord(configFile: string, daemonPid = process.pid): void {
  if (readHaproxyRecord(configFile)?.daemonPid === daemonPid) rmSync(recordFile(configFile), { force: true });
}

function readHaproxyRecord(configFile: string): HaproxyRecord | null {
  try {
    const record = JSON.parse(readFileSync(recordFile(configFile), 'utf8')) as Partial<HaproxyRecord>;
    return Number.isSafeInteger(record.daemonPid) && typeof record.dir === 'string' && path.isAbsolute(record.dir) ? (record as HaproxyRecord) : null;
  } catch {
    return null; // none, or not readable: an HAProxy left running is not found, and its port is in use
  }
}
