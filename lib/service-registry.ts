import path from 'node:path';
import type { DeployResult, ModeChange, RemoveResult, Saved, ServiceOrigin, ServiceStatus } from './api.js';
import { DEFAULT_SERVICE, validateServiceDefinition, type DaemonConfig, type ServiceConfig } from './config.js';
import type { Adoptable } from './adoption.js';
import { RainbowError, messageOf } from './errors.js';
import { writeGenerationRecord } from './generation-record.js';
import type { Handover, RestartState } from './handover.js';
import type { Logger } from './log.js';
import { ownerEnvironment } from './orphans.js';
import type { DataPath } from './route-table.js';
import { findRouteClash } from './route-clash.js';
import { Service } from './service.js';
import { describeMode } from './service-mode.js';
import { StateFile, type SavedService } from './state.js';
import { findTargetLoop } from './target-address.js';

// The services rainbowd runs, by name: who may be deployed (admission: no target loop, no
// route another service owns), removed, paused or stopped, rolled back; what the data path
// is told; and what the state file keeps of it all, so that a restart brings it back.

/** What the registry needs from the daemon around it. */
export interface RegistryContext {
  log: Logger;
  dataPath: DataPath;
  /** Where the apps' pidfiles go. */
  runtimeDir: string;
  /** This daemon's token in `Via` (route-table.ts). */
  via: string;
}

// The log line of each mode change, as a person says it ("api stopped", not "api stopd").
const modeChanged: Record<ModeChange['action'], string> = { pause: 'paused', resume: 'resumed', stop: 'stopped', start: 'started' };

export class ServiceRegistry {
  private readonly services = new Map<string, Service>();
  private readonly state: StateFile | null;
  /** Configs of deploys (and rollbacks to a previous target) under way, by service: their routes count as taken until they end. */
  private readonly deploying = new Map<string, ServiceConfig>();
  /** State entries that could not be restored: kept in the file so that a typo loses nothing. */
  private unrestored = new Map<string, SavedService>();
  /**
   * Generation numbers go on across a service's removal and return (remove, then reload or
   * deploy again), so that `default#1` names one generation in the whole log.
   */
  private readonly lastGenerations = new Map<string, number>();
  private readonly log: Logger;
  /** Off until this rainbowd listens: a start that fails must not overwrite a running or dead predecessor's record. */
  private recording = false;

  constructor(
    private config: DaemonConfig,
    private readonly context: RegistryContext,
  ) {
    this.log = context.log;
    for (const serviceConfig of config.services) {
      this.services.set(serviceConfig.name, this.createService(serviceConfig, 'config'));
    }
    this.state = config.file ? new StateFile(path.join(path.dirname(config.file), 'rainbow.state.json')) : null;
    this.publishRoutes();
  }

  all(): Service[] {
    return [...this.services.values()];
  }

  service(name: string): Service {
    const service = this.services.get(name);
    if (!service) throw new RainbowError('SERVICE_NOT_FOUND', `no service named "${name}"`);
    return service;
  }

