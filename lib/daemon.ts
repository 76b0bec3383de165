import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { DEFAULT_SERVICE, DEFAULT_STOP_TIMEOUT_MS, findRouteClash, loadConfig, validateServiceDefinition, type DaemonConfig, type RunOverrides, type ServiceConfig } from './config.js';
import { ControlServer } from './control.js';
import { removeRecord, writeRecord } from './daemon-record.js';
import { formatDuration, parseDuration } from './duration.js';
import { RainbowError, isRainbowError, messageOf } from './errors.js';
import type { Logger } from './log.js';
import { findOrphans, ownerEnvironment, removeRuntimeDirs, runtimeDirPrefix, stopOrphan } from './orphans.js';
import { Proxy } from './proxy.js';
import { ProxyWorkers } from './proxy-workers.js';
import type { DataPath } from './route-table.js';
import { Service, type DeployResult, type ServiceOrigin, type ServiceStatus } from './service.js';
import { StateFile, type SavedService, type Saved } from './state.js';
import { findTargetLoop } from './target-address.js';

// Wiring: listeners, services, signals, watched files, reload and shutdown.

export interface DaemonStatus {
  pid: number;
  version: string;
  uptimeMs: number;
  config: string | null;
  proxy: { host: string; port: number; workers: number };
  control: { host: string; port: number; socket: string | null; token: boolean };
  services: ServiceStatus[];
}

const WATCH_DEBOUNCE_MS = 300;

export type ModeChange = { action: 'pause'; maxPauseMs?: number } | { action: 'stop'; message?: string | null } | { action: 'resume' } | { action: 'start' };

// The log line of each mode change, as a person says it ("api stopped", not "api stopd").
const modeChanged: Record<ModeChange['action'], string> = { pause: 'paused', resume: 'resumed', stop: 'stopped', start: 'started' };

export class Daemon {
  private readonly services = new Map<string, Service>();
  private readonly dataPath: DataPath;
  private readonly control: ControlServer;
  private readonly runtimeDir = mkdtempSync(runtimeDirPrefix());
  private readonly startedAt = Date.now();
  /** Marks the requests our proxy forwarded, so one that a target sends back to it is answered 508, not forwarded again. */
  private readonly via = `rainbowd-${randomBytes(6).toString('hex')}`;
  private watchers: FSWatcher[] = [];
  private shuttingDown: Promise<void> | null = null;
  private readonly state: StateFile | null;
  /** Configs of deploys under way, by service: their routes count as taken until they end. */
  private readonly deploying = new Map<string, ServiceConfig>();
  /** State entries that could not be restored: kept in the file so that a typo loses nothing. */
  private unrestored = new Map<string, SavedService>();
  /**
   * Generation numbers go on across a service's removal and return (remove, then reload or
   * deploy again), so that `default#1` names one generation in the whole log.
   */
  private readonly lastGenerations = new Map<string, number>();

  constructor(
    private config: DaemonConfig,
    private readonly overrides: RunOverrides,
    private readonly log: Logger,
    private readonly version: string,
  ) {
    this.dataPath = config.workers === 0 ? new Proxy(log) : new ProxyWorkers(config.workers, log);
    for (const serviceConfig of config.services) {
      this.services.set(serviceConfig.name, this.createService(serviceConfig, 'config'));
    }
    this.state = config.file ? new StateFile(path.join(path.dirname(config.file), 'rainbow.state.json')) : null;
    this.publishRoutes();
    this.control = new ControlServer(this, { host: config.controlHost, port: config.controlPort, token: config.controlToken });
  }

  private forgetService(service: Service): void {
    this.lastGenerations.set(service.name, service.lastGeneration);
  }

  private createService(config: ServiceConfig, origin: ServiceOrigin): Service {
    const context = {
      log: this.log,
      runtimeDir: this.runtimeDir,
      ownerEnv: this.config.file ? ownerEnvironment(this.config.file) : {},
      dataPath: this.dataPath,
      routesChanged: () => this.publishRoutes(),
    };
    return new Service(config, context, origin, (this.lastGenerations.get(config.name) ?? 0) + 1);
  }

  /** Every change of who serves what goes through here, to the proxy (or each worker). */
  private publishRoutes(): void {
    this.dataPath.update({ services: [...this.services.values()].map((service) => service.route()), trustedProxies: this.config.trustedProxies, via: this.via });
  }

  private get configDir(): string {
    return this.config.file ? path.dirname(this.config.file) : process.cwd();
  }

