import dns from 'node:dns/promises';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { messageOf } from './errors.js';
import {
  activeBackend,
  activeMap,
  backendOf,
  bindLine,
  CLIENT_ADDRESS_FIELD,
  FRONTEND,
  haproxyConfig,
  type HaproxyListener,
  type HaproxyServer,
  routingSignature,
  SERVER_OPTIONS,
  serverAddress,
  serverName,
} from './haproxy-config.js';
import { findHaproxy } from './haproxy-binary.js';
import { HaproxyProcess } from './haproxy-process.js';
import { haproxyDirTemplate, haproxyFiles, type HaproxyFiles, isFallbackSocket, removeHaproxyRecord, writeHaproxyRecord } from './haproxy-record.js';
import { parseInFlight, runtimeCommand, runtimeCommands, sessionsOn } from './haproxy-runtime.js';
import { listen } from './listen.js';
import type { Logger } from './log.js';
import { Proxy } from './proxy.js';
import type { DataPath, DataPathHandover, RouteTable, UpstreamAddress } from './route-table.js';

// The haproxy engine: HAProxy carries the requests of every running service with an active
// generation; rainbowd's own proxy, the fallback, answers the rest (404, the starting page,
// paused and stopped services) on a unix socket in the runtime directory. A switch is
// runtime API commands only: the new server added and made ready before the map sends the
// service to it, the old one set to drain. A change of services or routes rewrites the
// config and reloads HAProxy (master-worker: the old worker finishes what it had). Every
// command but the poll of the in-flight counts that status shows goes through one serial
// queue, so whenIdle, release and a reload each see every update published before them.
// HAProxy outlives rainbowd: a rainbowd that takes it over (after a kill, or at `rainbowd
// upgrade`) loads its own config into it with a reload, and HAProxy's runtime files live in
// a directory of their own, recorded next to the config (haproxy-record.ts).

export interface HaproxyDataPathOptions {
  /** The config's `haproxyPath`: found and its version checked in `listen`. */
  haproxyPath: string;
  /** Where the HAProxy is recorded for a rainbowd that takes it over (null: not recorded). */
  configFile: string | null;
  log: Logger;
}

/** What HAProxy is known to hold: the routing it was loaded with, its servers (ready or not), its map. */
interface Applied {
  signature: string;
  ready: Map<number, boolean>;
  backends: Map<string, string>;
}

/** How often a drain asks whether the server is idle: HAProxy measured ~270 ms drains under load. */
const IDLE_POLL_MS = 5;
/** `del server` is refused while a connection went back to the idle pool: it is tried again this often. */
const DELETE_ATTEMPTS = 50;
/** How often a rainbowd that handed over asks whether HAProxy's old workers, which may still send to its fallback, are gone. */
const OLD_WORKERS_POLL_MS = 50;

export class HaproxyDataPath implements DataPath {
  private readonly fallback: Proxy;
  /** HAProxy's runtime directory: chosen in `listen`, or the one of the HAProxy taken over. */
  private dir = '';
  private paths!: HaproxyFiles;
  /** An HAProxy to take over at `listen`, and whether the rainbowd that ran it still does. */
  private found: { dir: string; predecessorRunning: boolean } | null = null;
  private handedOver = false;
  private readonly log: Logger;
  private table: RouteTable = { services: [], trustedProxies: [], forwardedFields: [], via: '' };
  /** Every generation not yet released, by key: the servers HAProxy holds. */
  private readonly servers = new Map<number, UpstreamAddress & { service: string }>();
  private applied: Applied | null = null;
  private haproxy: HaproxyProcess | null = null;
  private listener: HaproxyListener | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * In-flight counts per server, as HAProxy last told them: read when status asks, when the
   * routing changes (for the draining line in the log) and at each poll of a drain. Not on a
   * timer: ten reads a second cost an idle daemon and its HAProxy ~2 % of a core.
   */
  private readonly counts = new Map<number, number>();
  private countsRead: Promise<void> | null = null;
  /** Old workers may remain since the last reload: drains ask them too until none is left. */
  private oldWorkersMayRemain = false;
  private stopped = false;

  constructor(private readonly options: HaproxyDataPathOptions) {
    this.log = options.log;
    // It forwards rarely (a paused service resumed, a path to normalize, an old worker's last
    // requests after a reload): on a connection each, so the daemon never loads undici.
    this.fallback = new Proxy(options.log, { clientAddressField: CLIENT_ADDRESS_FIELD, connections: 'one per request' });
  }

