import type { DeployOutcome, DeployResult, LastDeploy, ModeChange, ServiceOrigin, ServiceStatus } from './api.js';
import type { ServiceConfig } from './config.js';
import { RainbowError, messageOf } from './errors.js';
import type { Socket } from 'node:net';
import type { AppGroup } from './app-group.js';
import type { RestartState } from './handover.js';
import { Generation, type Retirement } from './generation.js';
import type { RecordedGeneration } from './generation-record.js';
import type { Logger } from './log.js';
import type { DataPath, ServiceRoute } from './route-table.js';
import { changeMode, RUNNING, type ModeRecord } from './service-mode.js';

// A service owns its generations and runs its deploys: start the new one, switch to it,
// drain the previous one, stop it. "What happens on a deploy" is `runDeploy` below.

interface PendingDeploy {
  promise: Promise<DeployResult>;
  resolve: (result: DeployResult) => void;
  reject: (error: unknown) => void;
  reason: string;
  config: ServiceConfig | undefined;
}

/** What a service needs from the daemon around it. */
export interface ServiceContext {
  log: Logger;
  runtimeDir: string;
  /** Added to every app's environment: it names the rainbowd that launched the app. */
  ownerEnv: Record<string, string>;
  dataPath: DataPath;
  /** The active generation or the routes changed: the data path must get the new table. */
  routesChanged: () => void;
  /** RESTART_BACKOFF unless given: tests shorten the stable period to see it start over. */
  restartBackoff?: RestartBackoff;
}

/**
 * A crashed app is restarted after `firstMs`, then twice as long after each failure in a
 * row, up to `maxMs`; an app that stayed up `stableAfterMs` before crashing starts the
 * sequence over.
 */
export interface RestartBackoff {
  firstMs: number;
  maxMs: number;
  stableAfterMs: number;
}

export const RESTART_BACKOFF: RestartBackoff = { firstMs: 500, maxMs: 30_000, stableAfterMs: 30_000 };

export class Service {
  /** Live generations, oldest first. */
  private generations: Generation[] = [];
  /** The generation new requests go to; the data path learns it from `route()`. */
  private activeGeneration: Generation | null = null;
  private nextId: number;
  private current: Promise<DeployResult> | null = null;
  private followUp: PendingDeploy | null = null;
  private restarts = 0;
  private crashStreak = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private restartAt: number | null = null;
  private lastDeploy: LastDeploy | null = null;
  private readonly shutdown = new AbortController();
  private modeRecord: ModeRecord = RUNNING;
  /** The config before the last `deploy` of a new target: what `rollback` goes back to. */
  private previousConfig: ServiceConfig | null = null;
  /** What the last switch took traffic away from (null: nothing served): what `rollback` takes back. */
  private replaced: Generation | null = null;

  private readonly log: Logger;
  private readonly backoff: RestartBackoff;

  constructor(
    private settings: ServiceConfig,
    private readonly context: ServiceContext,
    readonly origin: ServiceOrigin = 'config',
    /** A service declared again after it was removed goes on from its last number. */
    firstGeneration = 1,
  ) {
    this.log = context.log;
    this.backoff = context.restartBackoff ?? RESTART_BACKOFF;
    this.nextId = firstGeneration;
  }

  get config(): ServiceConfig {
    return this.settings;
  }

  /** The service's entry in a reloaded config file: deploys use it from the next one on. */
  reconfigure(config: ServiceConfig): void {
    this.settings = config;
  }

  /** Running, paused or stopped (maintenance). */
  get mode(): ModeRecord {
    return this.modeRecord;
  }

  /** Pause, resume, stop or start: the data path gets the new mode at once. */
  changeMode(change: ModeChange): void {
    this.modeRecord = changeMode(this.modeRecord, change);
    this.context.routesChanged();
  }

  /** What a rollback deploys: an external service's previous target (null: none, or a supervised service). */
  get rollbackConfig(): ServiceConfig | null {
    return this.config.run === undefined ? this.previousConfig : null;
  }

  /** The number of the newest generation this service made (0: none yet). */
  get lastGeneration(): number {
    return this.nextId - 1;
  }

  get name(): string {
    return this.config.name;
  }

  get active(): Generation | null {
    return this.activeGeneration;
  }

  /** The switch: one assignment, published to the data path before anything else happens. */
  private setActive(generation: Generation | null): void {
    this.activeGeneration = generation;
    this.context.routesChanged();
  }

  /** A switch to `generation`: a rollback undoes the last one, taking back what it replaced. */
  private switchTo(generation: Generation): Generation | null {
    const previous = this.activeGeneration;
    this.replaced = previous;
    this.setActive(generation);
    return previous;
  }

