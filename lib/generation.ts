import type { Socket } from 'node:net';
import path from 'node:path';
import getPort from 'get-port';
import type { GenerationState, GenerationStatus } from './api.js';
import type { AppGroup } from './app-group.js';
import { AppProcess } from './app-process.js';
import { isDirectory, type ServiceConfig } from './config.js';
import { formatDuration } from './duration.js';
import { deployFailed, messageOf } from './errors.js';
import type { RecordedGeneration } from './generation-record.js';
import { sleep, waitUntilHealthy } from './health.js';
import type { EventFields, Logger } from './log.js';
import { describeOutput } from './output-excerpt.js';
import type { DataPath, UpstreamAddress } from './route-table.js';
import { splitTarget } from './target-address.js';

// One deployed instance of a service: a process rainbowd launched, or an external address.
// Its lifecycle is the list of states below; `transition` is the only place state changes.

const allowedTransitions: Record<GenerationState, readonly GenerationState[]> = {
  starting: ['healthy', 'failed'],
  healthy: ['active', 'stopping', 'failed'],
  active: ['draining', 'stopping'],
  // back to active: a rollback while the drain is under way; once it ends (idle, cut short
  // or timed out) the generation is `stopping` and its sockets are closed: no way back
  draining: ['stopping', 'active'],
  stopping: ['stopped'],
  stopped: [],
  failed: [],
};

/** How a retirement ended: stopped, or taken back into service by a rollback during its drain. */
export type Retirement = 'stopped' | 'reactivated';
type DrainEnd = 'idle' | 'cut' | 'reactivated';

const LIVE_STATES: readonly GenerationState[] = ['starting', 'healthy', 'active', 'draining', 'stopping'];
const PORT_ATTEMPTS = 3;
/**
 * An adopted app was serving a moment ago: it answers at once, or it is hung. Waiting for it
 * as long as for a deploy (deployTimeout) would keep a new rainbowd from listening as long.
 */
const ADOPTION_CHECK_MS = 10_000;
const PORT_TAKEN = /EADDRINUSE|address already in use|address in use/i;
// The data path knows a generation by this number: names repeat when a service is removed
// and deployed again while its old generations still drain.
let nextKey = 1;

export interface GenerationContext {
  config: ServiceConfig;
  log: Logger;
  runtimeDir: string;
  ownerEnv: Record<string, string>;
  dataPath: DataPath;
  /** Aborts a start that is under way (rainbowd is shutting down). */
  signal: AbortSignal;
}

/** The active app exiting on its own: how long it had served and what it said. */
export interface Crash {
  upForMs: number;
  reason: string;
}

export class Generation {
  private currentState: GenerationState = 'starting';
  readonly host: string;
  private appPort = 0;
  private appPid: number | null = null;
  private lastCheck: string | null = null;
  /** The processes of a supervised generation (null: an external target, or not launched yet). */
  private app: AppGroup | null = null;
  readonly key = nextKey++;
  readonly createdAt = Date.now();
  private retirement: Promise<Retirement> | null = null;
  /** Aborted, with how it ended, when the drain under way ends. */
  private drainEnd: AbortController | null = null;
  /**
   * Handed over by a rainbowd that still finishes requests on it (handover.ts): they are not
   * counted here, so a drain also waits for that rainbowd to have exited.
   */
  private predecessorGone: Promise<void> = Promise.resolve();

  constructor(
    readonly service: string,
    readonly id: number,
    private readonly context: GenerationContext,
  ) {
    const target = context.config.target === undefined ? null : splitTarget(context.config.target);
    this.host = target?.host ?? '127.0.0.1';
    if (target) this.appPort = target.port;
  }

  get state(): GenerationState {
    return this.currentState;
  }

  get port(): number {
    return this.appPort;
  }

  /** The app's main process as status shows it (null: an external target). */
  get pid(): number | null {
    return this.appPid;
  }

  get address(): UpstreamAddress {
    return { key: this.key, generation: this.id, host: this.host, port: this.port };
  }

  get inFlight(): number {
    return this.context.dataPath.inFlight(this.key);
  }

  get isLive(): boolean {
    return LIVE_STATES.includes(this.state);
  }

  get label(): string {
    return `${this.service}#${this.id}`;
  }

  /** The service switched to it: it takes new requests from now on. */
  activate(reason: string, previous: number | null): void {
    this.transition('active', reason, { previous: previous ?? undefined });
  }

  private transition(to: GenerationState, reason?: string, extra: EventFields = {}): void {
    if (!allowedTransitions[this.state].includes(to)) {
      throw new Error(`${this.label}: illegal transition ${this.state} -> ${to}`);
    }
    this.currentState = to;
    this.context.log.event(to, { service: this.service, generation: this.id, port: this.port, pid: this.pid, ...extra, ...(reason ? { reason } : {}) });
  }