  /**
   * Before `listen`: the HAProxy whose runtime files are in `dir` is taken over rather than a
   * new one started, if it still runs. `predecessorRunning`: it is handed over by `rainbowd
   * upgrade`; else its rainbowd was killed.
   */
  takeOver(dir: string, predecessorRunning: boolean): void {
    this.found = { dir, predecessorRunning };
  }

  async listen(port: number, host: string): Promise<void> {
    const binary = await findHaproxy(this.options.haproxyPath);
    this.listener = { host, port };
    this.log.event('haproxy-found', { path: binary.path, version: binary.version });
    if (!(this.found && (await this.attach(binary.path, this.found)))) await this.startNew(binary.path, port, host);
    if (this.options.configFile) writeHaproxyRecord(this.options.configFile, this.dir);
  }

  private async startNew(binary: string, port: number, host: string): Promise<void> {
    await assertFree(port, host);
    this.useDir(mkdtempSync(haproxyDirTemplate(os.tmpdir())));
    await this.fallback.listen(this.paths.fallbackSocket);
    const haproxy = this.process(binary);
    this.writeConfig();
    await haproxy.start();
    this.haproxy = haproxy;
  }

  /**
   * Takes over the HAProxy in `found.dir` if its master answers: our fallback on a socket of
   * our own, our config loaded with a reload (its old workers finish what they carry). False
   * when it no longer runs: then a new one is started, as at any start.
   */
  private async attach(binary: string, found: { dir: string; predecessorRunning: boolean }): Promise<boolean> {
    this.useDir(found.dir);
    const haproxy = this.process(binary);
    const pid = await haproxy.attach();
    if (pid === null) {
      if (found.predecessorRunning) throw new Error(`the HAProxy handed over does not answer on ${this.paths.masterSocket}`);
      this.log.event('haproxy-gone', { reason: `the HAProxy a killed rainbowd left no longer runs; starting a new one` });
      rmSync(found.dir, { recursive: true, force: true });
      return false;
    }
    // A listen address that changed since HAProxy was loaded (applied by `rainbowd upgrade`): the reload binds it.
    if (!this.bindsAlready(this.listener!)) await assertFree(this.listener!.port, this.listener!.host);
    await this.fallback.listen(this.paths.fallbackSocket);
    // A killed rainbowd's fallback sockets: HAProxy's old workers may still send to them.
    if (!found.predecessorRunning) await this.answerLeftFallbacks();
    this.writeConfig();
    await haproxy.reload();
    this.oldWorkersMayRemain = true;
    this.haproxy = haproxy;
    const from = found.predecessorRunning ? 'handed over by the rainbowd that ran it' : 'left serving by a rainbowd that exited without stopping it';
    this.log.event('haproxy-adopted', { pid, reason: `${from}; reloaded with this rainbowd's config` });
    return true;
  }

  /** Whether the config HAProxy was loaded with already binds `listener`: then the address is HAProxy's own. */
  private bindsAlready(listener: HaproxyListener): boolean {
    try {
      return readFileSync(this.paths.config, 'utf8').split('\n').includes(bindLine(listener));
    } catch {
      return false;
    }
  }

  private useDir(dir: string): void {
    this.dir = dir;
    this.paths = haproxyFiles(dir);
  }

  private process(binary: string): HaproxyProcess {
    const { config, masterSocket, adminSocket } = this.paths;
    return new HaproxyProcess({ binary, log: this.log, configFile: config, masterSocket, adminSocket, onExit: (how) => this.restart(how) });
  }

  /** Each fallback socket in the directory that is not ours: its rainbowd is dead, ours answers on it until it stops. */
  private async answerLeftFallbacks(): Promise<void> {
    for (const file of readdirSync(this.dir).map((name) => path.join(this.dir, name))) {
      if (!isFallbackSocket(file) || file === this.paths.fallbackSocket) continue;
      rmSync(file, { force: true });
      const server = net.createServer();
      await listen(server, file);
      await this.fallback.listenOnHandedOver(server);
    }
  }

  handover(): DataPathHandover {
    return { haproxyDir: this.dir };
  }

  /** After a failed `rainbowd upgrade`: the successor may have loaded its config into HAProxy and recorded it as its own. */
  reclaim(): void {
    if (this.options.configFile) writeHaproxyRecord(this.options.configFile, this.dir);
    if (this.applied) this.applied.signature = '';
    void this.enqueue(() => this.reconcile());
  }

