import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { openFileLimit, proxyConnectionLimit } from './connection-limit.js';
import { isRainbowError } from './errors.js';
import { type Forwarding, requestHeaders } from './forward-headers.js';
import { closeHandedOver, listen, listenOnHandedOver, stopAccepting, type Listener, type SocketHandle } from './listen.js';
import type { Logger } from './log.js';
import { BAD_GATEWAY, BAD_REQUEST, maintenance, NOT_FOUND, type Page, PAUSED, RESTARTING, sendPage, sendRawPage, STARTING } from './pages.js';
import { PauseController } from './pause-controller.js';
import { ProxyEngine } from './proxy-engine.js';
import { answerParseError, headWithoutUpgrade, isWebSocketUpgrade, MAX_HEADERS, type Refusal, refusal } from './request-framing.js';
import type { DataPath, DataPathHandover, RouteTable, ServiceRoute, UpstreamAddress } from './route-table.js';
import { Router, stripPrefix } from './router.js';
import { type Connections, Upstream } from './upstream.js';

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

/** Errors that say the app is not there to answer (ClientDestroyedError/ClientClosedError: a released generation's pool). */
const APP_GONE = new Set(['ECONNREFUSED', 'UND_ERR_DESTROYED', 'UND_ERR_CLOSED']);

export class Proxy implements DataPath {
  readonly server: http.Server;
  private readonly engine: ProxyEngine;
  private readonly router = new Router<RoutedService>();
  private readonly services = new Map<string, RoutedService>();
  /** Every upstream not yet released: the active ones and those still draining. */
  private readonly upstreams = new Map<number, Upstream>();
  private forwarding: Forwarding = { trustedProxies: new Set(), fields: new Set(), via: '' };
  private closing = false;
  private readonly fdLimit = openFileLimit();
  private readonly maxConnections = proxyConnectionLimit(this.fdLimit);
  private openConnections = 0;
  private readonly admitted = new WeakSet<Socket>();
  private refusedConnections = 0;
  private readonly clientAddressField: string | undefined;
  private readonly connections: Connections;

  /**
   * `clientAddressField`: see Forwarding; set when HAProxy is this proxy's only peer.
   * `connections`: how each generation is reached (upstream.ts).
   */
  constructor(
    private readonly log: EventLog,
    { clientAddressField, connections = 'pooled' }: { clientAddressField?: string; connections?: Connections } = {},
  ) {
    this.clientAddressField = clientAddressField;
    this.connections = connections;
    this.engine = new ProxyEngine((error, answer) => this.answerError(error, answer));
    this.server = http.createServer({
      // Longer than nginx's upstream keepalive_timeout (60 s), so nginx closes idle
      // connections first and never writes a request onto one we are closing.
      keepAliveTimeout: 65_000,
      headersTimeout: HEADERS_TIMEOUT_MS,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      requestTimeout: 0,
    });
    // One more than we accept, so that too many is seen (and answered 431) rather than cut off;
    // and a missing Host is refused by refusal(), with a page like every other refusal.
    this.server.maxHeadersCount = MAX_HEADERS + 1;
    Object.assign(this.server, { requireHostHeader: false });
    // Not server.maxConnections: in a proxy worker, node:cluster hands a connection the
    // worker turns down to another worker, and back, for as long as all of them are full,
    // while the daemon holds its descriptor. Accepted and closed at once, it is gone.
    this.server.on('connection', (socket: Socket) => this.admitConnection(socket));
    this.server.on('request', (request, response) => this.handle(request, response));
    this.server.on('upgrade', (request, socket, head) => this.handleUpgrade(request, socket, head));
    // Without a listener Node closes a CONNECT without a word.
    this.server.on('connect', (request, socket: Duplex) => this.handleUpgrade(request, socket, Buffer.alloc(0)));
    this.server.on('clientError', answerParseError);
  }

