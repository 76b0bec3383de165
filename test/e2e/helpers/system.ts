// Helpers for end-to-end tests that drive real third-party programs (gunicorn, nginx, wrk).
import { type ChildProcess } from 'node:child_process';
import { readFile, readdir, readlink } from 'node:fs/promises';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export { findExecutable } from '../../helpers/executables.js';

export interface HttpResult {
  status: number;
  body: string;
}

// One request on a fresh connection (no agent), so nothing keeps the test process alive.
export function request(method: string, url: string, timeoutMs: number): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

// Polls `probe` (its errors count as "not yet") until it returns true. Throws with
// `describe()` after `timeoutMs`, or at once when `giveUp()` returns a reason.
export async function waitUntil(
  probe: () => Promise<boolean>,
  options: { timeoutMs: number; describe: () => string; giveUp?: () => string | undefined },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    const reason = options.giveUp?.();
    if (reason) throw new Error(`${reason}: ${options.describe()}`);
    await sleep(100);
  }
  throw new Error(`timed out after ${options.timeoutMs} ms: ${options.describe()}`);
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

// Resolves with the exit code (or signal name) of `child`, or undefined after `timeoutMs`.
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<number | string | undefined> {
  if (hasExited(child)) return Promise.resolve(child.exitCode ?? child.signalCode ?? undefined);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal ?? undefined);
    });
  });
}

// SIGTERM, then SIGKILL if `child` is still there after `graceMs`.
export async function stopChild(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!child || hasExited(child)) return;
  child.kill('SIGTERM');
  if ((await waitForExit(child, graceMs)) !== undefined) return;
  child.kill('SIGKILL');
  await waitForExit(child, 2000);
}

export interface LiveProcess {
  pid: number;
  cmdline: string;
  cwd: string;
}

// Live (non-zombie) processes whose command line or working directory mentions `fragment`.
export async function processesMentioning(fragment: string): Promise<LiveProcess[]> {
  const found: LiveProcess[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ').trim();
      const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
      if (cmdline.includes(fragment) || cwd === fragment || cwd.startsWith(`${fragment}/`)) found.push({ pid, cmdline, cwd });
    } catch {
      // exited while we looked
    }
  }
  return found;
}

// Keeps the last `limit` lines a child wrote, for failure messages.
export class OutputTail {
  private readonly lines: string[] = [];
  private partial = '';

  constructor(private readonly limit = 60) {}

  capture(stream: NodeJS.ReadableStream | null, prefix: string): void {
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop() ?? '';
      for (const line of parts) this.push(`${prefix}${line}`);
    });
  }

  toString(): string {
    return [...this.lines, this.partial].filter(Boolean).join('\n');
  }

  private push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.limit) this.lines.shift();
  }
}

export interface WrkSummary {
  requests: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number } | undefined;
  non2xx3xx: number | undefined;
}

// Parses wrk 4's summary. wrk prints the "Socket errors" and "Non-2xx or 3xx responses"
// lines only when there are some.
export function parseWrk(output: string): WrkSummary {
  const requests = /(\d+) requests in /.exec(output);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  return {
    requests: requests ? Number(requests[1]) : 0,
    socketErrors: errors
      ? { connect: Number(errors[1]), read: Number(errors[2]), write: Number(errors[3]), timeout: Number(errors[4]) }
      : undefined,
    non2xx3xx: non2xx ? Number(non2xx[1]) : undefined,
  };
}
