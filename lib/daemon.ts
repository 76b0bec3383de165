import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { DEFAULT_SERVICE, loadConfig, type DaemonConfig, type RunOverrides } from './config.js';
import { ControlServer } from './control.js';
import { RainbowError, isRainbowError, messageOf } from './errors.js';
import type { Logger } from './log.js';
import { Proxy } from './proxy.js';
import { Router } from './router.js';
import { Service, type DeployResult, type ServiceStatus } from './service.js';

// Wiring: listeners, services, signals, watched files, reload and shutdown.

export interface DaemonStatus {
  pid: number;
  version: string;
  uptimeMs: number;
  config: string | null;
  proxy: { host: string; port: number };
  control: { host: string; port: number };
  services: ServiceStatus[];
}

const WATCH_DEBOUNCE_MS = 300;

export class Daemon {
  private readonly services = new Map<string, Service>();
  private readonly router = new Router();
  private readonly proxy: Proxy;
  private readonly control: ControlServer;
  private readonly runtimeDir = mkdtempSync(path.join(os.tmpdir(), 'rainbowd-'));
  private readonly startedAt = Date.now();
  private watchers: FSWatcher[] = [];
  private shuttingDown: Promise<void> | null = null;

  constructor(
    private config: DaemonConfig,
    private readonly overrides: RunOverrides,
    private readonly log: Logger,
    private readonly version: string,
  ) {
    for (const serviceConfig of config.services) {
      this.services.set(serviceConfig.name, new Service(serviceConfig, log, this.runtimeDir));
    }
    this.router.update(this.services.values());
    this.proxy = new Proxy(this.router, log);
    this.control = new ControlServer(this);
  }

  async start(): Promise<void> {
    const { config } = this;
    try {
      await listenOrExplain(this.proxy.listen(config.port, config.host), 'proxy', config.host, config.port, '"port" or --http-port', config.file);
      await listenOrExplain(this.control.listen(config.controlPort, config.controlHost), 'control API', config.controlHost, config.controlPort, '"controlPort" or --control-port', config.file);
    } catch (error) {
      this.proxy.server.close();
      this.control.close();
      rmSync(this.runtimeDir, { recursive: true, force: true });
      throw error;
    }
    this.log.event('listening', {
      proxy: `${config.host}:${config.port}`,
      control: `${config.controlHost}:${config.controlPort}`,
      config: config.file ?? undefined,
      pid: process.pid,
    });
    this.installSignalHandlers();
    this.watchFiles();
    for (const service of this.services.values()) {
      service.redeploy('initial deploy').catch(() => undefined); // logged; retried with backoff
    }
  }

  /** Throws at once (not in the promise) for an unknown service, so `?wait=0` can say so. */
  redeploy(name: string | undefined, reason: string): Promise<DeployResult> {
    const service = this.services.get(name ?? DEFAULT_SERVICE);
    if (!service) throw new RainbowError('SERVICE_NOT_FOUND', `no service named "${name}"`);
    return service.redeploy(reason);
  }

  status(): DaemonStatus {
    return {
      pid: process.pid,
      version: this.version,
      uptimeMs: Date.now() - this.startedAt,
      config: this.config.file,
      proxy: { host: this.config.host, port: this.config.port },
      control: { host: this.config.controlHost, port: this.config.controlPort },
      services: [...this.services.values()].map((service) => service.status()),
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
    const needRestart = (['host', 'port', 'controlHost', 'controlPort'] as const).filter((key) => next[key] !== this.config[key]);
    for (const key of needRestart) {
      this.log.event('reload-ignored', { key, running: this.config[key], configured: next[key], reason: `changing "${key}" needs a restart of rainbowd` });
    }
    this.log.setFormat(next.logFormat);
    for (const serviceConfig of next.services) {
      const service = this.services.get(serviceConfig.name);
      if (service) service.config = serviceConfig;
    }
    this.config = { ...next, host: this.config.host, port: this.config.port, controlHost: this.config.controlHost, controlPort: this.config.controlPort };
    this.router.update(this.services.values());
    this.watchFiles();
    this.log.event('reloaded', { config: this.config.file, reason: `${why}; new values apply from the next deploy` });
  }

  shutdown(signal: string): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.log.event('shutting-down', { reason: `${signal}: draining and stopping every generation` });
      this.proxy.close();
      await Promise.all(this.watchers.map((watcher) => watcher.close()));
      await Promise.all([...this.services.values()].map((service) => service.stopAll(`rainbowd received ${signal}`)));
      this.control.close();
      rmSync(this.runtimeDir, { recursive: true, force: true });
      this.log.event('stopped', { reason: 'every generation is stopped' });
    })();
    return this.shuttingDown;
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
