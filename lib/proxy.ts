import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { openFileLimit, proxyConnectionLimit } from './connection-limit.js';
import type { Logger } from './log.js';
import { PauseController } from './pause-controller.js';
import { ProxyEngine, UNFORWARDABLE } from './proxy-engine.js';
import type { DataPath, RouteTable, ServiceRoute, UpstreamAddress } from './route-table.js';
import { Router, stripPrefix } from './router.js';
import { Upstream } from './upstream.js';

// What happens to a request: router -> service -> its active generation's upstream ->
// forwarded, and counted as in flight on that upstream until the response closes, so a
// deploy can drain it exactly. The same code runs in the daemon or in each proxy worker;
// it knows the services only from the route table the supervisor publishes.

/** A service as the data path holds it: kept across table updates, so paused requests see the switch. */
interface RoutedService {
  route: ServiceRoute;
  pause: PauseController;
  upstream: Upstream | null;
}

export type EventLog = Pick<Logger, 'event'>;

// Idle and slow clients hold a descriptor each; these bound how many and for how long (see
// "Limits" in the README). The headers of a request must arrive within HEADERS_TIMEOUT_MS of
// its first byte (of the connection's start, for its first request): 10 s, as HAProxy's
// usual `timeout http-request`, is ample for nginx, which sends them at once. The time a
// kept-alive connection waits between requests is keepAliveTimeout's, not this one's.
const HEADERS_TIMEOUT_MS = 10_000;
// How often Node looks for connections past their header timeout (its default is 30 s).
const TIMEOUT_CHECK_INTERVAL_MS = 1000;
// While connections are refused, one log line per this interval says how many.
const REFUSED_REPORT_INTERVAL_MS = 10_000;

export class Proxy implements DataPath {
  readonly server: http.Server;
  private readonly engine: ProxyEngine;
  private readonly router = new Router<RoutedService>();
  private readonly services = new Map<string, RoutedService>();
  /** Every upstream not yet released: the active ones and those still draining. */
  private readonly upstreams = new Map<number, Upstream>();
  private trustedProxies = new Set<string>();
  private closing = false;
  private readonly fdLimit = openFileLimit();
  private readonly maxConnections = proxyConnectionLimit(this.fdLimit);
  private openConnections = 0;
  private refusedConnections = 0;