  async start(): Promise<void> {
    const { config } = this;
    try {
      await listenOrExplain(this.dataPath.listen(config.port, config.host), 'proxy', config.host, config.port, '"port" or --http-port', config.file);
      await listenOrExplain(this.control.listen(), 'control API', config.controlHost, config.controlPort, '"controlPort" or --control-port', config.file);
      if (config.controlSocket !== null) await this.control.listenOnSocket(config.controlSocket);
    } catch (error) {
      await this.dataPath.stop();
      this.control.close();
      rmSync(this.runtimeDir, { recursive: true, force: true });
      throw error;
    }
    this.log.event('listening', {
      proxy: `${config.host}:${config.port}`,
      workers: config.workers,
      control: `${config.controlHost}:${config.controlPort}`,
      controlSocket: config.controlSocket ?? undefined,
      controlToken: config.controlToken === null ? undefined : 'required',
      config: config.file ?? undefined,
      pid: process.pid,
    });
    try {
      this.recordControlAddress();
      this.installSignalHandlers();
      this.installCrashHandler();
      this.watchFiles();
      await this.stopOrphans();
      await this.restoreState();
    } catch (error) {
      // Listening but never deploying would answer 503 for ever: stop, and let the error be seen.
      await this.shutdown(`start failed (${messageOf(error)})`);
      throw error;
    }
    this.publishRoutes();
    for (const service of this.services.values()) {
      service.redeploy('initial deploy').catch(() => undefined); // logged; retried with backoff
    }
  }

  /** Throws at once (not in the promise) for an unknown service, so `?wait=0` can say so. */
  redeploy(name: string | undefined, reason: string): Promise<DeployResult> {
    return this.service(name ?? DEFAULT_SERVICE).redeploy(reason);
  }

  service(name: string): Service {
    const service = this.services.get(name);
    if (!service) throw new RainbowError('SERVICE_NOT_FOUND', `no service named "${name}"`);
    return service;
  }

  /**
   * kamal-proxy's deploy: health-check the target, switch, drain the previous target, and
   * only then answer. A refused deploy changes nothing, saved state included.
   */
  async deploy(name: string, definition: unknown): Promise<Saved<DeployResult>> {
    const source = `deploy ${name}`;
    const config = validateServiceDefinition(definition, name, source, this.configDir);
    if (config.target === undefined) {
      throw new RainbowError('BAD_REQUEST', `${source}: give a --target host:port; apps that rainbowd launches are declared with "run" in the config file`);
    }
    await this.refuseTargetLoop(config, source);
    const existing = this.services.get(name);
    if (existing?.origin === 'config') {
      throw new RainbowError('SERVICE_EXISTS', `service "${name}" is declared in ${this.config.file}; change it there (and reload) or deploy under another name`);
    }
    if (this.deploying.has(name)) throw new RainbowError('SERVICE_EXISTS', `service "${name}" is being deployed right now; try again when that deploy is over`);
    const taken = [...[...this.services.values()].map((service) => service.config), ...this.deploying.values()];
    const clash = findRouteClash(taken, config);
    if (clash) throw new RainbowError('HOST_IN_USE', clash);
    const reason = `deploy ${config.target}`;
    this.deploying.set(name, config);
    const service = existing ?? this.createService(config, 'deploy');
    try {
      // An existing service takes the new config (and its routes) at the switch.
      const result = await service.redeploy(reason, config);
      if (!existing) {
        this.services.set(name, service);
        this.publishRoutes();
      }
      return { ...result, ...(await this.saveState()) };
    } catch (error) {
      if (!existing) {
        this.forgetService(service);
        await service.stopAll(`deploy of ${name} refused`);
      }
      throw error;
    } finally {
      this.deploying.delete(name);
    }
  }

  private async refuseTargetLoop(config: ServiceConfig, source: string): Promise<void> {
    const loop = await findTargetLoop(config.target, this.config);
    if (loop) throw new RainbowError('TARGET_LOOP', `${source}: target ${loop}`);
  }

  /** Stops routing to the service, drains and stops its generations, forgets it. */
  async remove(name: string): Promise<Saved<{ ok: true; service: string }>> {
    const service = this.service(name);
    this.services.delete(name);
    this.forgetService(service);
    this.publishRoutes();
    await service.stopAll(`service ${name} removed`);
    const saved = await this.saveState();
    this.log.event('removed', { service: name });
    return { ok: true, service: name, ...saved };
  }

