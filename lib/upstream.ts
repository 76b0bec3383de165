import http from 'node:http';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import type { Pool } from 'undici';
import { closesConnection } from './forward-headers.js';
import type { UpstreamAddress } from './route-table.js';

// One generation as the data path sees it: where to send requests, a pool of kept-alive
// connections of its own, and what is in flight to it, so a deploy can wait for exactly that
// to finish.

// An idle connection is reused for as long as the app's `Keep-Alive: timeout=` says, less
// this margin, so we close it before the app does and never write a request onto a
// connection the app is closing (a POST there cannot be retried): Node's apps say 5 s.
const KEEP_ALIVE_MARGIN_MS = 1000;
// For apps that give no hint (gunicorn closes idle connections after its `keepalive`, 2 s by
// default): below that.
const KEEP_ALIVE_WITHOUT_HINT_MS = 1000;
// This many answers in a row with `Connection: close` say the app closes every connection
// (gunicorn's sync workers); a keep-alive app's occasional close does not.
const CLOSING_ANSWERS_TO_SWITCH = 16;

/**
 * How an upstream reaches its app: through a pool of kept-alive connections (undici), or on a
 * connection of its own for each request (node:http's client), for a proxy that forwards
 * too rarely to keep any: the haproxy engine's fallback, which then never loads undici.
 */
export type Connections = 'pooled' | 'one per request';

// undici's Pool alone: its index also loads fetch, WebSocket, its cache and mock agents, which
// rainbowd never uses (9 MB more RSS). undici has no `exports` map, so the path is allowed.
// Loaded by the first pooled upstream, at a deploy, not on a request (it takes ~50 ms).
let poolClass: typeof Pool | undefined;
const loadPool = () => (poolClass ??= createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof Pool);

export class Upstream {
  readonly key: number;
  /** http-proxy's target for WebSocket tunnels, built once so the request path does no parsing. */
  readonly proxyTarget: { protocol: 'http:'; host: string; port: number };
  /** Kept-alive connections to the app, closed when the generation is released; none with 'one per request'. */
  private readonly pool: Pool | null;
  /**
   * What the next request is forwarded with: the pool, or node:http's client once the app
   * has shown it closes every connection (from the start with 'one per request'), which
   * opens a connection for about half of undici's CPU (agent-request.ts) and never keeps one alive.
   */
  client: Pool | http.Agent;
  inFlight = 0;
  private closingAnswers = 0;
  private readonly upgraded = new Set<Duplex>();
  private idleWaiters: Array<() => void> = [];

  /**
   * `maxConnections` is the most client connections this process takes (connection-limit.ts):
   * each has at most one request in flight, so a request never queues for a connection to
   * the app, and idle ones can never take more descriptors than the clients could.
   */
  constructor(address: UpstreamAddress, maxConnections: number | null, connections: Connections = 'pooled') {
    this.key = address.key;
    this.proxyTarget = { protocol: 'http:', host: address.host, port: address.port };
    if (connections === 'one per request') {
      this.pool = null;
      this.client = new http.Agent({ keepAlive: false });
      return;
    }
    const host = address.host.includes(':') ? `[${address.host}]` : address.host;
    this.pool = new (loadPool())(`http://${host}:${address.port}`, {
      connections: maxConnections,
      pipelining: 1,
      keepAliveTimeout: KEEP_ALIVE_WITHOUT_HINT_MS,
      keepAliveTimeoutThreshold: KEEP_ALIVE_MARGIN_MS,
      // No time limit on an answer, as before: a drain bounds the requests that outlive a deploy.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    this.client = this.pool;
  }

  /** Counts the app's answers that close their connection (raw fields, from undici), and switches `client` to node:http's past CLOSING_ANSWERS_TO_SWITCH in a row. */
  answered(raw: Buffer[]): void {
    if (this.client !== this.pool) return;
    if (!closesConnection(raw)) this.closingAnswers = 0;
    else if (++this.closingAnswers >= CLOSING_ANSWERS_TO_SWITCH) this.client = new http.Agent({ keepAlive: false });
  }

  requestStarted(): void {
    this.inFlight++;
  }

  requestFinished(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** WebSockets and other upgraded connections count as in flight until they close. */
  trackUpgrade(socket: Duplex): void {
    this.requestStarted();
    this.upgraded.add(socket);
    socket.once('close', () => {
      this.upgraded.delete(socket);
      this.requestFinished();
    });
  }

  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Closes every socket to the generation; returns how many requests and connections that cut. */
  release(): number {
    const cut = this.inFlight;
    for (const socket of this.upgraded) socket.destroy();
    // Requests still in flight fail, and their engine cuts their clients' answers.
    void this.pool?.destroy();
    if (this.client instanceof http.Agent) this.client.destroy();
    return cut;
  }
}
