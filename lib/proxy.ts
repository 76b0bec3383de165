import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProxyEngine } from './proxy-engine.js';
import type { Logger } from './log.js';
import { stripPrefix, type Router } from './router.js';
import type { Service } from './service.js';

// What happens to a request: router -> service -> its active generation -> forwarded, and
// counted as in flight on that generation until the response closes, so a deploy can
// drain it exactly.

export class Proxy {
  readonly server: http.Server;
  private readonly engine: ProxyEngine;
  private closing = false;

  constructor(
    private readonly router: Router,
    private readonly log: Logger,
    private trustedProxies = new Set<string>(),
  ) {
    this.engine = new ProxyEngine((response, error) => this.badGateway(response, error));
    // Longer than nginx's upstream keepalive_timeout (60 s), so nginx closes idle
    // connections first and never writes a request onto one we are closing.
    this.server = http.createServer({ keepAliveTimeout: 65_000, headersTimeout: 66_000, requestTimeout: 0 });
    this.server.on('request', (request, response) => this.handle(request, response));
    this.server.on('upgrade', (request, socket, head) => this.handleUpgrade(request, socket, head));
    this.server.on('clientError', (_error, socket: Duplex) => {
      if ((socket as Socket).writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
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

  setTrustedProxies(addresses: string[]): void {
    this.trustedProxies = new Set(addresses);
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const service = this.router.route(request);
    if (!service) return errorPage(response, 404, 'Not Found', 'There is no site at this address.');
    if (service.pause.mode === 'running') return this.forward(service, request, response);
    if (service.pause.mode === 'stopped') return maintenancePage(response, service.pause.message);
    // Paused: hold the request until the service resumes, or answer 503 after maxPause.
    void service.pause.wait().then((proceed) => {
      if (response.destroyed) return;
      if (proceed) this.forward(service, request, response);
      else if (service.pause.mode === 'stopped') maintenancePage(response, service.pause.message);
      else errorPage(response, 503, 'Service Unavailable', 'The app is paused. Try again in a moment.', { 'retry-after': '5' });
    });
  }

  private forward(service: Service, request: http.IncomingMessage, response: http.ServerResponse): void {
    const generation = service.active;
    if (!generation) {
      return errorPage(response, 503, 'Service Unavailable', 'The app is starting or restarting. Try again in a moment.', { 'retry-after': '1' });
    }
    const { pathPrefix, stripPathPrefix } = service.config;
    if (pathPrefix !== null && stripPathPrefix) request.url = stripPrefix(request.url ?? '/', pathPrefix);
    this.setForwardedHeaders(request);
    generation.requestStarted();
    response.once('close', () => generation.requestFinished());
    if (this.closing) response.setHeader('connection', 'close');
    this.engine.web(request, response, generation);
  }

  private handleUpgrade(request: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const service = this.router.route(request);
    const generation = service?.pause.mode === 'running' ? service.active : null;
    if (!service || !generation) {
      socket.end(`HTTP/1.1 ${service ? '503 Service Unavailable' : '404 Not Found'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const { pathPrefix, stripPathPrefix } = service.config;
    if (pathPrefix !== null && stripPathPrefix) request.url = stripPrefix(request.url ?? '/', pathPrefix);
    this.setForwardedHeaders(request);
    generation.trackUpgrade(socket);
    this.engine.ws(request, socket, head, generation);
  }

  private badGateway(response: http.ServerResponse, error: NodeJS.ErrnoException): void {
    // Refused: nothing listens, the app is down (it crashed and is being restarted); that
    // is a 503 to retry, not a broken gateway.
    const refused = error.code === 'ECONNREFUSED';
    this.log.event('upstream-error', { reason: `${error.code ?? error.message}; answered ${refused ? 503 : 502}` });
    if (refused) errorPage(response, 503, 'Service Unavailable', 'The app is restarting. Try again in a moment.', { 'retry-after': '1' });
    else errorPage(response, 502, 'Bad Gateway', 'The app did not answer.');
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

function maintenancePage(response: http.ServerResponse, message: string | null): void {
  errorPage(response, 503, 'Service Unavailable', message ?? 'The site is down for maintenance. Please come back soon.', { 'retry-after': '60' });
}

function errorPage(response: http.ServerResponse, status: number, title: string, text: string, headers: http.OutgoingHttpHeaders = {}): void {
  const body = `${status} ${title}\n${text}\n`;
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  response.end(body);
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
