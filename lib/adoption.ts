import { copyFileSync } from 'node:fs';
import path from 'node:path';
import type { Socket } from 'node:net';
import { AdoptedApp } from './adopted-app.js';
import { readGenerationRecord, type RecordedGeneration } from './generation-record.js';
import type { Handover } from './handover.js';
import type { Logger } from './log.js';
import { findOrphans, removeRuntimeDirs, type Orphan } from './orphans.js';
import { isAlive } from './process-group.js';

// What a rainbowd that died (killed, OOM, crashed) left on this config, sorted: the active
// generation of each service it ran is adopted, served again without a restart; everything
// else it left (draining generations, services no longer configured, apps its record does
// not name) is stopped, as orphans.ts does. Apps of a rainbowd that is still running are
// never touched, including those it adopted itself (they still carry the dead launcher's pid).

export interface Adoptable {
  service: string;
  generation: number;
  port: number;
  app: AdoptedApp;
}

export interface Leftovers {
  adoptable: Adoptable[];
  toStop: Orphan[];
  /** The highest generation number seen per service: numbering goes on from there. */
  lastGenerations: Map<string, number>;
}

/**
 * `canAdopt` says whether this rainbowd runs a supervised service of that name. The adopted
 * apps' pidfiles are copied into `runtimeDir`: the dead rainbowd's directory is removed.
 */
export function findLeftovers(configFile: string, canAdopt: (service: string) => boolean, runtimeDir: string): Leftovers {
  const record = readGenerationRecord(configFile);
  const recordOwnerAlive = record !== null && record.daemonPid !== process.pid && isAlive(record.daemonPid);
  const recorded = new Map((record?.generations ?? []).map((entry) => [entry.marker, entry]));
  const leftovers: Leftovers = { adoptable: [], toStop: [], lastGenerations: new Map() };
  const deadDaemons = new Set<number>();
  if (record !== null && !recordOwnerAlive && record.daemonPid !== process.pid) deadDaemons.add(record.daemonPid);
  for (const orphan of findOrphans(configFile)) {
    const entry = orphan.marker === null ? undefined : recorded.get(orphan.marker);
    if (recordOwnerAlive && entry) continue; // adopted by a rainbowd that runs: its own
    deadDaemons.add(orphan.daemonPid);
    const generation = Number(orphan.generation);
    if (Number.isSafeInteger(generation)) leftovers.lastGenerations.set(orphan.service, Math.max(generation, leftovers.lastGenerations.get(orphan.service) ?? 0));
    if (!recordOwnerAlive && entry?.active && entry.groupId === orphan.groupId && canAdopt(entry.service)) {
      leftovers.adoptable.push(adopt(entry, runtimeDir));
    } else leftovers.toStop.push(orphan);
  }
  for (const daemonPid of deadDaemons) removeRuntimeDirs(daemonPid);
  return leftovers;
}

/**
 * What a running rainbowd hands over at `rainbowd upgrade`: its active generations are
 * adopted with their output; the rest (draining, or of a service this config no longer has)
 * is stopped once the predecessor has exited, as its requests on them are over by then.
 */
export function takeHandedOver(handover: Handover, canAdopt: (service: string) => boolean, runtimeDir: string, log: Logger): { adoptable: Adoptable[]; stopLater: Adoptable[] } {
  const taken = { adoptable: [] as Adoptable[], stopLater: [] as Adoptable[] };
  for (const entry of handover.generations) {
    const streams = handover.outputs.get(entry.marker) ?? [];
    const app = adopt(entry, runtimeDir, { streams, onOutput: (line) => log.appOutput(entry.service, entry.generation, line) });
    (entry.active && canAdopt(entry.service) ? taken.adoptable : taken.stopLater).push(app);
  }
  return taken;
}

function adopt(entry: RecordedGeneration, runtimeDir: string, output?: { streams: Socket[]; onOutput: (line: string) => void }): Adoptable {
  const pidfile = path.join(runtimeDir, `${entry.service}-${entry.generation}.pid`);
  try {
    copyFileSync(entry.pidfile, pidfile);
  } catch {
    // No pidfile written: the app is stopped through its process group, as it would have been.
  }
  return { service: entry.service, generation: entry.generation, port: entry.port, app: new AdoptedApp(entry.groupId, entry.marker, pidfile, output) };
}