  async changeMode(name: string, change: ModeChange): Promise<Saved<ServiceStatus>> {
    const service = this.service(name);
    if (change.action === 'pause') service.pause.pause(change.maxPauseMs);
    else if (change.action === 'stop') service.pause.stop(change.message ?? null);
    else service.pause.resume();
    this.publishRoutes();
    this.log.event(modeChanged[change.action], { service: name, reason: service.pause.describe() });
    const saved = await this.saveState();
    return { ...service.status(), ...saved };
  }

  /** The service's config (and routes) change at its switch, through `routesChanged`. */
  rollback(name: string): Promise<Saved<DeployResult>> {
    return this.service(name).rollback().then(async (result) => ({ ...result, ...(await this.saveState()) }));
  }

  status(): DaemonStatus {
    return {
      pid: process.pid,
      version: this.version,
      uptimeMs: Date.now() - this.startedAt,
      config: this.config.file,
      proxy: { host: this.config.host, port: this.config.port, workers: this.config.workers },
      control: { host: this.config.controlHost, port: this.config.controlPort, socket: this.config.controlSocket, token: this.config.controlToken !== null },
      services: [...this.services.values()].map((service) => service.status()),
    };
  }

  private async restoreState(): Promise<void> {
    if (!this.state) return;
    const { services: saved, unreadable, problems } = await this.state.load();
    for (const problem of problems) this.log.event('state-skipped', { reason: problem });
    this.unrestored = unreadable;
    for (const [name, entry] of saved) {
      let service = this.services.get(name);
      if (entry.deployed && !service) {
        try {
          const source = `${this.state.file}: service "${name}"`;
          const config = validateServiceDefinition(entry.deployed, name, source, this.configDir);
          await this.refuseTargetLoop(config, source);
          const clash = findRouteClash([...this.services.values()].map((other) => other.config), config);
          if (clash) throw new RainbowError('HOST_IN_USE', `${this.state.file}: service "${name}": ${clash}`);
          service = this.createService(config, 'deploy');
          this.services.set(name, service);
          this.log.event('restored', { service: name, target: config.target, reason: `saved in ${this.state.file}; health-checked before it takes traffic` });
        } catch (error) {
          this.log.event('state-skipped', { service: name, reason: `${messageOf(error)}; the entry stays in the file until the name is deployed again` });
          this.unrestored.set(name, entry);
          continue;
        }
      }
      if (!service) continue;
      if (entry.mode === 'paused') service.pause.pause(entry.maxPauseMs);
      if (entry.mode === 'stopped') service.pause.stop(entry.message ?? null);
    }
  }

  /** A change the file could not keep is live all the same: the caller is told, not refused. */
  private async saveState(): Promise<{ warning?: string }> {
    if (!this.state) return {};
    const saved = new Map<string, SavedService>();
    for (const [name, entry] of this.unrestored) {
      if (!this.services.has(name)) saved.set(name, entry);
    }
    for (const service of this.services.values()) {
      const entry: SavedService = {};
      if (service.origin === 'deploy') entry.deployed = definitionOf(service.config);
      if (service.pause.mode !== 'running') {
        entry.mode = service.pause.mode;
        entry.message = service.pause.message;
        entry.maxPauseMs = service.pause.maxPauseMs;
      }
      if (Object.keys(entry).length > 0) saved.set(service.name, entry);
    }
    try {
      await this.state.save(saved);
      return {};
    } catch (error) {
      const reason = `${this.state.file}: ${messageOf(error)}`;
      this.log.event('state-not-saved', { reason });
      return { warning: `the change is live but was not saved, so a restart of rainbowd will undo it: ${reason}` };
    }
  }

  /** Re-reads the config; new values apply from the next deploy. A bad file changes nothing. */
  async reload(why: string): Promise<void> {
    if (!this.config.file || this.shuttingDown) return;
    let next: DaemonConfig;
    try {
      next = await loadConfig(this.config.file, this.overrides);
    } catch (error) {
      this.log.event('reload-failed', { reason: `${messageOf(error)}; keeping the running config` });
      return;
    }
    const clash = this.clashWithDeployed(next);
    if (clash) {
      this.log.event('reload-failed', { reason: `${clash}; keeping the running config` });
      return;
    }
    const needRestart = (['host', 'port', 'controlHost', 'controlPort', 'controlSocket', 'controlToken', 'workers'] as const).filter((key) => next[key] !== this.config[key]);
    for (const key of needRestart) {
      // The token's values are not logged.
      const values = key === 'controlToken' ? {} : { running: this.config[key], configured: next[key] };
      this.log.event('reload-ignored', { key, ...values, reason: `changing "${key}" needs a restart of rainbowd` });
    }
    this.log.setFormat(next.logFormat);
    this.applyServiceConfigs(next.services);
    const { host, port, controlHost, controlPort, controlSocket, controlToken, workers } = this.config;
    this.config = { ...next, host, port, controlHost, controlPort, controlSocket, controlToken, workers };
    this.publishRoutes();
    this.watchFiles();
    this.log.event('reloaded', { config: this.config.file, reason: `${why}; new values apply from the next deploy` });
  }