  constructor(private readonly log: EventLog) {
    this.engine = new ProxyEngine((response, error) => this.answerError(response, error));
    this.server = http.createServer({
      // Longer than nginx's upstream keepalive_timeout (60 s), so nginx closes idle
      // connections first and never writes a request onto one we are closing.
      keepAliveTimeout: 65_000,
      headersTimeout: HEADERS_TIMEOUT_MS,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      requestTimeout: 0,
    });
    // Not server.maxConnections: in a proxy worker, node:cluster hands a connection the
    // worker turns down to another worker, and back, for as long as all of them are full,
    // while the daemon holds its descriptor. Accepted and closed at once, it is gone.
    this.server.on('connection', (socket: Socket) => this.admitConnection(socket));
    this.server.on('request', (request, response) => this.handle(request, response));
    this.server.on('upgrade', (request, socket, head) => this.handleUpgrade(request, socket, head));
    this.server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
      const status = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      if ((socket as Socket).writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
      else socket.destroy();
    });
  }

  private admitConnection(socket: Socket): void {
    if (this.maxConnections === null || this.openConnections < this.maxConnections) {
      this.openConnections++;
      socket.once('close', () => this.openConnections--);
      return;
    }
    socket.destroy();
    if (this.refusedConnections++ > 0) return;
    this.log.event('proxy-full', {
      reason: `${this.openConnections} client connections are open, the most this process takes with its open-file limit of ${this.fdLimit}; new ones are closed at once until some end`,
    });
    setTimeout(() => {
      const reason = `in the ${REFUSED_REPORT_INTERVAL_MS / 1000} s since the proxy was full with ${this.maxConnections} client connections`;
      this.log.event('proxy-connections-refused', { count: this.refusedConnections, reason });
      this.refusedConnections = 0;
    }, REFUSED_REPORT_INTERVAL_MS).unref();
  }

  listen(port: number, host: string): Promise<void> {
    return listen(this.server, port, host);
  }

  /** Stops accepting connections; requests in flight go on, kept-alive clients are told to close. */
  close(): void {
    this.closing = true;
    this.server.close();
    this.server.closeIdleConnections();
  }

  async stop(): Promise<void> {
    this.close();
    this.server.closeAllConnections();
  }

  update(table: RouteTable): void {
    this.trustedProxies = new Set(table.trustedProxies);
    const names = new Set(table.services.map((route) => route.name));
    for (const [name, gone] of this.services) {
      if (names.has(name)) continue;
      this.services.delete(name);
      gone.upstream = null;
      gone.pause.resume(); // requests waiting on it get the "starting" page, not a hang
    }
    for (const route of table.services) {
      const service = this.services.get(route.name) ?? { route, pause: new PauseController(), upstream: null };
      service.route = route;
      service.upstream = route.upstream ? this.upstreamFor(route.upstream) : null;
      applyMode(service.pause, route);
      this.services.set(route.name, service);
    }
    this.router.update(this.services.values());
  }

  whenIdle(key: number): Promise<void> {
    return this.upstreams.get(key)?.whenIdle() ?? Promise.resolve();
  }

  async release(key: number): Promise<number> {
    const upstream = this.upstreams.get(key);
    this.upstreams.delete(key);
    return upstream?.release() ?? 0;
  }

  inFlight(key: number): number {
    return this.upstreams.get(key)?.inFlight ?? 0;
  }

  /** In-flight count by upstream, for the worker's reports to the supervisor. */
  inFlightCounts(): Array<[number, number]> {
    return [...this.upstreams].map(([key, upstream]) => [key, upstream.inFlight]);
  }

  /** The same upstream for as long as the generation lives: a rollback finds its agent and counts. */
  private upstreamFor(address: UpstreamAddress): Upstream {
    let upstream = this.upstreams.get(address.key);
    if (!upstream) {
      upstream = new Upstream(address);
      this.upstreams.set(address.key, upstream);
    }
    return upstream;
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const service = this.router.route(request);
    if (!service) return sendPage(response, NOT_FOUND);
    admit(service.pause, () => this.forward(service, request, response), (page) => sendPage(response, page), () => response.destroyed);
  }

  private forward(service: RoutedService, request: http.IncomingMessage, response: http.ServerResponse): void {
    const upstream = service.upstream;
    if (!upstream) return sendPage(response, STARTING);
    this.prepare(service.route, request);
    if (this.closing) response.setHeader('connection', 'close');
    this.engine.web(request, response, upstream);
  }

  private handleUpgrade(request: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const service = this.router.route(request);
    if (!service) return sendRawPage(socket, NOT_FOUND);
    admit(service.pause, () => this.forwardUpgrade(service, request, socket, head), (page) => sendRawPage(socket, page), () => socket.destroyed);
  }

  private forwardUpgrade(service: RoutedService, request: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const upstream = service.upstream;
    if (!upstream) return sendRawPage(socket, STARTING);
    this.prepare(service.route, request);
    this.engine.ws(request, socket, head, upstream);
  }

  /** The request as the app gets it: path prefix stripped, forwarding headers set. */
  private prepare(route: ServiceRoute, request: http.IncomingMessage): void {
    if (route.pathPrefix !== null && route.stripPathPrefix) request.url = stripPrefix(request.url ?? '/', route.pathPrefix);
    this.setForwardedHeaders(request);
  }

  private answerError(response: http.ServerResponse, error: NodeJS.ErrnoException): void {
    if (error.code === UNFORWARDABLE) {
      this.log.event('bad-request', { reason: `${error.message}; answered 400` });
      return sendPage(response, BAD_REQUEST);
    }
    // Refused: nothing listens, the app is down (it crashed and is being restarted); that
    // is a 503 to retry, not a broken gateway.
    const refused = error.code === 'ECONNREFUSED';
    this.log.event('upstream-error', { reason: `${error.code ?? error.message}; answered ${refused ? 503 : 502}` });
    sendPage(response, refused ? RESTARTING : BAD_GATEWAY);
  }

  /**
   * X-Forwarded-* from a trusted proxy (the local nginx) are kept and extended; from anyone
   * else they are replaced: anyone can send them. X-Request-ID is added when absent.
   */
  private setForwardedHeaders(request: http.IncomingMessage): void {
    const headers = request.headers;
    const raw = request.socket.remoteAddress ?? '';
    const address = raw.startsWith('::ffff:') ? raw.slice(7) : raw;
    const proto = 'encrypted' in request.socket ? 'https' : 'http';
    if (this.trustedProxies.size > 0 && this.trustedProxies.has(address)) {
      headers['x-forwarded-for'] = headers['x-forwarded-for'] ? `${headers['x-forwarded-for']}, ${address}` : address;
      headers['x-forwarded-proto'] ??= proto;
      if (headers.host !== undefined) headers['x-forwarded-host'] ??= headers.host;
    } else {
      headers['x-forwarded-for'] = address;
      headers['x-forwarded-proto'] = proto;
      if (headers.host === undefined) delete headers['x-forwarded-host'];
      else headers['x-forwarded-host'] = headers.host;
      delete headers['x-forwarded-port'];
    }
    headers['x-request-id'] ??= randomUUID();
  }
}

