import { readFileSync } from 'node:fs';

// How many client connections the proxy holds open in one process, so that idle or slow
// clients can never take every file descriptor: the control API, health checks, the apps'
// output pipes, spawns and the state file keep what they need while the proxy is full.
//
// Each process (the daemon, each proxy worker) has its own descriptor table and its own
// limit. Node raises the soft RLIMIT_NOFILE to the hard one at start, so this is in effect
// `ulimit -Hn` (systemd's LimitNOFILE). A proxied connection may take two descriptors, the
// client's and one to the app; RESERVED_FDS stay for everything else.

export const RESERVED_FDS = 128;
const MIN_CONNECTIONS = 16;

/** The soft open-file limit of this process, or null where it cannot be read (not Linux) or is unlimited. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | null {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return null;
  }
  const soft = /^Max open files\s+(\d+)\s/m.exec(text)?.[1];
  return soft === undefined ? null : Number(soft);
}

/** The cap for this process; null (no cap) when its limit is unknown. */
export function proxyConnectionLimit(fdLimit = openFileLimit()): number | null {
  if (fdLimit === null) return null;
  return Math.max(MIN_CONNECTIONS, Math.floor((fdLimit - RESERVED_FDS) / 2));
}