  /**
   * `rainbowd deploy` refuses a host another service owns; a reload must not take one from a
   * deployed service either, or requests would silently go to one of the two.
   */
  private clashWithDeployed(next: DaemonConfig): string | null {
    const deployed = [...this.services.values()].filter((service) => service.origin === 'deploy').map((service) => service.config);
    const taken = [...deployed, ...this.deploying.values()];
    for (const config of next.services) {
      // A config service named like a deployed one is ignored by the reload (see below).
      if (taken.some((other) => other.name === config.name)) continue;
      const clash = findRouteClash(taken, config);
      const key = config.name === DEFAULT_SERVICE ? 'the top-level service' : `"services.${config.name}"`;
      if (clash) return `${next.file}: ${key}: ${clash}, deployed with rainbowd deploy (remove it first, or choose another host)`;
    }
    return null;
  }

  /** Services added to the config start, removed ones stop, the others change from their next deploy. */
  private applyServiceConfigs(configs: ServiceConfig[]): void {
    const wanted = new Map(configs.map((config) => [config.name, config]));
    for (const [name, service] of this.services) {
      if (service.origin !== 'config' || wanted.has(name)) continue;
      this.services.delete(name);
      this.forgetService(service);
      void service.stopAll(`service ${name} is no longer in the config`);
    }
    for (const config of configs) {
      const service = this.services.get(config.name);
      if (service?.origin === 'config') service.config = config;
      else if (service) this.log.event('reload-ignored', { service: config.name, reason: `"${config.name}" was deployed with rainbowd deploy; remove it first to declare it in the config` });
      else {
        const added = this.createService(config, 'config');
        this.services.set(config.name, added);
        added.redeploy('added to the config').catch(() => undefined);
      }
    }
  }

