import http from 'node:http';
import { header, request } from './http.js';
import { StopWaiting, waitFor } from './wait.js';

export interface LoadOptions {
  port: number;
  path?: string;
  // Clients that each keep one connection open and send requests on it back to back.
  keepAliveClients: number;
  // Clients that open a new connection for every request.
  newConnectionClients: number;
  requestTimeout?: number;
  // The load stops by itself after this long even if nobody calls stop().
  maxDuration: number;
  // Sent as the Host header, to load one service of several.
  host?: string;
  headers?: http.OutgoingHttpHeaders;
}

export interface LoadResult {
  total: number;
  byStatus: Record<number, number>;
  // Transport errors (reset, refused, timeout...) by message.
  errors: Record<string, number>;
  errorCount: number;
  // A few bodies of non-2xx responses, for the failure message.
  badResponses: string[];
  generations: string[];
  // Responses by their `x-service` header ('' when absent).
  byService: Record<string, number>;
  // The longest time one response took.
  maxElapsedMs: number;
  durationMs: number;
}

export interface Load {
  stop(): Promise<LoadResult>;
  // Counts so far, while the load runs.
  snapshot(): LoadResult;
  // Resolves once `count` more requests have ended (answered or failed) than when it was
  // called: the load is under way before what a test does to it, and goes on after it.
  waitForRequests(count?: number, timeout?: number): Promise<void>;
}

export function startLoad({ port, path = '/', keepAliveClients, newConnectionClients, requestTimeout = 5000, maxDuration, host, headers: extraHeaders }: LoadOptions): Load {
  const started = Date.now();
  const deadline = started + maxDuration;
  let stopped = false;
  const result: LoadResult = { total: 0, byStatus: {}, errors: {}, errorCount: 0, badResponses: [], generations: [], byService: {}, maxElapsedMs: 0, durationMs: 0 };
  const generations = new Set<string>();
  const headers = { ...extraHeaders, ...(host === undefined ? {} : { host }) };

  async function client(agent: http.Agent | false): Promise<void> {
    while (!stopped && Date.now() < deadline) {
      try {
        const response = await request(port, path, { agent, timeout: requestTimeout, headers });
        result.total++;
        result.maxElapsedMs = Math.max(result.maxElapsedMs, response.elapsedMs);
        const service = header(response, 'x-service') ?? '';
        result.byService[service] = (result.byService[service] ?? 0) + 1;
        result.byStatus[response.status] = (result.byStatus[response.status] ?? 0) + 1;
        if (response.status < 200 || response.status > 299) {
          if (result.badResponses.length < 5) result.badResponses.push(`${response.status} ${response.body.slice(0, 200)}`);
        }
        const generation = header(response, 'x-generation');
        if (generation !== undefined) generations.add(generation);
      } catch (error) {
        result.total++;
        result.errorCount++;
        const message = error instanceof Error ? `${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}` : String(error);
        result.errors[message] = (result.errors[message] ?? 0) + 1;
        // Do not spin when nothing is listening.
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  }

  const agents = Array.from({ length: keepAliveClients }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const clients = [...agents.map((agent) => client(agent)), ...Array.from({ length: newConnectionClients }, () => client(false))];
  const finished = Promise.all(clients).then(() => {
    for (const agent of agents) agent.destroy();
    return snapshot();
  });

  function snapshot(): LoadResult {
    return { ...result, byStatus: { ...result.byStatus }, errors: { ...result.errors }, byService: { ...result.byService }, generations: [...generations].sort((a, b) => Number(a) - Number(b) || a.localeCompare(b)), durationMs: Date.now() - started };
  }

  return {
    stop() {
      stopped = true;
      return finished;
    },
    snapshot,
    async waitForRequests(count = 100, timeout = 10_000) {
      const target = result.total + count;
      const probe = () => {
        if (result.total >= target) return true;
        if (stopped || Date.now() >= deadline) throw new StopWaiting(`the load ended after ${result.total} requests, before ${target}`);
        return false;
      };
      await waitFor(probe, { timeout, interval: 10, what: `${count} more requests of the load after the first ${result.total}` });
    },
  };
}

export function describeLoad(result: LoadResult): string {
  return JSON.stringify(result, null, 2);
}