  /** Launch (supervised) and health-check. Throws a DEPLOY_FAILED error; the generation is then `failed`. */
  async start(): Promise<void> {
    const { config } = this.context;
    try {
      if (config.run === undefined) {
        this.context.log.event('starting', { service: this.service, generation: this.id, target: config.target });
        await this.waitUntilReady(this.context.signal);
      } else {
        await this.launchWithPortRetry(config.run);
      }
      this.transition('healthy');
    } catch (error) {
      await this.fail(messageOf(error));
      throw deployFailed(`${this.label} ${messageOf(error)}`, error);
    }
  }

  private async launchWithPortRetry(run: string): Promise<void> {
    const { config, log } = this.context;
    // The config was checked at load; the directory may have gone since (a deploy script that
    // replaces it). Said plainly, rather than a process that never started.
    if (!isDirectory(config.cwd)) throw new Error(`cannot start: its "cwd" ${config.cwd} is not a directory any more`);
    for (let attempt = 1; ; attempt++) {
      this.appPort = await getPort({ host: '127.0.0.1' });
      const app = new AppProcess({
        run,
        service: this.service,
        generation: this.id,
        port: this.port,
        pidfile: path.join(this.context.runtimeDir, `${this.service}-${this.id}.pid`),
        cwd: config.cwd,
        env: { ...config.env, ...this.context.ownerEnv },
        onOutput: (line) => log.appOutput(this.service, this.id, line),
      });
      this.app = app;
      this.appPid = app.groupId;
      log.event('starting', { service: this.service, generation: this.id, port: this.port, pid: this.pid, attempt: attempt > 1 ? attempt : undefined });
      try {
        await this.waitUntilAppReady(app);
        return;
      } catch (error) {
        if (this.context.signal.aborted) throw new Error('start cancelled: rainbowd is shutting down');
        if (!app.exitInfo) throw error;
        const tail = app.outputTail();
        const portTaken = tail.some((line) => PORT_TAKEN.test(line));
        if (portTaken && attempt < PORT_ATTEMPTS) {
          log.event('retrying', { service: this.service, generation: this.id, port: this.port, reason: `port ${this.port} was taken before the app could bind it; trying another port` });
          await app.stop(config.stopTimeoutMs);
          continue;
        }
        throw new Error(`${app.describeExit()} before it was healthy; ${describeOutput(tail)}`);
      }
    }
  }

  /**
   * Takes over an app another rainbowd launched (adoption.ts), health-checked like a new one.
   * Throws a DEPLOY_FAILED error; the app is then stopped and the generation `failed`.
   */
  async adopt(app: AppGroup, port: number, reason: string, predecessorGone?: Promise<void>): Promise<void> {
    this.app = app;
    if (predecessorGone) this.predecessorGone = predecessorGone;
    this.appPort = port;
    this.appPid = app.groupId;
    this.context.log.event('adopting', { service: this.service, generation: this.id, port, pid: this.pid, reason });
    try {
      await this.waitUntilAppReady(app, 'adopting');
      this.transition('healthy');
    } catch (error) {
      const why = app.exitInfo ? app.describeExit() : messageOf(error);
      // A predecessor that handed it over still serves with it: its to stop, not ours.
      if (predecessorGone) this.transition('failed', why);
      else await this.fail(why);
      throw deployFailed(`${this.label} not adopted: ${why}`, error);
    }
  }

  /** A process that exits before it is healthy fails at once, not at the timeout. */
  private async waitUntilAppReady(app: AppGroup, how: 'starting' | 'adopting' = 'starting'): Promise<void> {
    const exitedEarly = new AbortController();
    void app.exited.then(() => exitedEarly.abort(new Error('exited')));
    await this.waitUntilReady(AbortSignal.any([exitedEarly.signal, this.context.signal]), how);
    this.appPid = await app.displayPid();
  }

  private async waitUntilReady(signal: AbortSignal, how: 'starting' | 'adopting' = 'starting'): Promise<void> {
    const { config } = this.context;
    // With warmupTime there is no check: an app that is alive and was serving is taken as it is.
    if (config.warmupMs !== undefined) return how === 'adopting' ? undefined : sleep(config.warmupMs, signal);
    const deadlineMs = how === 'adopting' ? Math.min(config.deployTimeoutMs, ADOPTION_CHECK_MS) : config.deployTimeoutMs;
    await waitUntilHealthy(this, config.healthCheck, deadlineMs, signal, (outcome) => (this.lastCheck = outcome));
  }

  private async fail(reason: string): Promise<void> {
    if (this.app) await this.app.stop(this.context.config.stopTimeoutMs);
    this.transition('failed', reason);
  }

  /**
   * Takes the generation out of service for good: drains it if it served (unless it crashed:
   * nothing is left to drain), then stops it. Each retirement runs once; later callers wait
   * for the same end. It ends `reactivated` when a rollback took the generation back first.
   */
  retire(reason: string, { drain = true, onDrained }: { drain?: boolean; onDrained?: () => void } = {}): Promise<Retirement> {
    this.retirement ??= this.drainAndStop(reason, drain, onDrained);
    return this.retirement;
  }