  /** What the data path needs to route to this service. */
  route(): ServiceRoute {
    const { config, mode } = this;
    return {
      name: this.name,
      hosts: config.hosts,
      pathPrefix: config.pathPrefix,
      stripPathPrefix: config.stripPathPrefix,
      mode: mode.mode,
      message: mode.message,
      maxPauseMs: mode.maxPauseMs,
      upstream: this.activeGeneration?.address ?? null,
    };
  }

  /**
   * Deploys of a service run one at a time; a trigger that arrives during a deploy queues
   * one follow-up deploy, and further triggers join that follow-up.
   */
  redeploy(reason: string, config?: ServiceConfig): Promise<DeployResult> {
    if (this.shutdown.signal.aborted) {
      return Promise.reject(new RainbowError('SHUTTING_DOWN', 'rainbowd is shutting down; deploy refused'));
    }
    if (!this.current) return this.begin(reason, config);
    if (this.followUp) {
      if (config) this.followUp.config = config;
    } else {
      let resolve!: PendingDeploy['resolve'];
      let reject!: PendingDeploy['reject'];
      const promise = new Promise<DeployResult>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.followUp = { promise, resolve, reject, reason, config };
      this.log.event('queued', { service: this.name, reason: `${reason}; a deploy is under way, this one follows it` });
    }
    return this.followUp.promise;
  }

  /**
   * Back to what served before the last deploy: an external service redeploys its previous
   * target; a supervised one takes back its previous generation if it is still draining.
   */
  async rollback(): Promise<DeployResult> {
    if (this.shutdown.signal.aborted) throw new RainbowError('SHUTTING_DOWN', 'rainbowd is shutting down; rollback refused');
    if (this.current) throw new RainbowError('NO_ROLLBACK', `a deploy of ${this.name} is under way; roll back after it`);
    if (this.config.run === undefined) {
      const previous = this.rollbackConfig;
      if (!previous) throw new RainbowError('NO_ROLLBACK', `${this.name} has no previous target to roll back to`);
      return this.redeploy(`rollback to ${previous.target}`, previous);
    }
    const previous = this.replaced;
    const current = this.active;
    if (!previous?.reactivate(`rollback from ${current?.label ?? 'nothing'}`)) throw noRollback(this.name, previous);
    this.clearRestart();
    this.switchTo(previous);
    const result = this.resultOf(previous, 'rollback', current, null, { healthyMs: 0, switchedMs: 0 });
    if (current && (await this.retire(current, `rolled back to ${previous.label}`)) === 'reactivated') {
      throw undone(`rolled back ${this.name} to ${previous.label}`, current);
    }
    return result;
  }

  private begin(reason: string, config: ServiceConfig | undefined): Promise<DeployResult> {
    this.clearRestart();
    let switched!: () => void;
    const switchedOrFailed = new Promise<void>((resolve) => (switched = resolve));
    const deploy = this.runDeploy(reason, config, switched);
    this.current = deploy;
    // The next deploy may start once this one has switched (or failed): drains overlap.
    void switchedOrFailed.then(() => {
      this.current = null;
      const next = this.followUp;
      this.followUp = null;
      if (next) this.begin(next.reason, next.config).then(next.resolve, next.reject);
    });
    return deploy;
  }

  /**
   * `candidate` is the config this deploy brings (a new target, say): it becomes the
   * service's config at the switch, not before, so a refused deploy changes nothing.
   */
  private async runDeploy(reason: string, candidate: ServiceConfig | undefined, switched: () => void): Promise<DeployResult> {
    const config = candidate ?? this.config;
    const began = Date.now();
    const since = () => Date.now() - began;
    const generation = this.newGeneration(this.nextId++, config);
    this.log.event('deploy', { service: this.name, generation: generation.id, reason });
    this.enforceMaxGenerations();
    try {
      await generation.start();
    } catch (error) {
      this.forget(generation);
      this.recordDeploy('failed', generation, messageOf(error));
      switched();
      // A refused `rainbowd deploy` of a new service is the caller's to handle: nothing to restart.
      if (!this.active && candidate === undefined) this.scheduleRestart(`deploy of ${generation.label} failed`);
      throw error;
    }
    const healthyMs = since();
    if (this.shutdown.signal.aborted) {
      switched();
      await this.retire(generation, 'rainbowd is shutting down');
      throw new RainbowError('SHUTTING_DOWN', 'rainbowd is shutting down; deploy cancelled');
    }
    if (candidate && candidate !== this.config) {
      this.previousConfig = this.config;
      this.settings = candidate;
    }
    const previous = this.switchTo(generation);
    // The generation is called active once new requests reach it: HAProxy takes the switch a
    // few runtime commands later.
    await this.context.dataPath.whenRouted();
    generation.activate(reason, previous?.id ?? null);
    const switchedMs = since();
    this.watchForCrash(generation);
    this.recordDeploy('deployed', generation, reason);
    switched();
    const result = this.resultOf(generation, reason, previous, config.target ?? null, { healthyMs, switchedMs });
    if (previous) {
      const end = await this.retire(previous, `replaced by ${generation.label}`, { onDrained: () => (result.timings.drainedMs = since()) });
      if (end === 'reactivated') {
        const error = undone(`deployed ${generation.label}`, previous);
        this.recordDeploy('rolled-back', generation, error.message);
        throw error;
      }
      result.timings.stoppedMs = since();
    }
    return result;
  }

