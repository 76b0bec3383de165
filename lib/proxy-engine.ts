import http from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { stripHopByHop } from './forward-headers.js';
import type { Upstream } from './upstream.js';

// The one module that knows the proxy engine is http-proxy 1.18.1, so it can be swapped.
// 1.18.1 is unmaintained and has traps; each is guarded here and pinned by a test:
// - an `error` event without a listener crashes the process (dead upstream => dead daemon);
// - it does not abort the upstream request when the client goes away after sending its
//   request (it only listens for `aborted`, which a finished request no longer emits);
// - when the upstream response breaks off after its headers were sent (the app died, or a
//   drain timed out and closed the upstream sockets), the client's response is left open;
// - it parses the request target with url.parse, which throws on some malformed ones
//   (`GET http://[x/ HTTP/1.1`); thrown from a request handler, that took the daemon down;
// - it copies the app's status line onto the response, which throws on a status below 100 or
//   on bytes node:http will not write (`HTTP/1.1 200 O\x01K`; both get past the parser): the
//   same crash, caused by an app;
// - an error on the app's connection after its answer arrived (bytes after a complete answer)
//   sent it to the `error` handler, whose error page then collided with the answer being
//   streamed: write after end, an unhandled `error` event, the same crash;
// - it triggers deprecation warnings in users' logs: DEP0060 (util._extend) on Node 22+,
//   DEP0169 (url.parse) on Node 24+, and DEP0170 (url.parse of an invalid URL) on any client's
//   `GET http://a,:b/`.
// - it forwards the request's header fields as they are, hop-by-hop ones included (a
//   `Trailer` field on a GET made node:http throw out of an event handler: the same crash),
//   and the app's response fields likewise; both are set here from forward-headers.ts;
// - it sets the client's `Connection` from the request's (or `keep-alive`) when the app's
//   response has none, which overrides node:http's own keep-alive decision.

export type ErrorResponder = (response: http.ServerResponse, error: NodeJS.ErrnoException) => void;

/** A request the engine cannot forward as it was sent: the client's fault, a 400. */
export const UNFORWARDABLE = 'UNFORWARDABLE';

const upstreamRequest = Symbol('upstreamRequest');
const upstreamUsed = Symbol('upstreamUsed');
const retried = Symbol('retried');
const upstreamAnswer = Symbol('upstreamAnswer');

interface TrackedRequest extends http.IncomingMessage {
  [upstreamRequest]?: http.ClientRequest;
  [upstreamUsed]?: Upstream;
  [retried]?: boolean;
  [upstreamAnswer]?: http.IncomingMessage;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);
/** What node:http refuses to write in a header value or reason phrase. */
const INVALID_HEADER_TEXT = /[^\t\x20-\x7e\x80-\xff]/;

silenceEngineDeprecations();

export class ProxyEngine {
  private readonly proxy = httpProxy.createProxyServer({ xfwd: false, ws: true, changeOrigin: false });

  constructor(private readonly respondWithError: ErrorResponder) {
    this.proxy.on('proxyReq', (proxyRequest, request) => {
      (request as TrackedRequest)[upstreamRequest] = proxyRequest;
    });
    this.proxy.on('proxyRes', (upstreamResponse, request, response) => {
      upstreamResponse.once('close', () => {
        if (!upstreamResponse.complete && !response.writableEnded) response.destroy();
      });
      // This runs before http-proxy copies the status line on, where a status below 100 or a
      // reason phrase with bytes node:http will not write (the parser lets both through)
      // threw out of the response handler. A response already answered is not copied on.
      const status = upstreamResponse.statusCode ?? 0;
      if (status < 100) {
        upstreamResponse.resume();
        this.respondWithError(response, new Error(`the app answered with status ${status}, which is not an HTTP status`));
        return;
      }
      if (upstreamResponse.statusMessage && INVALID_HEADER_TEXT.test(upstreamResponse.statusMessage)) upstreamResponse.statusMessage = '';
      stripHopByHop(upstreamResponse.headers);
      // http-proxy then sets the client's Connection from these (from the request's alone for
      // HTTP/1.0): both say what node:http decided. The request has been sent by now.
      const connection = String(response.getHeader('connection') ?? (response.shouldKeepAlive ? 'keep-alive' : 'close'));
      upstreamResponse.headers.connection = connection;
      request.headers.connection = connection;
      (request as TrackedRequest)[upstreamAnswer] = upstreamResponse;
    });
    this.proxy.on('error', (error: NodeJS.ErrnoException, request, response) => {
      if (!(response instanceof http.ServerResponse)) {
        (response as Duplex).destroy();
        return;
      }
      // Once the app's answer is on its way to the client (not yet written: headers go with
      // the first chunk), an error page would collide with it (write after end, unhandled):
      // a complete answer flows on (the error is about bytes after it), a broken one is cut.
      const answer = (request as TrackedRequest)[upstreamAnswer];
      if (answer) {
        if (!answer.complete) response.destroy();
        return;
      }
      if (this.retryBrokenBeforeAnswer(error, request as TrackedRequest, response)) return;
      if (response.headersSent) response.destroy();
      else this.respondWithError(response, error);
    });
  }

  /** Forwards with `headers` (forward-headers.ts); counts the request in flight on `upstream` until its response closes. */
  web(request: http.IncomingMessage, headers: http.IncomingHttpHeaders, response: http.ServerResponse, upstream: Upstream): void {
    const tracked = request as TrackedRequest;
    // http-proxy sends the request's own fields: the ones to forward take their place.
    request.headers = headers;
    tracked[upstreamUsed] = upstream;
    upstream.requestStarted();
    // One listener per request does both jobs: it is the hot path.
    response.once('close', () => {
      upstream.requestFinished();
      if (!response.writableFinished) tracked[upstreamRequest]?.destroy();
    });
    try {
      this.proxy.web(request, response, { target: upstream.proxyTarget, agent: upstream.agent });
    } catch (error) {
      this.respondWithError(response, unforwardable(request, error));
    }
  }

  /** The caller has put an `error` listener on `socket`: a client reset mid-upgrade would otherwise crash us. */
  ws(request: http.IncomingMessage, headers: http.IncomingHttpHeaders, socket: Duplex, head: Buffer, upstream: Upstream): void {
    upstream.trackUpgrade(socket);
    request.headers = headers;
    try {
      this.proxy.ws(request, socket, head, { target: upstream.proxyTarget });
    } catch {
      socket.destroy(); // as for any other error on an upgrade: there is no response to answer on
    }
  }

  /**
   * A connection can break before any answer: a kept-alive socket the app closed just as the
   * request was written to it, or an app killed as we connected (a proxy worker learns of the
   * crash a moment after it happened). An idempotent request is sent again, once, like
   * nginx's proxy_next_upstream; if the app is gone the retry is refused and gets a 503.
   */
  private retryBrokenBeforeAnswer(error: NodeJS.ErrnoException, request: TrackedRequest, response: http.ServerResponse): boolean {
    const upstream = request[upstreamUsed];
    const broken = error.code === 'ECONNRESET' || error.code === 'EPIPE';
    if (!broken || !upstream || request[retried] || response.headersSent || !IDEMPOTENT.has(request.method ?? '')) return false;
    request[retried] = true;
    this.proxy.web(request, response, { target: upstream.proxyTarget, agent: upstream.agent });
    return true;
  }
}

function unforwardable(request: http.IncomingMessage, error: unknown): NodeJS.ErrnoException {
  const reason = error instanceof Error ? error.message : String(error);
  return Object.assign(new Error(`cannot forward ${JSON.stringify(request.url)}: ${reason}`), { code: UNFORWARDABLE });
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
