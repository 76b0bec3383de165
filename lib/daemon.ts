import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { DaemonStatus, UpgradeResult } from './api.js';
import { DEFAULT_STOP_TIMEOUT_MS, loadConfig, type DaemonConfig, type RunOverrides } from './config.js';
import { ControlServer } from './control.js';
import { removePidfile, removeRecord, writePidfile, writeRecord } from './daemon-record.js';
import { RainbowError, messageOf } from './errors.js';
import { FileWatch } from './file-watch.js';
import { HaproxyDataPath } from './haproxy-data-path.js';
import { stopLeftHaproxy } from './haproxy-process.js';
import { findLeftHaproxy, removeHaproxyRecord } from './haproxy-record.js';
import { IdleMemoryRelease } from './idle-memory.js';
import type { Logger } from './log.js';
import { findLeftovers, type Leftovers } from './adoption.js';
import { removeGenerationRecord } from './generation-record.js';
import type { Handover, HandsOver, Predecessor } from './handover.js';
import { addressOf, listenOrExplain, type Listener } from './listen.js';
import { runtimeDirPrefix, stopOrphans } from './orphans.js';
import { Proxy } from './proxy.js';
import { ProxyWorkers } from './proxy-workers.js';
import type { DataPath } from './route-table.js';
import { ServiceRegistry } from './service-registry.js';
import { handleSignals } from './signals.js';
import { takeOver, Upgrader } from './upgrade.js';

// Wiring: the data path, the service registry and the control API; the start sequence,
// signals, the crash handler, config reloads and shutdown.

/** Settings that the listeners took at start: a reload cannot change them. */
const fixedAtStart = ['host', 'port', 'controlHost', 'controlPort', 'controlSocket', 'controlToken', 'workers', 'engine', 'haproxyPath'] as const;

export class Daemon {
  private readonly dataPath: DataPath;
  /** The data path when it runs in rainbowd's processes (its own, or proxy workers): a successor's listener is handed to it. */
  private readonly proxy: HandsOver | null;
  /** The haproxy engine: it takes over the HAProxy a predecessor left serving. */
  private readonly haproxy: HaproxyDataPath | null;
  private readonly registry: ServiceRegistry;
  private readonly control: ControlServer;
  private readonly fileWatch: FileWatch;
  private readonly runtimeDir = mkdtempSync(runtimeDirPrefix());
  private readonly startedAt = Date.now();
  private shuttingDown: Promise<void> | null = null;
  private readonly upgrader: Upgrader;
  private readonly predecessor: Predecessor | null;
  private readonly pidfile: string | null;
  private readonly memoryRelease = new IdleMemoryRelease((fields) => this.log.event('memory-released', fields));

