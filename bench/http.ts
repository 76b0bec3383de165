// The few HTTP calls the benchmark itself makes: readiness probes and the control API.
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Launched } from './processes.js';

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One request on a fresh connection, bounded by `timeoutMs` from start to end of body. */
export function httpRequest(method: string, url: string, timeoutMs: number): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        clearTimeout(timer);
        resolve({ status: response.statusCode ?? 0, body });
      });
      response.on('error', reject);
    });
    const timer = setTimeout(() => request.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)), timeoutMs);
    request.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    request.end();
  });
}

export async function getJson<T>(url: string, timeoutMs = 5000): Promise<T> {
  const answer = await httpRequest('GET', url, timeoutMs);
  if (answer.status !== 200) throw new Error(`GET ${url} answered ${answer.status}: ${answer.body.slice(0, 200)}`);
  return JSON.parse(answer.body) as T;
}

/**
 * Polls `url` until it answers 2xx. Fails after `timeoutMs`, or at once when one of `watched`
 * exits, quoting that process's last output lines.
 */
export async function waitForHttp(url: string, what: string, watched: Launched[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    const dead = watched.find((launched) => launched.hasExited);
    if (dead) throw new Error(`${what}: ${dead.describeExit()} before ${url} answered; its last output:\n${dead.outputTail()}`);
    try {
      const answer = await httpRequest('GET', url, 2000);
      if (answer.status >= 200 && answer.status < 300) return;
      last = `answered ${answer.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() >= deadline) {
      const outputs = watched.map((launched) => `--- ${launched.name} ---\n${launched.outputTail()}`).join('\n');
      throw new Error(`${what}: ${url} not ready after ${timeoutMs} ms (last: ${last})\n${outputs}`);
    }
    await sleep(50);
  }
}
