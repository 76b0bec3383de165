import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import getPort from 'get-port';
import type { DaemonStatus, DeployResult, ErrorBody, GenerationStatus, ServiceStatus } from '../../lib/api.js';
import { removeRuntimeDirs } from '../../lib/orphans.js';
import type { Engine } from './engines.js';
import { request, type Response } from './http.js';
import { appRunLine, daemonBin } from './paths.js';
import { killLeftHaproxy } from './haproxy.js';
import { killMarkedProcesses, uniqueMarker } from './process.js';
import { StopWaiting, waitFor } from './wait.js';

export interface RedeployAnswer {
  status: number;
  /** A `DeployResult` (200), the 202 of `?wait=0`, or an `ErrorBody`: read whichever fields the test expects. */
  body: { ok: boolean; error?: ErrorBody['error'] } & Partial<Omit<DeployResult, 'ok'>> & Record<string, unknown>;
  elapsedMs: number;
}

// With the node engine, the daemons under test run the data path in proxy workers, its more
// involved mode, unless a test's config says otherwise (zero-downtime runs it in the daemon's
// process too). `workers` is a setting of the node engine only.
export const TEST_WORKERS = 2;

export interface StartOptions {
  // The config file's content; `port` and `controlPort` are filled in with free ports.
  config: Record<string, unknown>;
  // The data path (default node): written into the config only when it is another one, so
  // that the node engine's tests run the config most users have, with no `engine` key.
  engine?: Engine;
  // Extra files to write in the daemon's directory (its cwd) before it starts.
  files?: Record<string, string>;
  // The marker of the test's fixture processes: killed at cleanup if anything is left.
  marker?: string;
  // Wait until a generation of the default service is active (default true).
  waitUntilActive?: boolean;
  startTimeout?: number;
  // Run in this directory instead of a fresh one (a restart: the state file is kept). The
  // directory is then not removed at cleanup: whoever created it does that.
  dir?: string;
  // Listen on this proxy port rather than a free one (to show that it is free again).
  proxyPort?: number;
  // Options for the daemon's node, before its script (e.g. `--import` of a module that injects a bug).
  nodeArgs?: string[];
  // The daemon's open-file limit (`ulimit -n`, soft and hard), to show what it does when short of descriptors.
  fdLimit?: number;
  // Variables added to the daemon's environment.
  env?: Record<string, string>;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Daemon {
  // Everything the daemon printed, stdout and stderr (prefixed `[stderr] `), line by line,
  // and when the test received each line (Date.now()).
  readonly output: string[] = [];
  readonly receivedAt: number[] = [];
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;

  constructor(
    readonly child: ChildProcess,
    readonly dir: string,
    readonly proxyPort: number,
    readonly controlPort: number,
    // What it was started with, so that a restart runs the same data path.
    readonly engine: Engine,
    // Sent with the helpers' own control requests: the token, when the config sets one.
    readonly controlHeaders: Record<string, string> = {},
  ) {
    for (const [name, stream] of [['out', child.stdout], ['err', child.stderr]] as const) {
      let partial = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          this.output.push(name === 'err' ? `[stderr] ${line}` : line);
          this.receivedAt.push(Date.now());
        }
      });
    }
    this.exited = once(child, 'exit').then(([code, signal]) => {
      this.exit = { code: code as number | null, signal: signal as NodeJS.Signals | null };
      return this.exit;
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  log(): string {
    return this.output.join('\n');
  }

  async status(): Promise<DaemonStatus> {
    const response = await request(this.controlPort, '/status', { timeout: 5000, headers: this.controlHeaders });
    if (response.status !== 200) throw new Error(`GET /status answered ${response.status}: ${response.body}`);
    return JSON.parse(response.body) as DaemonStatus;
  }

  async service(name = 'default'): Promise<ServiceStatus> {
    const status = await this.status();
    const service = status.services.find((candidate) => candidate.name === name);
    if (service === undefined) throw new Error(`no ${name} service in /status: ${JSON.stringify(status)}`);
    return service;
  }

  // The active generation of `service`, waiting (bounded) for one to exist, optionally newer than `after`.
  async waitForActive({ after = 0, timeout = 15000, service: name = 'default' } = {}): Promise<GenerationStatus> {
    return waitFor(
      async () => {
        this.assertRunning();
        const service = await this.service(name);
        if (service.activeGeneration === null || service.activeGeneration <= after) return undefined;
        return service.generations.find((generation) => generation.id === service.activeGeneration && generation.state === 'active');
      },
      { timeout, what: `an active generation of ${name} newer than #${after}` },
    );
  }

  // Until `count` requests are in flight on the active generation of `service`: the ones the
  // test just sent have reached the app.
  async waitForInFlight({ count = 1, timeout = 5000, service: name = 'default' } = {}): Promise<void> {
    await waitFor(
      async () => {
        this.assertRunning();
        const service = await this.service(name);
        return service.generations.find((generation) => generation.id === service.activeGeneration)?.inFlight === count;
      },
      { timeout, what: `${count} request(s) in flight on the active generation of ${name}` },
    );
  }

  // POST /redeploy, or POST /services/NAME/redeploy with `service`.
  async redeploy({ wait = true, timeout = 60000, service }: { wait?: boolean; timeout?: number; service?: string } = {}): Promise<RedeployAnswer> {
    const path = `${service === undefined ? '' : `/services/${encodeURIComponent(service)}`}/redeploy${wait ? '' : '?wait=0'}`;
    const response: Response = await request(this.controlPort, path, { method: 'POST', body: '', timeout, headers: this.controlHeaders });
    let body: RedeployAnswer['body'];
    try {
      body = JSON.parse(response.body) as RedeployAnswer['body'];
    } catch {
      throw new Error(`POST ${path} answered ${response.status} with a body that is not JSON: ${response.body}`);
    }
    return { status: response.status, body, elapsedMs: response.elapsedMs };
  }

  signal(signal: NodeJS.Signals): void {
    this.assertRunning();
    this.child.kill(signal);
  }

  async waitForLog(pattern: RegExp, timeout = 10000): Promise<string> {
    return this.output[await this.waitForLogIndex(pattern, timeout)] ?? '';
  }

  // When the test received the first line matching `pattern` (Date.now()), waiting for it.
  async waitForLogTime(pattern: RegExp, timeout = 10000): Promise<number> {
    return this.receivedAt[await this.waitForLogIndex(pattern, timeout)] ?? 0;
  }

  private async waitForLogIndex(pattern: RegExp, timeout: number): Promise<number> {
    const index = await waitFor(
      () => {
        const found = this.output.findIndex((line) => pattern.test(line));
        return found === -1 ? undefined : { found };
      },
      { timeout, what: `a daemon log line matching ${pattern}` },
    );
    return index.found;
  }

  // SIGTERM, then the daemon must exit by itself within `timeout`; if it hangs it is
  // SIGKILLed and this throws.
  async stop(timeout = 30000): Promise<Exit> {
    if (this.exit !== undefined) return this.exit;
    this.child.kill('SIGTERM');
    const exit = await Promise.race([this.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), timeout).unref())]);
    if (exit === undefined) {
      this.child.kill('SIGKILL');
      await this.exited;
      throw new Error(`the daemon did not exit within ${timeout} ms of SIGTERM`);
    }
    return exit;
  }

  private assertRunning(): void {
    if (this.exit !== undefined) throw new StopWaiting(`the daemon exited (code ${this.exit.code}, signal ${this.exit.signal})`);
  }
}