  constructor(
    private config: DaemonConfig,
    private readonly overrides: RunOverrides,
    private readonly log: Logger,
    private readonly version: string,
    {
      predecessor = null,
      pidfile = null,
    }: {
      /** The rainbowd this one takes over from (`rainbowd upgrade`), if any. */
      predecessor?: Predecessor | null;
      /** `--pidfile`: where our pid is written for a service manager. */
      pidfile?: string | null;
    } = {},
  ) {
    this.fileWatch = new FileWatch(log);
    this.predecessor = predecessor;
    this.pidfile = pidfile;
    this.dataPath = createDataPath(config, log);
    this.proxy = this.dataPath instanceof Proxy || this.dataPath instanceof ProxyWorkers ? this.dataPath : null;
    this.haproxy = this.dataPath instanceof HaproxyDataPath ? this.dataPath : null;
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
      upgrade: (reason: string) => this.upgrade(reason),
    };
    this.control = new ControlServer(control, { host: config.controlHost, port: config.controlPort, token: config.controlToken });
    this.upgrader = new Upgrader({
      config: () => this.config,
      registry,
      control: this.control,
      dataPath: this.dataPath,
      log,
      shuttingDown: () => this.shuttingDown !== null,
      reclaimRecords: () => {
        registry.keepRecord();
        this.recordControlAddress();
        this.haproxy?.reclaim();
      },
    });
  }

  async start(): Promise<void> {
    const { config } = this;
    const handover = this.predecessor ? await this.predecessor.receive() : null;
    // Modes and deployed services first: what is adopted below serves in its saved mode.
    await this.registry.restoreState();
    // Before listening, so that the first request the new proxy takes is routed to the app a
    // predecessor left serving. Nothing is stopped yet: if listening fails, all of it is
    // still there (for the next attempt, or for the predecessor that hands over).
    const leftovers = !handover && config.file ? findLeftovers(config.file, (name) => this.registry.canAdopt(name), this.runtimeDir) : null;
    await this.findHaproxy(handover);
    const adopted = handover ? await takeOver(handover, this.predecessor!, this.registry, this.runtimeDir, this.log) : leftovers ? await this.registry.adopt(leftovers.adoptable, leftovers.lastGenerations, 'left serving by a rainbowd that exited without stopping it') : new Set();
    this.releaseIdleMemory();
    try {
      await this.listen(handover);
    } catch (error) {
      // The predecessor of an upgrade serves on, with its HAProxy.
      if (this.predecessor) await this.dataPath.handOver?.(0);
      await this.dataPath.stop();
      this.control.close();
      rmSync(this.runtimeDir, { recursive: true, force: true });
      throw error;
    }
    this.log.event('listening', {
      proxy: `${config.host}:${config.port}`,
      engine: config.engine,
      workers: config.workers,
      control: `${config.controlHost}:${config.controlPort}`,
      controlSocket: config.controlSocket ?? undefined,
      controlToken: config.controlToken === null ? undefined : 'required',
      config: config.file ?? undefined,
      pid: process.pid,
      upgradedFrom: this.predecessor?.pid,
    });
    try {
      this.registry.keepRecord();
      this.recordControlAddress();
      handleSignals({
        redeployDefault: (why) => this.registry.redeploy(undefined, why),
        reload: (why) => this.reload(why),
        upgrade: (why) => this.upgrade(why),
        shutdown: (signal) => {
          if (this.shuttingDown) return false;
          void this.shutdown(signal).then(() => process.exit(0));
          return true;
        },
        log: this.log,
      });
      // A new rainbowd that crashes before it is ready must leave the apps to its predecessor.
      if (!this.predecessor) this.installCrashHandler();
      this.watchFiles();
      if (leftovers) await this.stopLeftovers(leftovers);
    } catch (error) {
      // Listening but never deploying would answer 503 for ever: stop, and let the error be seen.
      if (!this.predecessor) await this.shutdown(`start failed (${messageOf(error)})`);
      throw error;
    }
    if (this.predecessor) {
      this.predecessor.ready();
      this.installCrashHandler();
    }
    for (const service of this.registry.all()) {
      if (adopted.has(service)) continue;
      service.redeploy('initial deploy').catch(() => undefined); // logged; retried with backoff
    }
  }

  /**
   * The HAProxy a predecessor left serving (haproxy engine): handed over, or found where a
   * killed one recorded it. With the node engine (the config changed), a killed one's is
   * stopped before we bind its port; an upgrade cannot change the engine, and fails on the port.
   */
  private async findHaproxy(handover: Handover | null): Promise<void> {
    const file = this.config.file;
    const left = !handover && file ? findLeftHaproxy(file) : null;
    const dir = handover?.haproxyDir ?? left?.dir ?? null;
    if (dir === null) return;
    if (this.haproxy) this.haproxy.takeOver(dir, handover !== null);
    else if (left) {
      await stopLeftHaproxy(left.dir, this.log);
      removeHaproxyRecord(file!, left.daemonPid);
    }
  }

  /** On the ports of the config: on the sockets a predecessor hands over where they are the same. */
  private async listen(handover: Handover | null): Promise<void> {
    const { config } = this;
    const { proxy: handedProxy, control: handedControl, controlSocket: handedSocket } = handover?.listeners ?? {};
    const same = (listener: Listener | undefined, host: string, port: number) => {
      const address = listener && addressOf(listener);
      return address?.port === port && address.address === host;
    };
    const proxy = same(handedProxy, config.host, config.port) && this.proxy ? handedProxy! : null;
    if (proxy) await this.proxy!.listenOnHandedOver(proxy);
    else {
      if (handedProxy) this.proxy?.declineHandedOver(handedProxy);
      await listenOrExplain(this.dataPath.listen(config.port, config.host), 'proxy', config.host, config.port, '"port" or --http-port', config.file);
    }
    const control = same(handedControl, config.controlHost, config.controlPort) ? handedControl! : null;
    const socket = handedSocket && config.controlSocket !== null && handover!.controlSocketFile === config.controlSocket ? { server: handedSocket, file: config.controlSocket } : null;
    if (control) await this.control.listenOnHandedOver(control, socket);
    else await listenOrExplain(this.control.listen(), 'control API', config.controlHost, config.controlPort, '"controlPort" or --control-port', config.file);
    this.control.declineHandedOver(control ? undefined : handedControl, control && socket ? undefined : handedSocket);
    if (config.controlSocket !== null && !(control && socket)) await this.control.listenOnSocket(config.controlSocket);
  }

  /**
   * What a predecessor on this config left running and was not adopted (it was draining, its
   * service is gone, or it failed its health check): stopped before anything is deployed.
   * Which service an orphan was is only a name: give it the longest stopTimeout.
   */
  private async stopLeftovers({ toStop }: Leftovers): Promise<void> {
    await stopOrphans(toStop, Math.max(...this.config.services.map((service) => service.stopTimeoutMs), 0) || DEFAULT_STOP_TIMEOUT_MS, this.log);
  }

  async status(): Promise<DaemonStatus> {
    await this.dataPath.readInFlight?.();
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

  /**
   * `rainbowd upgrade`, the running rainbowd's side: resolves once the new one serves, and
   * then stops accepting, finishes its requests and exits, leaving the apps to it.
   */
  async upgrade(reason: string): Promise<UpgradeResult> {
    const pid = await this.upgrader.upgrade(reason);
    this.shuttingDown = this.exitAfterHandover(pid);
    return { ok: true, pid, previousPid: process.pid };
  }

  private async exitAfterHandover(successor: number): Promise<void> {
    // The answer to the upgrade request goes out on its connection before we stop accepting.
    await new Promise((resolve) => setImmediate(resolve));
    this.control.handOver();
    for (const service of this.registry.all()) service.handOver();
    await this.fileWatch.close();
    await this.dataPath.handOver!(Math.max(...this.config.services.map((service) => service.drainTimeoutMs), 0));
    await this.dataPath.stop();
    this.control.close();
    this.removeRuntimeFiles();
    this.log.event('stopped', { reason: `handed over to rainbowd pid ${successor}; its apps go on running` });
    process.exit(0);
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
      // An upgrade moves every listener to a new address (HAProxy's by the reload that loads the new daemon's config), not to another engine or HAProxy program.
      const upgradable = this.dataPath.handover !== undefined && key !== 'engine' && key !== 'haproxyPath';
      const how = upgradable ? 'rainbowd upgrade (or a restart)' : 'a restart of rainbowd';
      this.log.event('reload-ignored', { key, ...values, reason: `changing "${key}" needs ${how}` });
    }
    this.log.setFormat(next.logFormat);
    const { host, port, controlHost, controlPort, controlSocket, controlToken, workers, engine, haproxyPath } = this.config;
    this.config = { ...next, host, port, controlHost, controlPort, controlSocket, controlToken, workers, engine, haproxyPath };
    this.registry.reconcile(this.config);
    this.watchFiles();
    this.releaseIdleMemory();
    this.log.event('reloaded', { config: this.config.file, reason: `${why}; new values apply from the next deploy` });
  }

  shutdown(signal: string): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.log.event('shutting-down', { reason: `${signal}: draining and stopping every generation` });
      this.memoryRelease.stop();
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

  /** In this process and in proxy workers: `releaseIdleMemoryAfter`, at start and at each reload. */
  private releaseIdleMemory(): void {
    const afterMs = this.config.releaseIdleMemoryAfterMs;
    this.memoryRelease.every(afterMs);
    if (this.dataPath instanceof ProxyWorkers) this.dataPath.releaseIdleMemoryAfter(afterMs);
  }

  private watchFiles(): void {
    this.fileWatch.watch(this.config.file, () => void this.reload('config file changed'), this.registry.all());
  }

  /** For the CLI and the git hook: without it they find the daemon from the config on disk. And `--pidfile`. */
  private recordControlAddress(): void {
    if (this.pidfile) {
      try {
        writePidfile(this.pidfile);
      } catch (error) {
        throw new RainbowError('USAGE', `cannot write the pid to ${this.pidfile} (--pidfile): ${messageOf(error)}`, { cause: error });
      }
    }
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
    if (this.pidfile) removePidfile(this.pidfile, process.pid);
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
      // Once handed over (rainbowd upgrade), the apps are the new rainbowd's.
      const apps = this.upgrader.handedOver ? 'the apps were handed over and go on' : 'every app was sent SIGTERM';
      this.log.event('crashed', { reason: `internal error, please report it: ${what}; ${apps}` });
      if (!this.upgrader.handedOver) for (const service of this.registry.all()) service.terminateAppsNow();
      this.control.close();
      this.removeRuntimeFiles();
      process.exit(1);
    });
  }
}

/** The engine the config names: HAProxy (its program is checked when it starts), or rainbowd's own proxy in this process or in workers. */
function createDataPath(config: DaemonConfig, log: Logger): DataPath {
  if (config.engine === 'haproxy') return new HaproxyDataPath({ haproxyPath: config.haproxyPath, configFile: config.file, log });
  return config.workers === 0 ? new Proxy(log) : new ProxyWorkers(config.workers, log);
}
