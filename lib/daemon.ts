import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { DaemonStatus } from './api.js';
import { DEFAULT_STOP_TIMEOUT_MS, loadConfig, type DaemonConfig, type RunOverrides } from './config.js';
import { ControlServer } from './control.js';
import { removeRecord, writeRecord } from './daemon-record.js';
import { RainbowError, isRainbowError, messageOf } from './errors.js';
import { FileWatch } from './file-watch.js';
import type { Logger } from './log.js';
import { findLeftovers, type Leftovers } from './adoption.js';
import { removeGenerationRecord } from './generation-record.js';
import { runtimeDirPrefix, stopOrphans } from './orphans.js';
import { Proxy } from './proxy.js';
import { ProxyWorkers } from './proxy-workers.js';
import type { DataPath } from './route-table.js';
import { ServiceRegistry } from './service-registry.js';

// Wiring: the data path, the service registry and the control API; the start sequence,
// signals, the crash handler, config reloads and shutdown.

/** Settings that the listeners took at start: a reload cannot change them. */
const fixedAtStart = ['host', 'port', 'controlHost', 'controlPort', 'controlSocket', 'controlToken', 'workers'] as const;

export class Daemon {
  private readonly dataPath: DataPath;
  private readonly registry: ServiceRegistry;
  private readonly control: ControlServer;
  private readonly fileWatch = new FileWatch();
  private readonly runtimeDir = mkdtempSync(runtimeDirPrefix());
  private readonly startedAt = Date.now();
  private shuttingDown: Promise<void> | null = null;

  constructor(
    private config: DaemonConfig,
    private readonly overrides: RunOverrides,
    private readonly log: Logger,
    private readonly version: string,
  ) {
    this.dataPath = config.workers === 0 ? new Proxy(log) : new ProxyWorkers(config.workers, log);
    // Marks the requests our proxy forwarded, so one that a target sends back to it is answered 508, not forwarded again.
    const via = `rainbowd-${randomBytes(6).toString('hex')}`;
    const registry = new ServiceRegistry(config, { log, dataPath: this.dataPath, runtimeDir: this.runtimeDir, via });
    this.registry = registry;
    const control = {
      redeploy: registry.redeploy.bind(registry),
      deploy: registry.deploy.bind(registry),
      remove: registry.remove.bind(registry),
      changeMode: registry.changeMode.bind(registry),
      rollback: registry.rollback.bind(registry),
      status: () => this.status(),
    };
    this.control = new ControlServer(control, { host: config.controlHost, port: config.controlPort, token: config.controlToken });
  }