  shutdown(signal: string): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.log.event('shutting-down', { reason: `${signal}: draining and stopping every generation` });
      this.dataPath.close();
      await Promise.all(this.watchers.map((watcher) => watcher.close()));
      await Promise.all([...this.services.values()].map((service) => service.stopAll(`rainbowd received ${signal}`)));
      await this.dataPath.stop();
      this.control.close();
      this.removeRuntimeFiles();
      this.log.event('stopped', { reason: 'every generation is stopped' });
    })();
    return this.shuttingDown;
  }

  /** For the CLI and the git hook: without it they find the daemon from the config on disk. */
  private recordControlAddress(): void {
    const { file, controlHost, controlPort, controlSocket } = this.config;
    if (!file) return;
    try {
      writeRecord({ pid: process.pid, config: file, controlHost, controlPort, controlSocket });
    } catch (error) {
      this.log.event('record-not-written', { reason: `${messageOf(error)}; rainbowd redeploy and the git hook find this daemon from the config file instead` });
    }
  }

  /** Synchronous: the crash handler runs it too. */
  private removeRuntimeFiles(): void {
    rmSync(this.runtimeDir, { recursive: true, force: true });
    if (this.config.file) removeRecord(this.config.file, process.pid);
  }

  /** Apps a predecessor on this config left running when it died: stopped before anything is deployed. */
  private async stopOrphans(): Promise<void> {
    const orphans = this.config.file ? findOrphans(this.config.file) : [];
    if (orphans.length === 0) return;
    // Which service an orphan was is only a name from its environment: give it the longest stopTimeout.
    const timeoutMs = Math.max(...this.config.services.map((service) => service.stopTimeoutMs), 0) || DEFAULT_STOP_TIMEOUT_MS;
    await Promise.all(
      orphans.map(async (orphan) => {
        // Not `service#generation`: this rainbowd numbers its own generations from 1 again.
        const who = { service: orphan.service, pid: orphan.groupId };
        const what = `generation ${orphan.generation} of rainbowd pid ${orphan.daemonPid}`;
        this.log.event('orphan-stopping', { ...who, reason: `${what}, left running when that rainbowd exited without stopping it (killed or crashed); SIGTERM to its ${orphan.pids.length} process(es)` });
        const how = await stopOrphan(orphan, timeoutMs);
        this.log.event('orphan-stopped', { ...who, reason: `${what}: ${how === 'SIGTERM' ? 'exited after SIGTERM' : `still running ${formatDuration(timeoutMs)} after SIGTERM, SIGKILLed`}` });
      }),
    );
    for (const daemonPid of new Set(orphans.map((orphan) => orphan.daemonPid))) removeRuntimeDirs(daemonPid);
  }

  /**
   * An exception nothing caught is a bug in rainbowd, and Node cannot safely go on after
   * one: say so, SIGTERM every app rather than leave them running with nobody to stop them,
   * and exit 1 for a supervisor to restart us. Only synchronous work is safe here.
   */
  private installCrashHandler(): void {
    process.on('uncaughtException', (error: unknown) => {
      const what = error instanceof Error ? (error.stack ?? error.message) : String(error);
      this.log.event('crashed', { reason: `internal error, please report it: ${what}; every app was sent SIGTERM` });
      for (const service of this.services.values()) service.terminateAppsNow();
      this.control.close();
      this.removeRuntimeFiles();
      process.exit(1);
    });
  }

  private installSignalHandlers(): void {
    process.on('SIGUSR1', () => {
      this.redeploy(undefined, 'SIGUSR1').catch(() => undefined); // logged by the deploy
    });
    process.on('SIGHUP', () => void this.reload('SIGHUP'));
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.on(signal, () => {
        if (this.shuttingDown) {
          this.log.event('shutting-down', { reason: `${signal} again: still draining, please wait` });
          return;
        }
        void this.shutdown(signal).then(() => process.exit(0));
      });
    }
  }

  /** The config file reloads itself when it changes; each service's `watch` paths redeploy it. */
  private watchFiles(): void {
    for (const watcher of this.watchers) void watcher.close();
    this.watchers = [];
    if (this.config.file) {
      const configWatcher = watch(this.config.file, { ignoreInitial: true });
      configWatcher.on('change', debounce(() => void this.reload('config file changed')));
      this.watchers.push(configWatcher);
    }
    for (const service of this.services.values()) {
      if (service.config.watch.length === 0) continue;
      let changed: string[] = [];
      const trigger = debounce(() => {
        const reason = `changed: ${changed.slice(0, 3).join(', ')}${changed.length > 3 ? ` and ${changed.length - 3} more` : ''}`;
        changed = [];
        service.redeploy(reason).catch(() => undefined);
      });
      const watcher = watch(service.config.watch, { ignoreInitial: true });
      watcher.on('all', (_event, file) => {
        if (!changed.includes(file)) changed.push(file);
        trigger();
      });
      this.watchers.push(watcher);
    }
  }
}

function debounce(action: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(action, WATCH_DEBOUNCE_MS);
  };
}

async function listenOrExplain(listening: Promise<void>, what: string, host: string, port: number, setting: string, file: string | null): Promise<void> {
  try {
    await listening;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      const problem = code === 'EADDRINUSE' ? 'is already in use (is another rainbowd running?)' : code === 'EACCES' ? 'needs privileges' : 'is not an address of this machine';
      throw new RainbowError('PORT_IN_USE', `cannot listen on ${host}:${port} for the ${what}: it ${problem}; set ${setting}${file ? ` in ${file}` : ''}`);
    }
    throw isRainbowError(error) ? error : new RainbowError('PORT_IN_USE', `cannot listen on ${host}:${port} for the ${what}: ${messageOf(error)}`);
  }
}

/** The `rainbowd deploy` definition of a service, as saved in the state file. */
function definitionOf(config: ServiceConfig): Record<string, unknown> {
  return {
    target: config.target,
    host: config.hosts,
    ...(config.pathPrefix === null ? {} : { pathPrefix: config.pathPrefix, stripPathPrefix: config.stripPathPrefix }),
    healthCheck: {
      path: config.healthCheck.path,
      interval: config.healthCheck.intervalMs,
      timeout: config.healthCheck.timeoutMs,
      ...(config.healthCheck.failAfter === null ? {} : { failAfter: config.healthCheck.failAfter }),
    },
    deployTimeout: config.deployTimeoutMs,
    drainTimeout: config.drainTimeoutMs,
  };
}

export function parseMaxPause(value: string | null): number | undefined {
  if (value === null) return undefined;
  try {
    return parseDuration(value);
  } catch (error) {
    throw new RainbowError('BAD_REQUEST', `maxPause must be ${messageOf(error)}, got ${JSON.stringify(value)}`);
  }
}