  /**
   * The successor has loaded its config into HAProxy: no command from here any more, and
   * HAProxy is left running. The fallback answers until HAProxy's old workers, which may
   * still send to it, are gone.
   */
  async handOver(timeoutMs: number): Promise<void> {
    this.handedOver = true;
    this.stopped = true;
    this.haproxy?.letGo();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && ((await this.haproxy?.processes().catch(() => null))?.oldWorkers.length ?? 0) > 0) await sleep(OLD_WORKERS_POLL_MS);
    await this.fallback.handOver(Math.max(0, deadline - Date.now()));
  }

  update(table: RouteTable): void {
    this.table = table;
    this.fallback.update(table);
    for (const route of table.services) {
      if (route.upstream && !this.servers.has(route.upstream.key)) this.servers.set(route.upstream.key, { ...route.upstream, service: route.name });
    }
    // Read while the switch is made: what the old generation carries when its drain begins.
    void this.readInFlight();
    void this.enqueue(() => this.reconcile());
  }

  async whenRouted(): Promise<void> {
    await this.enqueue(async () => undefined);
  }

  async whenIdle(key: number): Promise<void> {
    const inHaproxy = async () => {
      for (;;) {
        const count = (await this.enqueue(() => this.serverInFlight(key))) ?? 0;
        if (this.servers.has(key)) this.counts.set(key, count);
        if (count === 0) return;
        await sleep(IDLE_POLL_MS);
      }
    };
    await Promise.all([inHaproxy(), this.fallback.whenIdle(key)]);
  }

  async release(key: number): Promise<number> {
    const [cut, cutInFallback] = await Promise.all([this.enqueue(() => this.removeServer(key)), this.fallback.release(key)]);
    return (cut ?? 0) + cutInFallback;
  }

  inFlight(key: number): number {
    return (this.counts.get(key) ?? 0) + this.fallback.inFlight(key);
  }

  close(): void {
    // In the config too: a deploy or remove during shutdown reloads HAProxy, which must not open it again.
    if (this.listener) this.listener.closed = true;
    // `shutdown frontend` alone leaves the socket listening until the worker exits: a client
    // connecting meanwhile would wait in its backlog for an answer that never comes. Disabled
    // first, the socket stops listening (new connections refused at once); the shutdown then
    // closes each kept-alive connection after its next answer, as the node engine does.
    void this.enqueue(async () => {
      await this.command(`disable frontend ${FRONTEND}`);
      await this.command(`shutdown frontend ${FRONTEND}`);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.fallback.stop();
    if (this.handedOver || !this.haproxy) return;
    if (this.haproxy.pid) {
      await this.haproxy.stop();
      this.log.event('haproxy-stopped', { reason: 'rainbowd is stopping' });
    }
    rmSync(this.dir, { recursive: true, force: true });
    if (this.options.configFile) removeHaproxyRecord(this.options.configFile);
  }

  /** Runs `task` after everything queued before it; a failure is logged, and the queue goes on. */
  private enqueue<T>(task: () => Promise<T>): Promise<T | undefined> {
    const run = this.queue.then(async () => {
      if (this.stopped || this.applied === null) return undefined;
      try {
        return await task();
      } catch (error) {
        this.log.event('haproxy-command-failed', { reason: messageOf(error) });
        return undefined;
      }
    });
    this.queue = run;
    return run;
  }

  /** Config and map from the current state; what HAProxy holds once it loads them. */
  private writeConfig(): void {
    const servers: HaproxyServer[] = [];
    for (const server of this.servers.values()) {
      const route = this.table.services.find((candidate) => candidate.name === server.service);
      if (route) servers.push({ ...server, serving: route.upstream?.key === server.key });
    }
    writeFileSync(this.paths.activeMap, activeMap(this.table), { mode: 0o600 });
    writeFileSync(this.paths.config, haproxyConfig(this.table, servers, this.listener!, this.paths), { mode: 0o600 });
    this.applied = {
      signature: routingSignature(this.table),
      ready: new Map(servers.map((server) => [server.key, server.serving])),
      backends: new Map(this.table.services.flatMap((route) => (activeBackend(route) ? [[route.name, activeBackend(route)!] as const] : []))),
    };
  }

  /**
   * Brings HAProxy to the last table: a reload when the routing changed, else the switch's
   * commands in its order (new server added, made ready, the map, old servers drained), all
   * in one round trip: a connection each measured ~14 ms a switch under load.
   */
  private async reconcile(): Promise<void> {
    const applied = this.applied!;
    if (routingSignature(this.table) !== applied.signature) return this.reload();
    const { activeMap: map } = this.paths;
    const steps: SwitchStep[] = [];
    for (const route of this.table.services) {
      const backend = backendOf(route.name);
      const active = route.upstream?.key ?? null;
      const successor: SwitchStep[] = [];
      if (active !== null && !applied.ready.has(active)) {
        const command = `add server ${backend}/${serverName(route.upstream!.generation)} ${await resolved(route.upstream!)} ${SERVER_OPTIONS}`;
        successor.push({ command, expected: /New server registered/, done: () => applied.ready.set(active, false) });
      }
      if (active !== null && applied.ready.get(active) !== true) {
        successor.push({ command: `set server ${backend}/${serverName(route.upstream!.generation)} state ready`, done: () => applied.ready.set(active, true) });
      }
      steps.push(...successor);
      const wanted = activeBackend(route);
      const current = applied.backends.get(route.name) ?? null;
      if (wanted !== current) {
        const command = wanted === null ? `del map ${map} ${route.name}` : `${current === null ? 'add' : 'set'} map ${map} ${route.name} ${wanted}`;
        steps.push({ command, done: () => (wanted === null ? applied.backends.delete(route.name) : applied.backends.set(route.name, wanted)) });
      }
      for (const [key, ready] of applied.ready) {
        const server = this.servers.get(key);
        if (!ready || key === active || server?.service !== route.name) continue;
        const name = `${backend}/${serverName(server.generation)}`;
        steps.push({ command: `set server ${name} state drain`, done: () => applied.ready.set(key, false), successor, undo: { command: `set server ${name} state ready`, done: () => applied.ready.set(key, true) } });
      }
    }
    if (steps.length > 0) await this.runSteps(steps);
  }

  /**
   * Sends the steps in one round trip; HAProxy runs each whatever the others answered, so
   * each answer is checked, and an old server whose successor could not be made ready is
   * made ready again (it keeps serving, as it did when one refusal stopped the switch).
   */
  private async runSteps(steps: SwitchStep[]): Promise<void> {
    const answers = await runtimeCommands(this.paths.adminSocket, steps.map((step) => step.command));
    const failed = new Set<SwitchStep>();
    const refusals: string[] = [];
    steps.forEach((step, index) => {
      const answer = answers[index] ?? null;
      if (answer !== null && accepted(answer, step.expected)) return step.done();
      failed.add(step);
      refusals.push(refusal(step.command, answer));
    });
    if (refusals.length === 0) return;
    const undone = steps.filter((step) => step.undo && !failed.has(step) && step.successor?.some((needed) => failed.has(needed)));
    if (undone.length > 0) await this.runSteps(undone.map((step) => step.undo!));
    throw new Error(refusals.join('; '));
  }

  private async reload(): Promise<void> {
    this.writeConfig();
    this.oldWorkersMayRemain = true;
    const started = Date.now();
    try {
      await this.haproxy!.reload();
      this.log.event('haproxy-reloaded', { tookMs: Date.now() - started, reason: 'services or routes changed' });
    } catch (error) {
      // Tried again at the next change: until then HAProxy routes as before, and the fallback what it does not know.
      this.applied!.signature = '';
      this.log.event('haproxy-reload-failed', { reason: messageOf(error) });
    }
  }

  /** Requests in flight to the generation's server, in HAProxy's worker and in old workers still finishing. */
  private async serverInFlight(key: number): Promise<number> {
    const server = this.servers.get(key);
    if (!server) return 0;
    const name = `${backendOf(server.service)}/${serverName(server.generation)}`;
    const statsCommand = `show stat ${backendOf(server.service)} 4 -1`;
    let count = parseInFlight(await this.command(statsCommand, /^# pxname/)).get(name) ?? 0;
    if (this.oldWorkersMayRemain) {
      const { oldWorkers } = await this.haproxy!.processes();
      this.oldWorkersMayRemain = oldWorkers.length > 0;
      for (const pid of oldWorkers) {
        count += parseInFlight(await this.haproxy!.oldWorkerCommand(pid, statsCommand)).get(name) ?? 0;
      }
    }
    return count;
  }

  /**
   * The drain's end: sessions still on the server cut, in HAProxy's worker and in the old
   * ones a reload left (through the master: each finishes what it had, however long), and the
   * server deleted.
   */
  private async removeServer(key: number): Promise<number> {
    const server = this.servers.get(key);
    if (!server) return 0;
    const applied = this.applied!;
    const cut = await this.serverInFlight(key);
    const name = `${backendOf(server.service)}/${serverName(server.generation)}`;
    if (this.oldWorkersMayRemain) await this.cutInOldWorkers(server.service, server.generation);
    if (applied.ready.has(key)) {
      await this.command(`shutdown sessions server ${name}`);
      await this.command(`set server ${name} state maint`);
      for (let attempt = 1; ; attempt++) {
        const answer = await runtimeCommand(this.paths.adminSocket, `del server ${name}`);
        if (/Server deleted/.test(answer)) break;
        // A connection went back to the idle pool after maint: drain and maint again purge it.
        if (!/still has connections attached/.test(answer) || attempt === DELETE_ATTEMPTS) throw new Error(`del server ${name}: ${answer.trim()}`);
        await this.command(`set server ${name} state drain`);
        await this.command(`set server ${name} state maint`);
        await sleep(IDLE_POLL_MS);
      }
      applied.ready.delete(key);
    }
    this.servers.delete(key);
    this.counts.delete(key);
    return cut;
  }

  /** Each session an old worker still has on the generation's server, cut one by one. */
  private async cutInOldWorkers(service: string, generation: number): Promise<void> {
    const haproxy = this.haproxy!;
    for (const pid of (await haproxy.processes()).oldWorkers) {
      for (const session of sessionsOn(await haproxy.oldWorkerCommand(pid, 'show sess'), backendOf(service), serverName(generation))) {
        await haproxy.oldWorkerCommand(pid, `shutdown session ${session}`);
      }
    }
  }

  /**
   * Reads the in-flight counts afresh (one read at a time; callers during one share it). On a
   * connection of its own, beside the queue: a switch waiting behind a `show stat` under load
   * measured part of its 6-8 ms. A read that fails (HAProxy reloading or restarting) leaves
   * the counts as they were.
   */
  readInFlight(): Promise<void> {
    if (this.servers.size === 0 || this.applied === null || this.stopped) return Promise.resolve();
    this.countsRead ??= runtimeCommand(this.paths.adminSocket, 'show stat -1 4 -1')
      .then((answer) => {
        if (!/^# pxname/.test(answer)) return;
        const byServer = parseInFlight(answer);
        for (const [key, server] of this.servers) this.counts.set(key, byServer.get(`${backendOf(server.service)}/${serverName(server.generation)}`) ?? 0);
      })
      .catch(() => undefined)
      .finally(() => (this.countsRead = null));
    return this.countsRead;
  }

  /** HAProxy died: started again at once from the current state; every generation it held is kept. */
  private restart(how: string): void {
    if (this.stopped) return;
    this.log.event('haproxy-exited', { reason: `HAProxy ${how}; restarting it from the current state` });
    this.queue = this.queue.then(async () => {
      if (this.stopped) return;
      this.writeConfig();
      try {
        await this.haproxy!.start();
        this.log.event('haproxy-restarted', { pid: this.haproxy!.pid });
      } catch (error) {
        this.log.event('haproxy-restart-failed', { reason: `${messageOf(error)}; trying again in 1 s` });
        setTimeout(() => this.restart('could not be restarted'), 1000).unref();
      }
    });
  }

  /** One command to HAProxy's worker; an answer other than `expected` (by default: none) is an error. */
  private async command(command: string, expected?: RegExp): Promise<string> {
    const answer = await runtimeCommand(this.paths.adminSocket, command);
    if (!accepted(answer, expected)) throw new Error(refusal(command, answer));
    return answer;
  }
}

/** A runtime command of a switch, and what rainbowd knows HAProxy holds once it is accepted. */
interface SwitchStep {
  command: string;
  /** The answer that means success; by default none. */
  expected?: RegExp;
  done: () => void;
  /** A drain: the steps that make its successor ready, and the step that reverts it if they fail. */
  successor?: SwitchStep[];
  undo?: SwitchStep;
}

function accepted(answer: string, expected?: RegExp): boolean {
  return expected ? expected.test(answer) : answer.trim() === '';
}

function refusal(command: string, answer: string | null): string {
  return answer === null ? `HAProxy did not answer "${command}"` : `HAProxy answered "${command}" with: ${answer.trim().split('\n')[0]}`;
}

/** HAProxy's `add server` takes addresses, not names. */
async function resolved(address: UpstreamAddress): Promise<string> {
  const host = net.isIP(address.host) ? address.host : (await dns.lookup(address.host)).address;
  return serverAddress({ host, port: address.port });
}

/**
 * HAProxy binds with SO_REUSEPORT, which would share the port with another HAProxy: a plain
 * bind first fails as the node engine's would (the message says PORT_IN_USE).
 */
async function assertFree(port: number, host: string): Promise<void> {
  const probe = net.createServer();
  await listen(probe, port, host);
  await new Promise((resolve) => probe.close(resolve));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
