import http from 'node:http';
import type { Accepted, DaemonStatus, DeployResult, ErrorBody, ModeChange, RemoveResult, Saved, ServiceStatus, UpgradeResult } from './api.js';
import { refusal, type ControlListener, type ControlTransport } from './control-guard.js';
import { listenOnSocket, removeSocket, stopAcceptingKeepingFile } from './control-socket.js';
import { parseDuration } from './duration.js';
import { RainbowError, isRainbowError, messageOf } from './errors.js';
import type net from 'node:net';
import { closeHandedOver, listen, listenOnHandedOver, stopAccepting } from './listen.js';

// The control API: what git hooks, the CLI and curl talk to. Answers are JSON; errors are
// `{ ok: false, error: { code, message } }` with a fitting status, never a stack trace.
//
//   POST   /redeploy                      redeploy the default service (rainbowd.js compatible)
//   POST   /services/NAME/redeploy        redeploy one service
//   PUT    /services/NAME                 deploy an external target (JSON body)
//   DELETE /services/NAME                 drain, stop and forget a service
//   POST   /services/NAME/ACTION          pause (?maxPause=30s), resume, stop ({"message"}), start, rollback
//   GET    /status, GET /services         everything / the services
//   POST   /upgrade                       hand over to a new rainbowd from the installed code
// Deploys answer when they are over; `?wait=0` answers 202 at once. Who may ask is decided
// first, in control-guard.ts. A change the state file could not keep answers 200 with a
// `warning`: it did take effect, but will not survive a restart.

export interface ControlTarget {
  redeploy(service: string | undefined, reason: string): Promise<DeployResult>;
  deploy(service: string, definition: unknown): Promise<Saved<DeployResult>>;
  remove(service: string): Promise<Saved<RemoveResult>>;
  changeMode(service: string, change: ModeChange): Promise<Saved<ServiceStatus>>;
  rollback(service: string): Promise<Saved<DeployResult>>;
  status(): Promise<DaemonStatus>;
  upgrade(reason: string): Promise<UpgradeResult>;
}

const MAX_BODY_BYTES = 64 * 1024;
// After a 413 the rest of the body is read and dropped for this long, then the connection is
// closed: closing at once would make the kernel answer the client's next bytes with a reset,
// which can destroy the 413 before the client has read it.
const LINGER_AFTER_REFUSAL_MS = 5000;

export class ControlServer {
  private readonly tcp = this.createServer('tcp');
  private readonly unix = this.createServer('unix');
  private socketFile: string | null = null;
  private handedOver = false;

  constructor(
    private readonly target: ControlTarget,
    private readonly listener: ControlListener,
  ) {}

  listen(): Promise<void> {
    return listen(this.tcp, this.listener.port, this.listener.host);
  }

  async listenOnSocket(file: string): Promise<void> {
    await listenOnSocket(this.unix, file);
    this.socketFile = file;
  }

  /** The listening sockets, for a successor to accept on too (handover.ts). */
  get listeners(): { control: net.Server; controlSocket?: net.Server } {
    return this.socketFile === null ? { control: this.tcp } : { control: this.tcp, controlSocket: this.unix };
  }

  async listenOnHandedOver(control: net.Server, controlSocket: { server: net.Server; file: string } | null): Promise<void> {
    await listenOnHandedOver(this.tcp, control);
    if (controlSocket) {
      await listenOnHandedOver(this.unix, controlSocket.server);
      this.socketFile = controlSocket.file;
    }
  }

  /** Handed-over listeners on addresses the config no longer has. */
  declineHandedOver(control: net.Server | undefined, controlSocket: net.Server | undefined): void {
    if (control) closeHandedOver(control, this.tcp);
    if (controlSocket) closeHandedOver(controlSocket, this.unix);
  }

  /**
   * The successor accepts now: answers under way (the upgrade's own) are finished, idle
   * kept-alive connections closed and busy ones closed after their answer, so that a client's
   * next request reaches the successor; the socket file is the successor's.
   */
  handOver(): void {
    this.handedOver = true;
    stopAccepting(this.tcp);
    if (this.socketFile !== null && this.unix.listening) stopAcceptingKeepingFile(this.unix, this.socketFile);
    for (const server of [this.tcp, this.unix]) server.closeIdleConnections();
    this.socketFile = null;
  }

  close(): void {
    for (const server of [this.tcp, this.unix]) {
      server.close();
      server.closeAllConnections();
    }
    if (this.socketFile !== null) removeSocket(this.socketFile);
    this.socketFile = null;
  }

