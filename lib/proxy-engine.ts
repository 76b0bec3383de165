import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type Server from 'http-proxy';
import { forwardOverAgent } from './agent-request.js';
import { type ErrorResponder, forwardRequest, unforwardable } from './forwarded-request.js';
import { type Page, sendRawPage } from './pages.js';
import type { Upstream } from './upstream.js';

// The one module that knows the proxy engine: ordinary requests go through undici's
// dispatcher (forwarded-request.ts), WebSocket tunnels through http-proxy 1.18.1, which does
// them well. 1.18.1 is unmaintained and has traps; those that concern tunnels are guarded
// here and pinned by a test:
// - an `error` event without a listener crashes the process (dead upstream => dead daemon);
// - it parses the request target with url.parse, which throws on some malformed ones
//   (`GET http://[x/ HTTP/1.1`); thrown from an upgrade handler, that took the daemon down;
// - it triggers deprecation warnings in users' logs: DEP0060 (util._extend) on Node 22+,
//   DEP0169 (url.parse) on Node 24+, and DEP0170 (url.parse of an invalid URL) on any client's
//   `GET http://a,:b/`.
// The traps it had on ordinary requests (client aborts not passed on, broken answers left
// open, status lines and fields copied on that node:http will not write, bytes after a
// complete answer, hop-by-hop fields) stay pinned by the same tests against the new path.

silenceEngineDeprecations();

export class ProxyEngine {
  /** http-proxy, loaded at the first upgrade: a daemon whose apps take no WebSocket never needs it (3 MB of RSS). */
  private tunnels: Promise<Server> | null = null;

  constructor(private readonly respondWithError: ErrorResponder) {}

  /** Forwards with `headers` (forward-headers.ts); counts the request in flight on `upstream` until its response closes. */
  web(request: http.IncomingMessage, headers: http.IncomingHttpHeaders, response: http.ServerResponse, upstream: Upstream): void {
    const { client } = upstream;
    if (client instanceof http.Agent) forwardOverAgent(request, headers, response, upstream, client, this.respondWithError);
    else forwardRequest(request, headers, response, upstream, client, this.respondWithError);
  }

  /** The caller has put an `error` listener on `socket`: a client reset mid-upgrade would otherwise crash us. */
  ws(request: http.IncomingMessage, headers: http.IncomingHttpHeaders, socket: Duplex, head: Buffer, upstream: Upstream): void {
    // Counted at once: a drain that starts while http-proxy loads waits for this tunnel too.
    upstream.trackUpgrade(socket);
    request.headers = headers;
    const answer = (page: Page) => sendRawPage(socket, page);
    this.tunnelProxy().then(
      (proxy) => {
        // Gone while http-proxy loaded: the client left, or the generation was released.
        if (socket.destroyed) return;
        try {
          proxy.ws(request, socket, head, { target: upstream.proxyTarget }, (error) => {
            if (socket.destroyed) return;
            // Before the app has answered, the client has had nothing: it gets the page a plain
            // request would. Once the app's answer has begun, the tunnel can only be cut.
            if ((socket as Socket).bytesWritten === 0) this.respondWithError(error, answer);
            else socket.destroy();
          });
        } catch {
          this.respondWithError(unforwardable(request.url ?? '/', 'not a URL'), answer);
        }
      },
      (error: Error) => this.respondWithError(error, answer),
    );
  }

  private tunnelProxy(): Promise<Server> {
    return (this.tunnels ??= import('http-proxy').then(({ default: httpProxy }) => {
      const proxy = httpProxy.createProxyServer({ xfwd: false, ws: true, changeOrigin: false });
      // Each tunnel answers its own errors (ws above); this one catches what http-proxy emits outside one.
      proxy.on('error', (_error, _request, socket) => (socket as Duplex).destroy());
      return proxy;
    }));
  }
}

const SILENCED_DEPRECATIONS = new Set(['DEP0060', 'DEP0169', 'DEP0170']);

function silenceEngineDeprecations(): void {
  const emitWarning = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const options = rest[0];
    const code = typeof options === 'object' && options !== null ? (options as { code?: string }).code : rest[1];
    const errorCode = warning instanceof Error ? (warning as NodeJS.ErrnoException).code : undefined;
    if (SILENCED_DEPRECATIONS.has(String(code)) || SILENCED_DEPRECATIONS.has(String(errorCode))) return;
    (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
  }) as typeof process.emitWarning;
}