// Starts `rainbowd run` in a fresh directory and registers its cleanup on `t`: the daemon
// is stopped (killed if it hangs), the test's marked processes are killed, the directory is
// removed, and the daemon's output is printed if the test failed.
export async function startDaemon(t: TestContext, { config, engine = 'node', files = {}, marker, waitUntilActive = true, startTimeout = 30_000, dir: givenDir, proxyPort: givenPort, nodeArgs = [], fdLimit, env }: StartOptions): Promise<Daemon> {
  const dir = givenDir ?? mkdtempSync(join(tmpdir(), 'rainbowd-test-'));
  const proxyPort = givenPort ?? (await getPort({ host: '127.0.0.1' }));
  const controlPort = await getPort({ host: '127.0.0.1', exclude: [proxyPort] });
  const configPath = join(dir, 'rainbow.conf.json');
  const engineKeys = engine === 'node' ? { workers: TEST_WORKERS } : { engine };
  writeFileSync(configPath, JSON.stringify({ ...engineKeys, ...config, port: proxyPort, controlPort }, null, 2));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);

  const command = [process.execPath, ...nodeArgs, daemonBin, 'run', '--config', configPath];
  // exec: the limit is set in a shell, which then becomes the daemon, so its pid is the daemon's.
  const [file, ...args] = fdLimit === undefined ? command : ['sh', '-c', `ulimit -n ${fdLimit} && exec "$0" "$@"`, ...command];
  const child = spawn(file!, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const controlHeaders: Record<string, string> = typeof config.controlToken === 'string' ? { authorization: `Bearer ${config.controlToken}` } : {};
  const daemon = new Daemon(child, dir, proxyPort, controlPort, engine, controlHeaders);

  t.after(async () => {
    if (daemon.exit === undefined) {
      child.kill('SIGTERM');
      const exited = await Promise.race([daemon.exited, new Promise((resolve) => setTimeout(resolve, 15000).unref())]);
      if (exited === undefined) {
        child.kill('SIGKILL');
        await daemon.exited;
      }
    }
    if (marker !== undefined) killMarkedProcesses(marker);
    removeRuntimeDirs(daemon.pid); // left behind by a daemon a test killed
    killLeftHaproxy(dir); // HAProxy outlives a daemon a test killed
    if (!(t as TestContext & { passed?: boolean }).passed) {
      t.diagnostic(`rainbowd output (${dir}):`);
      for (const line of daemon.output) t.diagnostic(`  ${line}`);
    }
    // A daemon that took over from this one (rainbowd upgrade) may still write in the directory:
    // a failure here must not skip the test's later cleanup hooks, which stop that daemon.
    if (givenDir === undefined) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch (error) {
        t.diagnostic(`${dir} not removed: ${(error as Error).message}`);
      }
    }
  });

  await waitFor(
    async () => {
      if (daemon.exit !== undefined) throw new StopWaiting(`the daemon exited at start (code ${daemon.exit.code}, signal ${daemon.exit.signal})`);
      return (await request(controlPort, '/status', { timeout: 1000, headers: controlHeaders })).status === 200;
    },
    { timeout: startTimeout, what: 'the control API to answer' },
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n--- rainbowd output ---\n${daemon.log()}`);
  });
  if (waitUntilActive) {
    await daemon.waitForActive({ timeout: startTimeout }).catch((error: Error) => {
      throw new Error(`${error.message}\n--- rainbowd output ---\n${daemon.log()}`);
    });
  }
  return daemon;
}

export function writeFile(daemon: Daemon, name: string, content: string): void {
  writeFileSync(join(daemon.dir, name), content);
}

export interface AppDaemonOptions {
  // Names the test's marker, for people reading `ps`.
  name: string;
  // Extra fixture arguments, e.g. `--on-sigterm exit` or `--health "$(cat health.txt)"`.
  appArgs?: string;
  pidfile?: boolean;
  // Config keys on top of `run` and `healthCheckPath: "/health"`.
  config?: Record<string, unknown>;
  engine?: Engine;
  files?: Record<string, string>;
  waitUntilActive?: boolean;
  nodeArgs?: string[];
  fdLimit?: number;
  env?: Record<string, string>;
}

// The common case: rainbowd supervising test/fixtures/app.mjs, health-checked on /health.
export async function startAppDaemon(t: TestContext, { name, appArgs = '', pidfile = true, config = {}, engine, files, waitUntilActive, nodeArgs, fdLimit, env }: AppDaemonOptions): Promise<{ daemon: Daemon; marker: string }> {
  const marker = uniqueMarker(name);
  const run = appRunLine(marker, appArgs, { pidfile });
  const daemon = await startDaemon(t, { marker, engine, files, waitUntilActive, nodeArgs, fdLimit, env, config: { run, healthCheckPath: '/health', ...config } });
  return { daemon, marker };
}
