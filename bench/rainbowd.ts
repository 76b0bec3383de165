// rainbowd under test: one daemon with its config, runtime directory and log in a directory
// of the benchmark's workspace, on free ports, driven through its control API.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import getPort from 'get-port';
import type { DaemonStatus, DeployResult, ErrorBody } from '../lib/api.js';
import { getJson, httpRequest, waitForHttp } from './http.js';
import { stopIfFails, type Launched, type ProcessRegistry } from './processes.js';

/** What a redeploy answers: its result, or (refused) the error. */
export type DeployAnswer = DeployResult & { error?: ErrorBody['error'] };

/** One line of the daemon's stdout, as it was read. */
export interface LogLine {
  text: string;
  /** When the benchmark read it. */
  readAt: number;
}

// The daemon logs lifecycle events only, so a whole benchmark's log stays small; the cap
// only guards against a flood of upstream errors.
const LOG_LINE_LIMIT = 100_000;
const STOP_GRACE_MS = 20_000;

export interface RainbowdSetup {
  workers?: number;
  engine?: 'node' | 'haproxy';
}

export class Rainbowd {
  private constructor(
    readonly directory: string,
    readonly proxyPort: number,
    readonly controlPort: number,
    readonly process: Launched,
    /** Its stdout so far, one entry per line. */
    readonly log: LogLine[],
  ) {}

  /** `workers`: the proxy worker processes, `engine` the data path; unset, rainbowd's defaults for this machine. */
  static async start(registry: ProcessRegistry, root: string, directory: string, runLine: string, { workers, engine }: RainbowdSetup = {}): Promise<Rainbowd> {
    const runtime = path.join(directory, 'runtime');
    await mkdir(runtime, { recursive: true });
    const proxyPort = await getPort({ host: '127.0.0.1' });
    const controlPort = await getPort({ host: '127.0.0.1', exclude: [proxyPort] });
    const configFile = path.join(directory, 'rainbow.conf.json');
    const config = { run: runLine, port: proxyPort, controlPort, healthCheckPath: '/', drainTimeout: '5s', ...(workers === undefined ? {} : { workers }), ...(engine === undefined ? {} : { engine }) };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const log: LogLine[] = [];
    const launched = registry.launch('rainbowd', process.execPath, [path.join(root, 'bin', 'rainbowd.js'), 'run', '--config', configFile], {
      cwd: directory,
      logFile: path.join(directory, 'rainbowd.log'),
      // Its runtime directory (pidfiles) in the workspace; ports from the file, not from the
      // developer's environment.
      env: { ...withoutRainbowdVariables(process.env), TMPDIR: runtime },
      onLine: (text) => {
        if (log.length < LOG_LINE_LIMIT) log.push({ text, readAt: Date.now() });
      },
    });
    const daemon = new Rainbowd(directory, proxyPort, controlPort, launched, log);
    await stopIfFails(launched, async () => {
      await waitForHttp(`${daemon.controlUrl}/status`, 'rainbowd control API', [launched]);
      await waitForHttp(daemon.proxyUrl, 'the app behind rainbowd', [launched]);
    }, STOP_GRACE_MS);
    return daemon;
  }

  get proxyUrl(): string {
    return `http://127.0.0.1:${this.proxyPort}/`;
  }

  get controlUrl(): string {
    return `http://127.0.0.1:${this.controlPort}`;
  }

  status(): Promise<DaemonStatus> {
    return getJson<DaemonStatus>(`${this.controlUrl}/status`);
  }

  /** POST /redeploy, which answers when the deploy is over (bounded by `timeoutMs`). */
  async redeploy(timeoutMs = 60_000): Promise<DeployAnswer> {
    const answer = await httpRequest('POST', `${this.controlUrl}/redeploy`, timeoutMs);
    const body = JSON.parse(answer.body) as DeployAnswer;
    if (answer.status !== 200 || !body.ok) {
      throw new Error(`redeploy refused (${answer.status}): ${body.error ? `${body.error.code}: ${body.error.message}` : answer.body}`);
    }
    return body;
  }

  /** Its config file changed (rainbowd reloads it when it changes); resolves once the log says it reloaded. */
  async reload(changes: Record<string, unknown>): Promise<void> {
    const file = path.join(this.directory, 'rainbow.conf.json');
    const seen = this.log.length;
    await writeFile(file, `${JSON.stringify({ ...(JSON.parse(await readFile(file, 'utf8')) as object), ...changes }, null, 2)}\n`);
    for (const deadline = Date.now() + 10_000; !this.log.slice(seen).some((line) => /\breloaded\b/.test(line.text)); ) {
      if (Date.now() > deadline) throw new Error(`rainbowd did not reload its config within 10 s (${this.directory})`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** SIGTERM: rainbowd drains and stops its app, then exits. */
  stop(): Promise<void> {
    return this.process.stop(STOP_GRACE_MS);
  }
}

function withoutRainbowdVariables(environment: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...environment };
  for (const name of Object.keys(copy)) {
    if (name.startsWith('RAINBOWD_') || name === 'HTTP_PORT' || name === 'CONTROL_PORT') copy[name] = undefined;
  }
  return copy;
}
