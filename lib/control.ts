import http from 'node:http';
import { RainbowError, isRainbowError, messageOf } from './errors.js';
import { listen } from './proxy.js';
import type { DeployResult, ServiceStatus } from './service.js';
import type { DaemonStatus, ModeChange } from './daemon.js';
import { parseMaxPause } from './daemon.js';

// The control API: what git hooks, the CLI and curl talk to. Answers are JSON; errors are
// `{ ok: false, error: { code, message } }` with a fitting status, never a stack trace.
//
//   POST   /redeploy                      redeploy the default service (rainbowd.js compatible)
//   POST   /services/NAME/redeploy        redeploy one service
//   PUT    /services/NAME                 deploy an external target (JSON body)
//   DELETE /services/NAME                 drain, stop and forget a service
//   POST   /services/NAME/ACTION          pause (?maxPause=30s), resume, stop ({"message"}), start, rollback
//   GET    /status, GET /services         everything / the services
// Deploys answer when they are over; `?wait=0` answers 202 at once.

export interface ControlTarget {
  redeploy(service: string | undefined, reason: string): Promise<DeployResult>;
  deploy(service: string, definition: unknown): Promise<DeployResult>;
  remove(service: string): Promise<{ ok: true; service: string }>;
  changeMode(service: string, change: ModeChange): Promise<ServiceStatus>;
  rollback(service: string): Promise<DeployResult>;
  status(): DaemonStatus;
}

const MAX_BODY_BYTES = 64 * 1024;

export class ControlServer {
  readonly server = http.createServer((request, response) => {
    this.handle(request, response).catch((error: unknown) => sendError(response, error));
  });

  constructor(private readonly target: ControlTarget) {}

  listen(port: number, host: string): Promise<void> {
    return listen(this.server, port, host);
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const { url, parts } = parseTarget(request.url ?? '/');
    const body = await readBody(request);
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
      case 'GET /status':
        return sendJson(response, 200, this.target.status());
      case 'GET /services':
        return sendJson(response, 200, this.target.status().services);
      default:
        return notFound(response, method, url.pathname);
    }
  }

  private async answer(response: http.ServerResponse, operation: Promise<unknown>, wait: boolean): Promise<void> {
    if (!wait) {
      operation.catch(() => undefined); // the outcome is logged and shown in status
      return sendJson(response, 202, { ok: true, accepted: true });
    }
    sendJson(response, 200, await operation);
  }
}

/** The request's URL and its path's decoded segments; a malformed one is the client's error. */
function parseTarget(target: string): { url: URL; parts: string[] } {
  try {
    const url = new URL(target, 'http://control');
    return { url, parts: url.pathname.split('/').map((part) => decodeURIComponent(part)) };
  } catch (error) {
    throw new RainbowError('BAD_REQUEST', `the request target ${JSON.stringify(target)} is not a valid URL: ${messageOf(error)}`);
  }
}

function parseJson(body: string): unknown {
  if (body.trim() === '') return null;
  try {
    return JSON.parse(body) as unknown;
  } catch (error) {
    throw new RainbowError('BAD_REQUEST', `the request body is not valid JSON: ${messageOf(error)}`);
  }
}

function readBody(request: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => {
      body += chunk;
      if (body.length > MAX_BODY_BYTES) {
        reject(new RainbowError('BAD_REQUEST', `the request body is larger than ${MAX_BODY_BYTES} bytes`));
        request.destroy();
      }
    });
    request.on('end', () => resolve(body));
    request.on('error', reject);
  });
}

function notFound(response: http.ServerResponse, method: string, pathname: string): void {
  sendJson(response, 404, { ok: false, error: { code: 'BAD_REQUEST', message: `no such endpoint: ${method} ${pathname}` } });
}

function sendError(response: http.ServerResponse, error: unknown): void {
  const known = isRainbowError(error) ? error : new RainbowError('DEPLOY_FAILED', `internal error: ${messageOf(error)}`);
  if (response.headersSent) return void response.destroy();
  sendJson(response, known.httpStatus, { ok: false, error: known.toJSON() });
}

function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}
