// The load: wrk, started, waited for (or interrupted) and its report parsed.
import path from 'node:path';
import type { ProcessRegistry } from './processes.js';
import { within } from './processes.js';

export interface LoadSpec {
  threads: number;
  connections: number;
  durationSeconds: number;
}

export interface SocketErrors {
  connect: number;
  read: number;
  write: number;
  timeout: number;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p75: number; p90: number; p99: number; max: number };
  socketErrors: SocketErrors;
  /** wrk's "Non-2xx or 3xx responses". */
  badStatus: number;
}

export function describeLoad(spec: LoadSpec): string {
  return `wrk -t${spec.threads} -c${spec.connections} -d${spec.durationSeconds}s --latency`;
}

export function errorCount(result: WrkResult): number {
  const { connect, read, write, timeout } = result.socketErrors;
  return connect + read + write + timeout + result.badStatus;
}

export interface RunningLoad {
  /** SIGINT: wrk stops and prints its report for the time it ran. */
  interrupt(): Promise<WrkResult>;
  /** Kills wrk, for when its report is no longer wanted (a failure elsewhere). */
  abort(): Promise<void>;
  finished: Promise<WrkResult>;
}

/** Starts wrk on `url`; `finished` rejects if wrk is not done `slackSeconds` after its duration. */
export function startWrk(registry: ProcessRegistry, wrk: string, url: string, spec: LoadSpec, logDirectory: string, slackSeconds = 30): RunningLoad {
  const lines: string[] = [];
  const launched = registry.launch('wrk', wrk, ['-t', String(spec.threads), '-c', String(spec.connections), '-d', `${spec.durationSeconds}s`, '--latency', url], {
    cwd: logDirectory,
    logFile: path.join(logDirectory, 'wrk.log'),
    onLine: (line) => lines.push(line),
  });
  const report = async (waitMs: number): Promise<WrkResult> => {
    if (!(await within(launched.exited, waitMs))) {
      await launched.stop(1000, 'SIGKILL');
      throw new Error(`wrk on ${url} did not finish within ${waitMs} ms; its output:\n${launched.outputTail()}`);
    }
    const text = lines.join('\n');
    try {
      return parseWrk(text);
    } catch (error) {
      throw new Error(`${(error as Error).message}; ${launched.describeExit()}, output:\n${text}\n${launched.outputTail()}`);
    }
  };
  const finished = report((spec.durationSeconds + slackSeconds) * 1000);
  finished.catch(() => undefined); // the caller may use interrupt() instead
  return {
    finished,
    interrupt: () => {
      launched.signal('SIGINT');
      return report(10_000);
    },
    abort: () => launched.stop(2000, 'SIGKILL'),
  };
}

export function runWrk(registry: ProcessRegistry, wrk: string, url: string, spec: LoadSpec, logDirectory: string): Promise<WrkResult> {
  return startWrk(registry, wrk, url, spec, logDirectory).finished;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseWrk(text: string): WrkResult {
  const number = (pattern: RegExp, what: string): number => {
    const match = pattern.exec(text);
    if (!match) throw new Error(`no ${what} in wrk's report`);
    return Number(match[1]);
  };
  const duration = (pattern: RegExp, what: string): number => {
    const match = pattern.exec(text);
    if (!match) throw new Error(`no ${what} in wrk's report`);
    return Number(match[1]) * UNIT_MS[match[2]!]!;
  };
  const value = String.raw`([\d.]+)(us|ms|s|m|h)\b`;
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const badStatus = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    requests: number(/(\d+) requests in/, 'request count'),
    seconds: duration(new RegExp(String.raw`requests in ${value}`), 'duration') / 1000,
    requestsPerSecond: number(/Requests\/sec:\s+([\d.]+)/, 'Requests/sec'),
    latencyMs: {
      p50: duration(new RegExp(String.raw`^\s+50%\s+${value}`, 'm'), '50th percentile'),
      p75: duration(new RegExp(String.raw`^\s+75%\s+${value}`, 'm'), '75th percentile'),
      p90: duration(new RegExp(String.raw`^\s+90%\s+${value}`, 'm'), '90th percentile'),
      p99: duration(new RegExp(String.raw`^\s+99%\s+${value}`, 'm'), '99th percentile'),
      max: duration(new RegExp(String.raw`Latency\s+\S+\s+\S+\s+${value}`), 'maximum latency'),
    },
    socketErrors: errors
      ? { connect: Number(errors[1]), read: Number(errors[2]), write: Number(errors[3]), timeout: Number(errors[4]) }
      : { connect: 0, read: 0, write: 0, timeout: 0 },
    badStatus: badStatus ? Number(badStatus[1]) : 0,
  };
}