  private newGeneration(id: number, config: ServiceConfig): Generation {
    const generation = new Generation(this.name, id, {
      config,
      log: this.log,
      runtimeDir: this.context.runtimeDir,
      ownerEnv: this.context.ownerEnv,
      dataPath: this.context.dataPath,
      signal: this.shutdown.signal,
    });
    this.generations.push(generation);
    return generation;
  }

  /** Numbers go on after what an earlier rainbowd on this config made. */
  continueNumbering(lastGeneration: number): void {
    this.nextId = Math.max(this.nextId, lastGeneration + 1);
  }

  /**
   * Takes over the active generation an earlier rainbowd left running (adoption.ts): once it
   * is healthy it is active, watched for a crash like any other. False (logged, the app
   * stopped) when it is not healthy: the caller deploys afresh.
   */
  async adopt(app: AppGroup, id: number, port: number, reason: string, predecessorGone?: Promise<void>): Promise<boolean> {
    this.continueNumbering(id);
    const generation = this.newGeneration(id, this.config);
    try {
      await generation.adopt(app, port, reason, predecessorGone);
    } catch {
      this.forget(generation);
      return false;
    }
    this.switchTo(generation);
    await this.context.dataPath.whenRouted();
    generation.activate(reason, null);
    this.watchForCrash(generation);
    return true;
  }

  /** A deploy is under way: it must end before rainbowd can be upgraded. */
  get deploying(): boolean {
    return this.current !== null;
  }

  /** The output streams of this service's live apps, by marker, for a successor (handover.ts). */
  outputs(): Array<[string, Socket[]]> {
    return this.generations.flatMap((generation) => {
      const streams = generation.outputStreams();
      return streams ? [streams] : [];
    });
  }

  /** What the generation record keeps of this service's apps (generation-record.ts). */
  recorded(): RecordedGeneration[] {
    return this.generations.flatMap((generation) => generation.recorded(generation === this.active) ?? []);
  }

  /** What `status` shows of the last deploy: the same outcome its answer gave. */
  private recordDeploy(outcome: DeployOutcome, generation: Generation, message: string): void {
    this.lastDeploy = { at: new Date().toISOString(), ok: outcome === 'deployed', outcome, generation: generation.id, message };
  }

  private resultOf(generation: Generation, reason: string, previous: Generation | null, target: string | null, timings: { healthyMs: number; switchedMs: number }): DeployResult {
    return {
      ok: true,
      service: this.name,
      generation: generation.id,
      port: generation.port,
      pid: generation.pid,
      reason,
      previous: previous?.id ?? null,
      target,
      timings: { ...timings, drainedMs: null, stoppedMs: null },
    };
  }

  /** Out of service, drained unless `drain` is false, then stopped and forgotten, unless a rollback took it back first. */
  private async retire(generation: Generation, reason: string, options?: Parameters<Generation['retire']>[1]): Promise<Retirement> {
    if (this.active === generation) this.setActive(null);
    const end = await generation.retire(reason, options);
    if (end === 'stopped') this.forget(generation);
    return end;
  }

  private forget(generation: Generation): void {
    this.generations = this.generations.filter((candidate) => candidate !== generation);
    if (this.active === generation) this.setActive(null);
  }

  private enforceMaxGenerations(): void {
    const { maxGenerations } = this.config;
    const live = this.generations.filter((generation) => generation.isLive);
    if (live.length <= maxGenerations) return;
    const oldestDraining = live.find((generation) => generation.state === 'draining');
    if (!oldestDraining) return;
    this.log.event('limit', {
      service: this.name,
      generation: oldestDraining.id,
      reason: `${live.length} generations alive, more than maxGenerations ${maxGenerations}: ${oldestDraining.label} is stopped without waiting for its drain`,
    });
    oldestDraining.cutDrainShort();
  }

