import http from 'node:http';
import { formatDuration } from './duration.js';
import { deployFailed } from './errors.js';
import type { HealthCheckConfig } from './config.js';

// Is the new generation ready? GET the health path until it answers 2xx/3xx.

export interface HealthTarget {
  host: string;
  port: number;
}

/** `status`: what the app answered, when it answered. */
export type ProbeResult = { healthy: true; status: number } | { healthy: false; problem: string; timedOut: boolean; status?: number };

export function probe(target: HealthTarget, check: HealthCheckConfig, signal?: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const request = http.get(
      { host: target.host, port: target.port, path: check.path, agent: false, timeout: check.timeoutMs, signal, headers: { 'user-agent': 'rainbowd-health-check' } },
      (response) => {
        response.resume();
        const status = response.statusCode ?? 0;
        resolve(
          status >= 200 && status < 400
            ? { healthy: true, status }
            : { healthy: false, problem: `GET ${check.path} answered ${status}`, timedOut: false, status },
        );
      },
    );
    let timedOut = false;
    request.on('timeout', () => {
      timedOut = true;
      request.destroy(new Error(`no answer within ${formatDuration(check.timeoutMs)}`));
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      const problem = error.code === 'ECONNREFUSED' ? 'connection refused' : error.message;
      resolve({ healthy: false, problem: `GET ${check.path}: ${problem}`, timedOut });
    });
  });
}

/**
 * Polls until healthy. Rejects with a DEPLOY_FAILED error when `deadlineMs` passes, or after
 * `check.failAfter` 5xx answers in a row, and with the abort reason as soon as `signal` aborts
 * (the process exited, or rainbowd is shutting down). `onCheck` hears each check's outcome.
 */
export async function waitUntilHealthy(
  target: HealthTarget,
  check: HealthCheckConfig,
  deadlineMs: number,
  signal: AbortSignal,
  onCheck: (outcome: string) => void = () => undefined,
): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let last: string | null = null;
  let serverErrors = 0;
  for (;;) {
    signal.throwIfAborted();
    const budget = deadline - Date.now();
    const result = await probe(target, { ...check, timeoutMs: Math.max(1, Math.min(check.timeoutMs, budget)) }, signal);
    signal.throwIfAborted();
    if (result.healthy) return;
    // A probe the deadline cut short says nothing new: keep the reason seen before it.
    const cutShort = result.timedOut && budget < check.timeoutMs;
    if (!cutShort || last === null) last = result.problem;
    onCheck(last);
    serverErrors = result.status !== undefined && result.status >= 500 ? serverErrors + 1 : 0;
    if (check.failAfter !== null && serverErrors >= check.failAfter) {
      throw deployFailed(`${result.problem} ${serverErrors} times in a row (healthCheck.failAfter ${check.failAfter})`);
    }
    if (Date.now() + check.intervalMs >= deadline) {
      throw deployFailed(`not healthy after ${formatDuration(deadlineMs)} (last check: ${last})`);
    }
    await sleep(check.intervalMs, signal);
  }
}

/** The legacy `warmupTime` mode: wait, then assume the app is ready. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
