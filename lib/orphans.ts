import { readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatDuration } from './duration.js';
import type { Logger } from './log.js';
import { findMarked, GENERATION_MARKER, stopMarked } from './marked-processes.js';
import { groupOf, isAlive } from './process-group.js';

// An app whose rainbowd died without stopping it (SIGKILL, the OOM killer, a crash) goes on
// running, holding its port and memory, with nobody left to stop it. Every app gets the
// config file and the pid of the rainbowd that launched it in its environment, so that the
// next rainbowd started with the same config finds what its predecessor left: it adopts the
// active generations (adoption.ts) and stops the rest before its own first deploy, and
// removes the runtime directory (pidfiles), which is named for the dead rainbowd's pid.
// Linux only (/proc); elsewhere nothing is found.

const CONFIG_VARIABLE = 'RAINBOWD_CONFIG';
const DAEMON_PID_VARIABLE = 'RAINBOWD_DAEMON_PID';

/** The environment rainbowd adds for every app it launches. */
export function ownerEnvironment(configFile: string): Record<string, string> {
  return { [CONFIG_VARIABLE]: configFile, [DAEMON_PID_VARIABLE]: String(process.pid) };
}

/** Where a rainbowd keeps its apps' pidfiles: `mkdtemp` adds a random suffix. */
export function runtimeDirPrefix(daemonPid = process.pid): string {
  return path.join(os.tmpdir(), `rainbowd-${daemonPid}-`);
}

/** The runtime directories a dead rainbowd left. */
export function removeRuntimeDirs(daemonPid: number): void {
  const prefix = path.basename(runtimeDirPrefix(daemonPid));
  for (const entry of readdirSync(os.tmpdir())) {
    if (entry.startsWith(prefix)) rmSync(path.join(os.tmpdir(), entry), { recursive: true, force: true });
  }
}

/** The processes of one generation that outlived their rainbowd. */
export interface Orphan {
  service: string;
  generation: string;
  groupId: number;
  pids: number[];
  /** The rainbowd that launched it, no longer running. */
  daemonPid: number;
  configFile: string;
  /** Its RAINBOWD_GENERATION_MARKER, if it has one. */
  marker: string | null;
}

export function findOrphans(configFile: string): Orphan[] {
  const orphans = new Map<string, Orphan>();
  // Never our own group: a rainbowd started from an app's shell inherits its environment.
  const ownGroup = groupOf(process.pid);
  for (const { pid, env } of findMarked(CONFIG_VARIABLE, configFile)) {
    const daemonPid = Number(env.get(DAEMON_PID_VARIABLE));
    const groupId = groupOf(pid);
    // A rainbowd that still runs (another one on this config, with other ports) owns its apps.
    if (groupId === null || groupId === ownGroup || !Number.isSafeInteger(daemonPid) || daemonPid === process.pid || isAlive(daemonPid)) continue;
    const service = env.get('RAINBOWD_SERVICE') ?? '?';
    const generation = env.get('RAINBOWD_GENERATION') ?? '?';
    const key = `${daemonPid}/${service}/${generation}`;
    const orphan = orphans.get(key) ?? { service, generation, groupId, pids: [], daemonPid, configFile, marker: env.get(GENERATION_MARKER) ?? null };
    orphan.pids.push(pid);
    orphans.set(key, orphan);
  }
  return [...orphans.values()];
}

/**
 * SIGTERM to the group and to any process that left it, SIGKILL to whatever is left after
 * `timeoutMs`. Says which it took.
 */
export function stopOrphan(orphan: Orphan, timeoutMs: number): Promise<'SIGTERM' | 'SIGKILL'> {
  return stopMarked(orphan.pids, CONFIG_VARIABLE, orphan.configFile, timeoutMs, orphan.groupId);
}

/** Stops what a predecessor on this config left running and this rainbowd does not adopt, each orphan logged as it goes. */
export async function stopOrphans(orphans: Orphan[], timeoutMs: number, log: Logger): Promise<void> {
  await Promise.all(
    orphans.map(async (orphan) => {
      // Not `service#generation`: that label names this rainbowd's own generations in the log.
      const who = { service: orphan.service, pid: orphan.groupId };
      const what = `generation ${orphan.generation} of rainbowd pid ${orphan.daemonPid}`;
      log.event('orphan-stopping', { ...who, reason: `${what}, left running when that rainbowd exited without stopping it (killed or crashed); SIGTERM to its ${orphan.pids.length} process(es)` });
      const how = await stopOrphan(orphan, timeoutMs);
      log.event('orphan-stopped', { ...who, reason: `${what}: ${how === 'SIGTERM' ? 'exited after SIGTERM' : `still running ${formatDuration(timeoutMs)} after SIGTERM, SIGKILLed`}` });
    }),
  );
}