  async start(): Promise<void> {
    const { config } = this;
    // Before listening, so that the first request the new proxy takes is routed to the app a
    // killed predecessor left serving. Nothing is stopped yet: if listening fails, all of it
    // is still there for the next attempt.
    const leftovers = config.file ? findLeftovers(config.file, (name) => this.registry.canAdopt(name), this.runtimeDir) : null;
    const adopted = leftovers ? await this.registry.adopt(leftovers.adoptable, leftovers.lastGenerations, 'left serving by a rainbowd that exited without stopping it') : new Set();
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
      this.registry.keepRecord();
      this.recordControlAddress();
      this.installSignalHandlers();
      this.installCrashHandler();
      this.watchFiles();
      if (leftovers) await this.stopLeftovers(leftovers);
      await this.registry.restoreState();
    } catch (error) {
      // Listening but never deploying would answer 503 for ever: stop, and let the error be seen.
      await this.shutdown(`start failed (${messageOf(error)})`);
      throw error;
    }
    for (const service of this.registry.all()) {
      if (adopted.has(service)) continue;
      service.redeploy('initial deploy').catch(() => undefined); // logged; retried with backoff
    }
  }

  /**
   * What a predecessor on this config left running and was not adopted (it was draining, its
   * service is gone, or it failed its health check): stopped before anything is deployed.
   * Which service an orphan was is only a name: give it the longest stopTimeout.
   */
  private async stopLeftovers({ toStop }: Leftovers): Promise<void> {
    await stopOrphans(toStop, Math.max(...this.config.services.map((service) => service.stopTimeoutMs), 0) || DEFAULT_STOP_TIMEOUT_MS, this.log);
  }

  status(): DaemonStatus {
    return {
      pid: process.pid,
      version: this.version,
      uptimeMs: Date.now() - this.startedAt,
      config: this.config.file,
      proxy: { host: this.config.host, port: this.config.port, workers: this.config.workers },
      control: { host: this.config.controlHost, port: this.config.controlPort, socket: this.config.controlSocket, token: this.config.controlToken !== null },
      services: this.registry.statuses(),
    };
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
    const refusal = this.registry.refusalOf(next);
    if (refusal) {
      this.log.event('reload-failed', { reason: `${refusal}; keeping the running config` });
      return;
    }
    for (const key of fixedAtStart.filter((key) => next[key] !== this.config[key])) {
      // The token's values are not logged.
      const values = key === 'controlToken' ? {} : { running: this.config[key], configured: next[key] };
      this.log.event('reload-ignored', { key, ...values, reason: `changing "${key}" needs a restart of rainbowd` });
    }
    this.log.setFormat(next.logFormat);
    const { host, port, controlHost, controlPort, controlSocket, controlToken, workers } = this.config;
    this.config = { ...next, host, port, controlHost, controlPort, controlSocket, controlToken, workers };
    this.registry.reconcile(this.config);
    this.watchFiles();
    this.log.event('reloaded', { config: this.config.file, reason: `${why}; new values apply from the next deploy` });
  }

  shutdown(signal: string): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.log.event('shutting-down', { reason: `${signal}: draining and stopping every generation` });
      this.dataPath.close();
      await this.fileWatch.close();
      await Promise.all(this.registry.all().map((service) => service.stopAll(`rainbowd received ${signal}`)));
      await this.dataPath.stop();
      this.control.close();
      this.removeRuntimeFiles();
      this.log.event('stopped', { reason: 'every generation is stopped' });
    })();
    return this.shuttingDown;
  }

  private watchFiles(): void {
    this.fileWatch.watch(this.config.file, () => void this.reload('config file changed'), this.registry.all());
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
    if (this.config.file) {
      removeRecord(this.config.file, process.pid);
      removeGenerationRecord(this.config.file, process.pid);
    }
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
      for (const service of this.registry.all()) service.terminateAppsNow();
      this.control.close();
      this.removeRuntimeFiles();
      process.exit(1);
    });
  }

  private installSignalHandlers(): void {
    process.on('SIGUSR1', () => {
      let deploying: Promise<unknown>;
      try {
        deploying = this.registry.redeploy(undefined, 'SIGUSR1');
      } catch (error) {
        // A config of named services only has no default one: a signal's mistake, not a crash.
        this.log.event('signal-ignored', { reason: `SIGUSR1 redeploys the default service: ${messageOf(error)}; use rainbowd redeploy NAME` });
        return;
      }
      deploying.catch(() => undefined); // logged by the deploy
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
}

async function listenOrExplain(listening: Promise<void>, what: string, host: string, port: number, setting: string, file: string | null): Promise<void> {
  try {
    await listening;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      const problem = code === 'EADDRINUSE' ? 'is already in use (is another rainbowd running?)' : code === 'EACCES' ? 'needs privileges' : 'is not an address of this machine';
      const errorCode = code === 'EADDRINUSE' ? 'PORT_IN_USE' : 'LISTEN_FAILED';
      throw new RainbowError(errorCode, `cannot listen on ${host}:${port} for the ${what}: it ${problem}; set ${setting}${file ? ` in ${file}` : ''}`, { cause: error });
    }
    throw isRainbowError(error) ? error : new RainbowError('LISTEN_FAILED', `cannot listen on ${host}:${port} for the ${what}: ${messageOf(error)}`, { cause: error });
  }
}