  private admitConnection(socket: Socket): void {
    // A connection handed back to the server after a non-WebSocket upgrade is admitted already.
    if (this.admitted.has(socket)) return;
    if (this.maxConnections === null || this.openConnections < this.maxConnections) {
      this.admitted.add(socket);
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

  /** On a port and host, or on a unix socket when `port` is a path. */
  listen(port: number | string, host?: string): Promise<void> {
    return listen(this.server, port, host);
  }

  /**
   * The listening socket, for a successor to accept on too (handover.ts): bare, so that it
   * accepts nothing there until the successor's proxy, or its proxy workers, listen on it.
   */
  handover(): DataPathHandover {
    return { proxy: (this.server as unknown as { _handle: SocketHandle })._handle };
  }

  listenOnHandedOver(handed: Listener): Promise<void> {
    return listenOnHandedOver(this.server, handed);
  }

  /** A handed-over listener on an address the config no longer has. */
  declineHandedOver(handed: Listener): void {
    closeHandedOver(handed, this.server);
  }

  /**
   * The successor accepts now: stop accepting, answer what comes on kept-alive connections
   * with `Connection: close` (so each client's next request goes to the successor, with no
   * race against a close), and resolve once every connection has ended, or after `timeoutMs`.
   */
  async handOver(timeoutMs: number): Promise<void> {
    this.closing = true;
    stopAccepting(this.server);
    const deadline = Date.now() + timeoutMs;
    while (this.openConnections > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
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
    this.forwarding = { trustedProxies: new Set(table.trustedProxies), fields: new Set(table.forwardedFields), via: table.via, ...(this.clientAddressField === undefined ? {} : { clientAddressField: this.clientAddressField }) };
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

  async whenRouted(): Promise<void> {}

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

  /** The same upstream for as long as the generation lives: a rollback finds its client (pool or agent) and counts. */
  private upstreamFor(address: UpstreamAddress): Upstream {
    let upstream = this.upstreams.get(address.key);
    if (!upstream) {
      upstream = new Upstream(address, this.maxConnections, this.connections);
      this.upstreams.set(address.key, upstream);
    }
    return upstream;
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const refused = refusal(request, this.forwarding.via);
    if (refused) {
      // What follows on the connection cannot be trusted to be framed as it looks.
      response.setHeader('connection', 'close');
      return this.refuse(refused, (page) => sendPage(response, page));
    }
    const service = this.router.route(request);
    if (!service) return sendPage(response, NOT_FOUND);
    // A running service's request is forwarded without the closures a held one needs: the hot path.
    if (service.pause.mode === 'running') return this.forward(service, request, response);
    admit(service.pause, () => this.forward(service, request, response), (page) => sendPage(response, page), () => response.destroyed);
  }

  private forward(service: RoutedService, request: http.IncomingMessage, response: http.ServerResponse): void {
    const upstream = service.upstream;
    if (!upstream) return sendPage(response, STARTING);
    const headers = this.prepare(service.route, request, false);
    if (this.closing) response.setHeader('connection', 'close');
    this.engine.web(request, headers, response, upstream);
  }

  private handleUpgrade(request: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    if (request.method !== 'CONNECT' && !isWebSocketUpgrade(request)) return this.serveWithoutUpgrade(request, socket as Socket, head);
    const refused = refusal(request, this.forwarding.via);
    if (refused) return this.refuse(refused, (page) => sendRawPage(socket, page));
    const service = this.router.route(request);
    if (!service) return sendRawPage(socket, NOT_FOUND);
    admit(service.pause, () => this.forwardUpgrade(service, request, socket, head), (page) => sendRawPage(socket, page), () => socket.destroyed);
  }

  private forwardUpgrade(service: RoutedService, request: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const upstream = service.upstream;
    if (!upstream) return sendRawPage(socket, STARTING);
    this.engine.ws(request, this.prepare(service.route, request, true), socket, head, upstream);
  }

  /**
   * Node 20 has handed the connection over as a raw socket: the server parses the request
   * again from the start, without its Upgrade, and serves it and what follows on the
   * connection as any other request (see headWithoutUpgrade).
   */
  private serveWithoutUpgrade(request: http.IncomingMessage, socket: Socket, head: Buffer): void {
    const again = Buffer.concat([headWithoutUpgrade(request), head]);
    const reparse = () => {
      // Answers to requests pipelined before this one are written first: they belong to the
      // connection's previous parser, which would not hand the socket on to the next one.
      const pending = (socket as Socket & { _httpMessage?: http.ServerResponse | null })._httpMessage;
      if (pending) return void pending.once('finish', reparse);
      if (!socket.writable) return; // the answer before closed the connection
      socket.setTimeout(0); // a keep-alive timeout the previous parser set would outlive it
      socket.unshift(again);
      this.server.emit('connection', socket);
    };
    reparse();
  }

  private refuse({ reason, page }: Refusal, answer: (page: Page) => void): void {
    this.log.event('bad-request', { reason: `${reason}; answered ${page.status}` });
    answer(page);
  }

  /** The request as the app gets it: path prefix stripped; the header fields to forward it with. */
  private prepare(route: ServiceRoute, request: http.IncomingMessage, websocket: boolean): http.IncomingHttpHeaders {
    if (route.pathPrefix !== null && route.stripPathPrefix) request.url = stripPrefix(request.url ?? '/', route.pathPrefix);
    return requestHeaders(request, this.forwarding, websocket);
  }

  /** The page for a request or upgrade that could not be forwarded, as `answer` sends it. */
  private answerError(error: NodeJS.ErrnoException, answer: (page: Page) => void): void {
    if (isRainbowError(error) && error.code === 'UNFORWARDABLE') return this.refuse({ reason: error.message, page: BAD_REQUEST }, answer);
    // Refused: nothing listens, the app is down (it crashed and is being restarted); or the
    // generation was released as the request was routed to it (a proxy worker learns of the
    // switch a moment later). A 503 to retry, not a broken gateway.
    const refused = APP_GONE.has(error.code ?? '');
    this.log.event('upstream-error', { reason: `${error.code ?? error.message}; answered ${refused ? 503 : 502}` });
    answer(refused ? RESTARTING : BAD_GATEWAY);
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