  private async drainAndStop(reason: string, drain: boolean, onDrained: (() => void) | undefined): Promise<Retirement> {
    if (this.state === 'stopped') return 'stopped';
    if (drain && this.state === 'active') {
      if ((await this.drain(reason)) === 'reactivated') return 'reactivated';
      onDrained?.();
    } else {
      this.transition('stopping', reason);
      void this.context.dataPath.release(this.key);
    }
    await this.stopApp();
    return 'stopped';
  }

  /**
   * Waits until nothing is in flight (bounded by `drainTimeout`), then closes every upstream
   * socket so nothing new can race onto this generation. The switch was published before
   * this is called, so the data path sends nothing new here. The drain's end is decided in
   * one synchronous step: a rollback either takes the generation back while it is still
   * `draining`, or finds it `stopping`, with its sockets being closed, and is refused.
   */
  private async drain(reason: string): Promise<'released' | 'reactivated'> {
    const { config, dataPath } = this.context;
    this.transition('draining', reason, { inFlight: this.inFlight });
    const started = Date.now();
    const ended = new AbortController();
    this.drainEnd = ended;
    const how = await new Promise<DrainEnd>((resolve) => {
      const timer = setTimeout(() => ended.abort('cut'), config.drainTimeoutMs);
      ended.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        this.drainEnd = null;
        const end = ended.signal.reason as DrainEnd;
        if (end !== 'reactivated') this.transition('stopping', reason);
        resolve(end);
      }, { once: true });
      void Promise.all([dataPath.whenIdle(this.key), this.predecessorGone]).then(() => ended.abort('idle'));
    });
    if (how === 'reactivated') return how;
    const cut = await dataPath.release(this.key);
    const drained = how === 'idle' || cut === 0;
    this.context.log.event('drained', {
      service: this.service,
      generation: this.id,
      port: this.port,
      pid: this.pid,
      tookMs: Date.now() - started,
      ...(drained ? {} : { cut, reason: `${cut} request(s) still in flight; closing them` }),
    });
    return 'released';
  }

  /**
   * Takes a draining generation back into service (a rollback). False when it cannot serve
   * again: its drain is over and its sockets are being closed, or its app has exited.
   */
  reactivate(reason: string): boolean {
    if (this.state !== 'draining' || this.app?.exitInfo) return false;
    this.drainEnd?.abort('reactivated');
    this.retirement = null;
    this.transition('active', reason);
    return true;
  }

  /** Ends a drain under way at once (too many generations alive, or shutting down hard). */
  cutDrainShort(): void {
    this.drainEnd?.abort('cut');
  }

  /** Stops the process (supervised); an external target is someone else's to stop. */
  private async stopApp(): Promise<void> {
    const outcome = this.app ? await this.app.stop(this.context.config.stopTimeoutMs) : null;
    const how =
      outcome === null ? 'external target: no longer routed to, left running'
      : outcome.how === 'already-exited' ? 'had already exited'
      : outcome.how === 'SIGKILL' ? `did not stop within ${formatDuration(this.context.config.stopTimeoutMs)} of SIGTERM to ${outcome.signalled}: SIGKILLed`
      : `SIGTERM to ${outcome.signalled}${outcome.leftoversKilled ? `; ${outcome.leftoversKilled} leftover process(es) SIGKILLed` : ''}`;
    const strays = outcome?.strays ? `; ${outcome.strays} process(es) that had left its process group stopped too` : '';
    this.transition('stopped', `${how}${strays}`);
  }

  /**
   * Settles when the app exits: with what happened if the generation was serving then (a
   * crash), else null (rainbowd stopped it, or it exited during its drain). Null at once
   * for an external target: rainbowd cannot see it exit.
   */
  async crash(): Promise<Crash | null> {
    const { app } = this;
    if (!app) return null;
    await app.exited;
    if (this.state !== 'active') return null;
    const upForMs = Date.now() - this.createdAt;
    return { upForMs, reason: `crashed: ${app.describeExit()} after ${formatDuration(upForMs)}; ${describeOutput(app.outputTail())}` };
  }

  /** SIGTERM to a live generation's processes, without waiting: for a rainbowd that is crashing. */
  terminateNow(): void {
    if (this.isLive) this.app?.terminateNow();
  }

  /** Its app's output streams, by marker, for a successor to read (handover.ts); null: no app. */
  outputStreams(): [string, Socket[]] | null {
    return this.app ? [this.app.marker, this.app.outputStreams()] : null;
  }

  /** What the generation record keeps of a live app (generation-record.ts); null: no app, or no longer alive. */
  recorded(active: boolean): RecordedGeneration | null {
    const { app } = this;
    if (!app || !this.isLive) return null;
    return { service: this.service, generation: this.id, active, port: this.port, groupId: app.groupId, marker: app.marker, pidfile: app.pidfile };
  }

  status(): GenerationStatus {
    const lastCheck = this.state === 'starting' ? this.lastCheck : null;
    return { id: this.id, state: this.state, host: this.host, port: this.port, pid: this.pid, inFlight: this.inFlight, ageMs: Date.now() - this.createdAt, lastCheck };
  }
}