  /** The active app dying on its own is a crash: restart it as a new generation. */
  private watchForCrash(generation: Generation): void {
    void generation.crash().then(async (crash) => {
      if (!crash) return;
      if (crash.upForMs >= this.backoff.stableAfterMs) this.crashStreak = 0;
      this.restarts++;
      // Nothing to drain: the process is gone. Stopping cleans up whatever it left behind.
      const retired = this.retire(generation, crash.reason, { drain: false });
      this.scheduleRestart(`${generation.label} crashed`);
      await retired;
    });
  }

  private scheduleRestart(why: string): void {
    if (this.shutdown.signal.aborted || this.restartTimer) return;
    this.crashStreak++;
    const { firstMs, maxMs } = this.backoff;
    this.restartIn(Math.min(firstMs * 2 ** (this.crashStreak - 1), maxMs), why);
  }

  private restartIn(delay: number, why: string): void {
    this.restartAt = Date.now() + delay;
    this.log.event('restart-scheduled', { service: this.name, inMs: delay, reason: `${why}; no generation is serving` });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.restartAt = null;
      this.redeploy(`restart (${why})`).catch(() => {
        // The failure is logged by the deploy and schedules the next attempt itself.
      });
    }, delay);
  }

  /** What a successor needs to go on with this service's restarts (`rainbowd upgrade`). */
  restartState(): RestartState {
    return { restarts: this.restarts, crashStreak: this.crashStreak, restartInMs: this.restartAt === null ? null : Math.max(0, this.restartAt - Date.now()) };
  }

  /**
   * Goes on with a predecessor's restarts: the same count and backoff, and the restart it
   * had scheduled at the time it had it (not at once: a crashing app is not started faster
   * for an upgrade). True when that restart is scheduled: the service needs no first deploy.
   */
  continueRestarts(state: RestartState, predecessor: string): boolean {
    this.restarts = state.restarts;
    this.crashStreak = state.crashStreak;
    if (state.restartInMs === null || this.active || this.restartTimer) return false;
    this.restartIn(state.restartInMs, `the restart ${predecessor} had scheduled`);
    return true;
  }

  private clearRestart(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.restartAt = null;
  }

  /** Stop accepting deploys, cancel a start under way, drain and stop every generation. */
  async stopAll(reason: string): Promise<void> {
    this.shutdown.abort(new RainbowError('SHUTTING_DOWN', 'rainbowd is shutting down'));
    this.clearRestart();
    this.followUp?.reject(new RainbowError('SHUTTING_DOWN', 'rainbowd is shutting down; deploy cancelled'));
    this.followUp = null;
    await this.current?.catch(() => undefined);
    await Promise.all(this.generations.map((generation) => this.retire(generation, reason)));
  }

  /** A successor took over (`rainbowd upgrade`): no more deploys or restarts here; the apps go on. */
  handOver(): void {
    this.shutdown.abort(new RainbowError('SHUTTING_DOWN', 'rainbowd has handed over to a new one'));
    this.clearRestart();
  }

  /** SIGTERM to every live generation's processes, without waiting: for a rainbowd that is crashing. */
  terminateAppsNow(): void {
    for (const generation of this.generations) generation.terminateNow();
  }

  status(): ServiceStatus {
    return {
      name: this.name,
      kind: this.config.run === undefined ? 'external' : 'supervised',
      origin: this.origin,
      target: this.config.target ?? null,
      hosts: this.config.hosts,
      pathPrefix: this.config.pathPrefix,
      mode: this.mode.mode,
      message: this.mode.message,
      activeGeneration: this.active?.id ?? null,
      deploying: this.current !== null,
      queued: this.followUp !== null,
      restarts: this.restarts,
      nextRestartInMs: this.restartAt === null ? null : Math.max(0, this.restartAt - Date.now()),
      lastDeploy: this.lastDeploy,
      generations: this.generations.filter((generation) => generation.isLive).map((generation) => generation.status()),
    };
  }
}

function noRollback(service: string, previous: Generation | null): RainbowError {
  const why =
    previous === null ? `${service} has no previous generation to roll back to`
    : previous.state === 'stopped' ? `${service} has no previous generation alive (${previous.label} drained and stopped)`
    : previous.state === 'draining' ? `${service} cannot roll back: the app of ${previous.label} has exited`
    : `${service} cannot roll back: ${previous.label} has finished draining and is ${previous.state}`;
  return new RainbowError('NO_ROLLBACK', `${why}; redeploy instead`);
}

/** The answer to a deploy or rollback that a later rollback undid, by taking `takenBack` back into service. */
function undone(what: string, takenBack: Generation): RainbowError {
  return new RainbowError('ROLLED_BACK', `${what}, but a rollback then took ${takenBack.label} back into service before it had drained; ${takenBack.label} serves`);
}