  private createServer(transport: ControlTransport): http.Server {
    return http.createServer((request, response) => {
      this.handle(request, response, transport).catch((error: unknown) => sendError(response, error));
    });
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse, transport: ControlTransport): Promise<void> {
    if (this.handedOver) response.setHeader('connection', 'close');
    const refused = refusal(request, this.listener, transport);
    if (refused) return refuse(request, response, refused);
    const { url, parts } = parseRequestTarget(request.url ?? '/');
    const body = await readBody(request, response);
    if (body === null) return;
    const [, first, name, action, extra] = parts;
    const method = request.method ?? 'GET';
    const route = `${method} /${first ?? ''}${name === undefined ? '' : '/NAME'}${action === undefined ? '' : `/${action}`}`;
    if (extra !== undefined) return notFound(response, method, url.pathname);
    const wait = url.searchParams.get('wait') !== '0';
    const reason = url.searchParams.get('reason') ?? `${method} ${url.pathname} from ${request.socket.remoteAddress ?? 'unknown'}`;
    const answer = (deploy: Promise<unknown>) => this.answer(response, deploy, wait);
    switch (route) {
      case 'POST /redeploy':
        return answer(this.target.redeploy(undefined, reason));
      case 'POST /services/NAME/redeploy':
        return answer(this.target.redeploy(name, reason));
      case 'PUT /services/NAME':
        return answer(this.target.deploy(name!, parseJson(body)));
      case 'DELETE /services/NAME':
        return answer(this.target.remove(name!));
      case 'POST /services/NAME/rollback':
        return answer(this.target.rollback(name!));
      case 'POST /services/NAME/pause':
        return sendJson(response, 200, await this.target.changeMode(name!, { action: 'pause', maxPauseMs: parseMaxPause(url.searchParams.get('maxPause')) }));
      case 'POST /services/NAME/stop': {
        const message = (parseJson(body) as { message?: unknown } | null)?.message;
        if (message !== undefined && message !== null && typeof message !== 'string') throw new RainbowError('BAD_REQUEST', '"message" must be a string');
        return sendJson(response, 200, await this.target.changeMode(name!, { action: 'stop', message: message ?? null }));
      }
      case 'POST /services/NAME/resume':
      case 'POST /services/NAME/start':
        return sendJson(response, 200, await this.target.changeMode(name!, { action: action as 'resume' | 'start' }));
      case 'POST /upgrade':
        return sendJson(response, 200, await this.target.upgrade(reason));
      case 'GET /status':
        return sendJson(response, 200, await this.target.status());
      case 'GET /services':
        return sendJson(response, 200, (await this.target.status()).services);
      default:
        return notFound(response, method, url.pathname);
    }
  }

  private async answer(response: http.ServerResponse, operation: Promise<unknown>, wait: boolean): Promise<void> {
    if (!wait) {
      operation.catch(() => undefined); // the outcome is logged and shown in status
      return sendJson(response, 202, { ok: true, accepted: true } satisfies Accepted);
    }
    sendJson(response, 200, await operation);
  }
}

/** The request's URL and its path's decoded segments; a malformed one is the client's error. */
function parseRequestTarget(target: string): { url: URL; parts: string[] } {
  try {
    const url = new URL(target, 'http://control');
    return { url, parts: url.pathname.split('/').map((part) => decodeURIComponent(part)) };
  } catch (error) {
    throw new RainbowError('BAD_REQUEST', `the request target ${JSON.stringify(target)} is not a valid URL: ${messageOf(error)}`, { cause: error });
  }
}

function parseJson(body: string): unknown {
  if (body.trim() === '') return null;
  try {
    return JSON.parse(body) as unknown;
  } catch (error) {
    throw new RainbowError('BAD_REQUEST', `the request body is not valid JSON: ${messageOf(error)}`, { cause: error });
  }
}

/** The body, or null when it is over the limit and a 413 was sent instead. */
function readBody(request: http.IncomingMessage, response: http.ServerResponse): Promise<string | null> {
  const tooLarge = new RainbowError('BODY_TOO_LARGE', `the request body is larger than the control API's limit of ${MAX_BODY_BYTES} bytes (64 KB)`);
  if (Number(request.headers['content-length'] ?? 0) > MAX_BODY_BYTES) {
    refuse(request, response, tooLarge);
    return Promise.resolve(null);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) return void chunks.push(chunk);
      request.off('data', onData);
      refuse(request, response, tooLarge);
      resolve(null);
    };
    request.on('data', onData);
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

/**
 * Answers with the error without reading the body into anything. What the client still
 * sends is read and dropped (by Node, after the answer) for a bounded time, then the
 * connection is closed.
 */
function refuse(request: http.IncomingMessage, response: http.ServerResponse, error: RainbowError): void {
  const headers = error.code === 'UNAUTHORIZED' ? { 'www-authenticate': 'Bearer' } : {};
  sendJson(response, error.httpStatus, errorBody(error), headers);
  if (request.complete) return;
  request.resume();
  const linger = setTimeout(() => request.socket.destroy(), LINGER_AFTER_REFUSAL_MS).unref();
  request.once('end', () => clearTimeout(linger));
  request.once('close', () => clearTimeout(linger));
}

function notFound(response: http.ServerResponse, method: string, pathname: string): void {
  const error = new RainbowError('NOT_FOUND', `no such endpoint: ${method} ${pathname}`);
  sendJson(response, error.httpStatus, errorBody(error));
}

function sendError(response: http.ServerResponse, error: unknown): void {
  const known = isRainbowError(error) ? error : new RainbowError('INTERNAL', `internal error: ${messageOf(error)}`, { cause: error });
  if (response.headersSent) return void response.destroy();
  sendJson(response, known.httpStatus, errorBody(known));
}

function errorBody(error: RainbowError): ErrorBody {
  return { ok: false, error: error.toJSON() };
}

function sendJson(response: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  response.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

function parseMaxPause(value: string | null): number | undefined {
  if (value === null) return undefined;
  try {
    return parseDuration(value);
  } catch (error) {
    throw new RainbowError('BAD_REQUEST', `maxPause must be ${messageOf(error)}, got ${JSON.stringify(value)}`, { cause: error });
  }
}
