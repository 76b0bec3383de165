import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { RainbowError } from './errors.js';

// The haproxy program the haproxy engine runs: found once at start and its version checked,
// so that a missing or too old HAProxy stops rainbowd with one line rather than at the
// first reload. 2.6 is the oldest release tested: dynamic servers with pool options on
// `add server`, `option idle-close-on-response`, `timeout client-fin`.

export const MINIMUM_VERSION: readonly [number, number] = [2, 6];

// Debian installs haproxy in /usr/sbin, which a non-root PATH often lacks.
const SYSTEM_DIRECTORIES = ['/usr/sbin', '/usr/local/sbin', '/sbin'];

const INSTALL = 'install it (apt-get install haproxy on Debian/Ubuntu) or set "haproxyPath" to the program';

export interface HaproxyBinary {
  path: string;
  version: string;
}

/** `haproxyPath` resolved to a program that runs and is recent enough; throws ENGINE_UNAVAILABLE otherwise. */
export async function findHaproxy(haproxyPath: string): Promise<HaproxyBinary> {
  const program = await findProgram(haproxyPath);
  if (program === null) {
    const where = haproxyPath.includes('/') ? `${haproxyPath} does not exist or is not executable` : `"${haproxyPath}" was not found on PATH or in ${SYSTEM_DIRECTORIES.join(', ')}`;
    throw unavailable(`${where}; ${INSTALL}`);
  }
  const result = await execa(program, ['-v'], { reject: false, timeout: 10_000, all: true });
  const version = parseVersion(result.all ?? '');
  if (version === null) throw unavailable(`${program} -v did not print "HAProxy version X.Y": is it HAProxy? ${INSTALL}`);
  if (!isRecentEnough(version)) throw unavailable(`${program} is HAProxy ${version}, older than ${MINIMUM_VERSION.join('.')}; ${INSTALL.replace('install it', 'install a newer one')}`);
  return { path: program, version };
}

/** `HAProxy version 2.6.12-1+deb12u4 2026/10/17 - ...` -> `2.6.12-1+deb12u4`; null when the text says no version. */
export function parseVersion(output: string): string | null {
  return /^(?:HAProxy|HA-Proxy) version (\d+\.\d+\S*)/m.exec(output)?.[1] ?? null;
}

export function isRecentEnough(version: string): boolean {
  const [major = 0, minor = 0] = version.split(/[.-]/).map(Number);
  const [wantMajor, wantMinor] = MINIMUM_VERSION;
  return major > wantMajor || (major === wantMajor && minor >= wantMinor);
}

function unavailable(reason: string): RainbowError {
  return new RainbowError('ENGINE_UNAVAILABLE', `"engine": "haproxy" needs HAProxy ${MINIMUM_VERSION.join('.')} or later: ${reason}`);
}

/** A program by path, or by name on PATH and in the system directories; null when there is none. */
export async function findProgram(name: string): Promise<string | null> {
  const candidates = name.includes('/')
    ? [name]
    : [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...SYSTEM_DIRECTORIES].map((directory) => path.join(directory, name));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not this one
    }
  }
  return null;
}
