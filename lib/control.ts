import http from 'node:http';
import { RainbowError, isRainbowError, messageOf } from './errors.js';
import { listen } from './proxy.js';
import type { DeployResult } from './service.js';
import type { DaemonStatus } from './daemon.js';

// The control API: what git hooks, the CLI and curl talk to. Answers are JSON; errors are
// `{ ok: false, error: { code, message } }` with a fitting status, never a stack trace.

export interface ControlTarget {
  redeploy(service: string | undefined, reason: string): Promise<DeployResult>;
  status(): DaemonStatus;
}

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
    const url = new URL(request.url ?? '/', 'http://control');
    request.resume(); // bodies are ignored (rainbowd.js compatible: curl -d '' .../redeploy)
    const serviceRedeploy = /^\/services\/([^/]+)\/redeploy$/.exec(url.pathname);
    if (url.pathname === '/redeploy' || serviceRedeploy) {
      if (request.method !== 'POST') return sendJson(response, 405, { ok: false, error: { code: 'BAD_REQUEST', message: 'use POST' } }, { allow: 'POST' });
      const service = serviceRedeploy ? decodeURIComponent(serviceRedeploy[1]!) : undefined;
      const reason = url.searchParams.get('reason') ?? `POST ${url.pathname} from ${request.socket.remoteAddress ?? 'unknown'}`;
      const deploy = this.target.redeploy(service, reason);
      if (url.searchParams.get('wait') === '0') {
        deploy.catch(() => undefined); // the outcome is logged and shown in status
        return sendJson(response, 202, { ok: true, accepted: true, service: service ?? null });
      }
      return sendJson(response, 200, await deploy);
    }
    if (url.pathname === '/status') {
      if (request.method !== 'GET') return sendJson(response, 405, { ok: false, error: { code: 'BAD_REQUEST', message: 'use GET' } }, { allow: 'GET' });
      return sendJson(response, 200, this.target.status());
    }
    sendJson(response, 404, { ok: false, error: { code: 'BAD_REQUEST', message: `no such endpoint: ${request.method} ${url.pathname}` } });
  }
}

function sendError(response: http.ServerResponse, error: unknown): void {
  const known = isRainbowError(error) ? error : new RainbowError('DEPLOY_FAILED', `internal error: ${messageOf(error)}`);
  if (response.headersSent) return void response.destroy();
  sendJson(response, known.httpStatus, { ok: false, error: known.toJSON() });
}

function sendJson(response: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  response.end(text);
}