  /** Throws at once (not in the promise) for an unknown service, so `?wait=0` can say so. */
  redeploy(name: string | undefined, reason: string): Promise<DeployResult> {
    return this.service(name ?? DEFAULT_SERVICE).redeploy(reason);
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
    this.claimRoutes(config, '');
    const reason = `deploy ${config.target}`;
    const service = existing ?? this.createService(config, 'deploy');
    try {
      // An existing service takes the new config (and its routes) at the switch.
      const result = await service.redeploy(reason, config);
      if (!existing) {
        this.services.set(name, service);
        this.publishRoutes();
        // Answered once the new host routes to it, so the caller's next request gets there.
        await this.context.dataPath.whenRouted();
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

  /** Stops routing to the service, drains and stops its generations, forgets it. */
  async remove(name: string): Promise<Saved<RemoveResult>> {
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
    service.changeMode(change);
    await this.context.dataPath.whenRouted();
    this.log.event(modeChanged[change.action], { service: name, reason: describeMode(service.mode) });
    const saved = await this.saveState();
    return { ...service.status(), ...saved };
  }

  /**
   * The service's config (and routes) change at its switch, through `routesChanged`. Going
   * back to a previous target brings back the routes it had: admitted as a deploy of them is.
   */
  async rollback(name: string): Promise<Saved<DeployResult>> {
    const service = this.service(name);
    const previous = service.rollbackConfig;
    if (previous) this.claimRoutes(previous, `cannot roll back ${name} to ${previous.target}: `);
    try {
      const result = await service.rollback();
      return { ...result, ...(await this.saveState()) };
    } finally {
      if (previous) this.deploying.delete(name);
    }
  }

  /**
   * The routes of `config` count as taken until its deploy ends (the caller removes it from
   * `deploying`), so that no deploy or reload meanwhile can have them. Refused when another
   * service owns one, or another deploy of this service is under way.
   */
  private claimRoutes(config: ServiceConfig, refusedAs: string): void {
    const { name } = config;
    if (this.deploying.has(name)) throw new RainbowError('SERVICE_EXISTS', `service "${name}" is being deployed right now; try again when that deploy is over`);
    const taken = [...this.all().map((service) => service.config), ...this.deploying.values()];
    const clash = findRouteClash(taken, config);
    if (clash) throw new RainbowError('HOST_IN_USE', `${refusedAs}${clash}`);
    this.deploying.set(name, config);
  }

  statuses(): ServiceStatus[] {
    return this.all().map((service) => service.status());
  }

  /**
   * `rainbowd deploy` refuses a host another service owns; a reload must not take one from a
   * deployed service either, or requests would silently go to one of the two.
   */
  refusalOf(next: DaemonConfig): string | null {
    const deployed = this.all().filter((service) => service.origin === 'deploy').map((service) => service.config);
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

  /**
   * A reloaded config: services added to it start, removed ones stop, the others change from
   * their next deploy. `refusalOf` said yes to it first.
   */
  reconcile(next: DaemonConfig): void {
    const wanted = new Map(next.services.map((config) => [config.name, config]));
    for (const [name, service] of this.services) {
      if (service.origin !== 'config' || wanted.has(name)) continue;
      this.services.delete(name);
      this.forgetService(service);
      void service.stopAll(`service ${name} is no longer in the config`);
    }
    this.config = next;
    for (const config of next.services) {
      const service = this.services.get(config.name);
      if (service?.origin === 'config') service.reconfigure(config);
      else if (service) this.log.event('reload-ignored', { service: config.name, reason: `"${config.name}" was deployed with rainbowd deploy; remove it first to declare it in the config` });
      else {
        const added = this.createService(config, 'config');
        this.services.set(config.name, added);
        added.redeploy('added to the config').catch(() => undefined);
      }
    }
    this.publishRoutes();
  }

  async restoreState(): Promise<void> {
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
          const clash = findRouteClash(this.all().map((other) => other.config), config);
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
      if (entry.mode === 'paused') service.changeMode({ action: 'pause', maxPauseMs: entry.maxPauseMs });
      if (entry.mode === 'stopped') service.changeMode({ action: 'stop', message: entry.message ?? null });
    }
    this.publishRoutes();
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
      if (service.mode.mode !== 'running') Object.assign(entry, service.mode);
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

  private get configDir(): string {
    return this.config.file ? path.dirname(this.config.file) : process.cwd();
  }

  private async refuseTargetLoop(config: ServiceConfig, source: string): Promise<void> {
    const loop = await findTargetLoop(config.target, this.config);
    if (loop) throw new RainbowError('TARGET_LOOP', `${source}: target ${loop}`);
  }

  private createService(config: ServiceConfig, origin: ServiceOrigin): Service {
    const context = {
      log: this.log,
      runtimeDir: this.context.runtimeDir,
      ownerEnv: this.config.file ? ownerEnvironment(this.config.file) : {},
      dataPath: this.context.dataPath,
      routesChanged: () => this.publishRoutes(),
    };
    return new Service(config, context, origin, (this.lastGenerations.get(config.name) ?? 0) + 1);
  }

  private forgetService(service: Service): void {
    this.lastGenerations.set(service.name, service.lastGeneration);
  }

  /**
   * Whether an app left by an earlier rainbowd can be adopted as a generation of `name`:
   * only by a service that launches apps.
   */
  canAdopt(name: string): boolean {
    return this.services.get(name)?.config.run !== undefined;
  }

  /**
   * Takes over what an earlier rainbowd left serving (adoption.ts), in parallel. Returns the
   * services that got their active generation back; the others need a deploy.
   */
  async adopt(adoptable: Adoptable[], lastGenerations: Map<string, number>, reason: string, predecessorGone?: Promise<void>): Promise<Set<Service>> {
    for (const [name, last] of lastGenerations) this.services.get(name)?.continueNumbering(last);
    const adopted = new Set<Service>();
    await Promise.all(
      adoptable.map(async ({ service: name, app, generation, port }) => {
        const service = this.service(name);
        if (await service.adopt(app, generation, port, reason, predecessorGone)) adopted.add(service);
      }),
    );
    return adopted;
  }

  /** What a successor needs to take the services over at `rainbowd upgrade` (handover.ts). */
  handover(): Omit<Handover, 'listeners' | 'controlSocketFile' | 'haproxyDir'> {
    const services = this.all();
    return {
      generations: services.flatMap((service) => service.recorded()),
      outputs: new Map(services.flatMap((service) => service.outputs())),
      externals: services.filter((service) => service.config.run === undefined && service.active !== null).map((service) => service.name),
      lastGenerations: new Map([...this.lastGenerations, ...services.map((service): [string, number] => [service.name, service.lastGeneration])]),
      restarts: new Map(services.map((service) => [service.name, service.restartState()])),
    };
  }

  /** A predecessor's crash restarts, gone on with (`rainbowd upgrade`). Returns the services whose restart is scheduled. */
  continueRestarts(restarts: Map<string, RestartState>, predecessor: string): Set<Service> {
    return new Set(this.all().filter((service) => {
      const state = restarts.get(service.name);
      return state !== undefined && service.continueRestarts(state, predecessor);
    }));
  }

  /**
   * Every change of who serves what goes through here, to the proxy (or each worker). The
   * record follows once the change is routed and whoever waited for that has gone on: HAProxy
   * gets its runtime commands only after this returns, and writing the record first (a file
   * and a rename, 4-6 ms on a loaded machine) delayed every switch by as much.
   */
  private publishRoutes(): void {
    this.context.dataPath.update({ services: this.all().map((service) => service.route()), trustedProxies: this.config.trustedProxies, forwardedFields: this.config.forwardedFields, via: this.context.via });
    const record = () => setImmediate(() => this.recordGenerations());
    void this.context.dataPath.whenRouted().then(record, record);
  }

  /** From now on, every switch is recorded (generation-record.ts). */
  keepRecord(): void {
    this.recording = true;
    this.recordGenerations();
  }

  /** At every switch: a successor must know what to adopt if this rainbowd is killed. */
  private recordGenerations(): void {
    if (!this.recording || !this.config.file) return;
    try {
      writeGenerationRecord(this.config.file, this.all().flatMap((service) => service.recorded()));
    } catch (error) {
      this.log.event('record-not-written', { reason: `${messageOf(error)}; if rainbowd is killed, the next one stops its apps instead of adopting them` });
    }
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