/**
 * Lets a request through a service's pause controller: at once when it runs; when paused,
 * once it resumes (or a 503 after maxPause); when stopped, the maintenance page.
 */
function admit(pause: PauseController, proceed: () => void, refuse: (page: Page) => void, gone: () => boolean): void {
  if (pause.mode === 'running') return proceed();
  if (pause.mode === 'stopped') return refuse(maintenance(pause.message));
  void pause.wait().then((resumed) => {
    if (gone()) return;
    if (resumed) proceed();
    else refuse(pause.mode === 'stopped' ? maintenance(pause.message) : PAUSED);
  });
}

/** The table says what mode the service is in; the controller holds the requests that wait. */
function applyMode(pause: PauseController, route: ServiceRoute): void {
  if (route.mode === pause.mode && route.message === pause.message && route.maxPauseMs === pause.maxPauseMs) return;
  if (route.mode === 'running') pause.resume();
  else if (route.mode === 'stopped') pause.stop(route.message);
  else pause.pause(route.maxPauseMs);
}

// The pages rainbowd answers itself. They name nothing internal: no ports, no addresses.
interface Page {
  status: number;
  title: string;
  text: string;
  retryAfter?: number;
}

const NOT_FOUND: Page = { status: 404, title: 'Not Found', text: 'There is no site at this address.' };
const STARTING: Page = { status: 503, title: 'Service Unavailable', text: 'The app is starting or restarting. Try again in a moment.', retryAfter: 1 };
const RESTARTING: Page = { status: 503, title: 'Service Unavailable', text: 'The app is restarting. Try again in a moment.', retryAfter: 1 };
const PAUSED: Page = { status: 503, title: 'Service Unavailable', text: 'The app is paused. Try again in a moment.', retryAfter: 5 };
const BAD_REQUEST: Page = { status: 400, title: 'Bad Request', text: 'The request could not be understood.' };
const BAD_GATEWAY: Page = { status: 502, title: 'Bad Gateway', text: 'The app did not answer.' };

function maintenance(message: string | null): Page {
  return { status: 503, title: 'Service Unavailable', text: message ?? 'The site is down for maintenance. Please come back soon.', retryAfter: 60 };
}

function pageHeaders(page: Page, body: string): Record<string, string | number> {
  return {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...(page.retryAfter === undefined ? {} : { 'retry-after': page.retryAfter }),
  };
}

function sendPage(response: http.ServerResponse, page: Page): void {
  const body = `${page.status} ${page.title}\n${page.text}\n`;
  response.writeHead(page.status, pageHeaders(page, body));
  response.end(body);
}

/** The same page on a socket that asked for an upgrade, which has no ServerResponse. */
function sendRawPage(socket: Duplex, page: Page): void {
  const body = `${page.status} ${page.title}\n${page.text}\n`;
  const headers = Object.entries({ ...pageHeaders(page, body), connection: 'close' }).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.end(`HTTP/1.1 ${page.status} ${page.title}\r\n${headers.join('')}\r\n${body}`);
}

export function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
