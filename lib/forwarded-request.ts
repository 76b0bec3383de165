import type http from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher, Pool } from 'undici';
import { RainbowError } from './errors.js';
import { mayHoldBack, responseHeaders } from './forward-headers.js';
import { type Page, sendPage } from './pages.js';
import type { Upstream } from './upstream.js';

// One ordinary request forwarded to the app with undici's low-level dispatch: the request
// body streams to the app and the answer to the client as it comes, each side read only as
// fast as the other writes (back-pressure), with no parsing of the app's header fields
// beyond what the client must not get. Counted in flight on its upstream until the
// client's response is finished or closed.

/** Chooses the page for a request that could not be forwarded, and sends it with `answer`. */
export type ErrorResponder = (error: NodeJS.ErrnoException, answer: (page: Page) => void) => void;

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);
/** A connection that broke (`other side closed` is undici's name for a close before the answer). */
const BROKEN = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);
/** What node:http refuses to write in a reason phrase. */
const INVALID_HEADER_TEXT = /[^\t\x20-\x7e\x80-\xff]/;
const CLIENT_GONE = new Error('the client went away');

export function forwardRequest(request: http.IncomingMessage, headers: http.IncomingHttpHeaders, response: http.ServerResponse, upstream: Upstream, pool: Pool, respondWithError: ErrorResponder): void {
  const forwarded = new ForwardedRequest(request, headers, response, upstream, pool, respondWithError);
  upstream.requestStarted();
  // One listener per request does both jobs: it is the hot path.
  response.once('close', () => {
    upstream.requestFinished();
    if (!response.writableFinished) forwarded.cancel();
  });
  forwarded.dispatch();
}

class ForwardedRequest implements Dispatcher.DispatchHandler {
  private abortDispatch: ((reason?: Error) => void) | null = null;
  private resumeAnswer: (() => void) | null = null;
  /** The app's answer's fields, read again only when a slow client would hold it back. */
  private answerFields: Buffer[] = [];
  private bodyReceived = 0;
  private cancelled = false;
  /** The app's status line and fields are written on the client's response. */
  private answering = false;
  private retried = false;
  private readonly options: Dispatcher.DispatchOptions;
  private readonly target: string;

  constructor(
    request: http.IncomingMessage,
    headers: http.IncomingHttpHeaders,
    private readonly response: http.ServerResponse,
    private readonly upstream: Upstream,
    private readonly pool: Pool,
    private readonly respondWithError: ErrorResponder,
  ) {
    this.target = request.url ?? '/';
    this.options = { path: originForm(this.target), method: request.method as Dispatcher.HttpMethod, headers, body: bodyOf(request) };
  }

  dispatch(): void {
    if (this.options.path === '') return this.answerError(unforwardable(this.target, 'not a URL'));
    this.pool.dispatch(this.options, this);
  }

  /** The client has gone: the app's request is closed, so the app sees it too. */
  cancel(): void {
    this.cancelled = true;
    this.abortDispatch?.(CLIENT_GONE);
  }

  onConnect(abort: (reason?: Error) => void): void {
    this.abortDispatch = abort;
    if (this.cancelled) abort(CLIENT_GONE);
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void, reason: string): boolean {
    // Informational answers (102, 103) are the app's business with us; the client gets the final one.
    if (status >= 100 && status < 200) return true;
    if (status < 100) return this.fail(new Error(`the app answered with status ${status}, which is not an HTTP status`));
    this.resumeAnswer = resume;
    this.answerFields = raw;
    this.upstream.answered(raw);
    try {
      writeAnswerHead(this.response, status, reason, raw);
    } catch (error) {
      return this.fail(error as Error); // a field value node:http will not write
    }
    this.answering = true;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.bodyReceived += chunk.length;
    if (this.response.write(chunk)) return true;
    // The write found the client gone, a tick before the response's close would cancel us:
    // a parser paused for a drain that never comes crashes undici 7 if the app's connection
    // then ends (nodejs/undici#5360), so the request is aborted now.
    if (this.response.destroyed) return this.fail(CLIENT_GONE);
    // A slow client: the same crash if the app's connection could end while paused.
    if (!mayHoldBack(this.answerFields, this.bodyReceived)) return true;
    this.response.once('drain', this.resumeAnswer!);
    return false;
  }

  onComplete(): void {
    this.response.end();
  }

  onError(error: NodeJS.ErrnoException): void {
    if (this.cancelled) return;
    // The answer broke off after its head was written: the client's is cut, not completed.
    if (this.answering) return void this.response.destroy();
    if (this.retryBrokenBeforeAnswer(error)) return;
    if (error.code === 'UND_ERR_INVALID_ARG') return this.answerError(unforwardable(this.target, error.message));
    this.answerError(error);
  }

  private answerError(error: NodeJS.ErrnoException): void {
    this.respondWithError(error, (page) => sendPage(this.response, page));
  }

  private fail(error: Error): false {
    this.abortDispatch?.(error);
    return false;
  }

  /**
   * A connection can break before any answer: a kept-alive socket the app closed just as the
   * request was written to it, or an app killed as we connected (a proxy worker learns of the
   * crash a moment after it happened). An idempotent request without a body is sent again,
   * once, like nginx's proxy_next_upstream; if the app is gone the retry is refused and gets
   * a 503.
   */
  private retryBrokenBeforeAnswer(error: NodeJS.ErrnoException): boolean {
    const { method, body } = this.options;
    if (this.retried || !retryable(method, body, error)) return false;
    this.retried = true;
    this.abortDispatch = null;
    // Once the broken connection is gone from the pool, so the retry gets a new one rather
    // than another idle connection the app may have closed as well.
    setImmediate(() => {
      if (!this.cancelled) this.dispatch();
    });
    return true;
  }
}

/** An idempotent request without a body whose connection broke before any answer (see retryBrokenBeforeAnswer). */
export function retryable(method: string, body: unknown, error: NodeJS.ErrnoException): boolean {
  return body === null && IDEMPOTENT.has(method) && BROKEN.has(error.code ?? '');
}

/** The app's status line and fields on the client's response; throws on a field value node:http will not write. */
export function writeAnswerHead(response: http.ServerResponse, status: number, reason: string | undefined, raw: ReadonlyArray<Buffer | string>): void {
  // A reason phrase node:http will not write becomes the standard one.
  if (reason && !INVALID_HEADER_TEXT.test(reason)) response.writeHead(status, reason, responseHeaders(raw));
  else response.writeHead(status, responseHeaders(raw));
}

/**
 * The body to stream to the app, null when there is none. Undici sends a stream that has
 * already ended with a Content-Length, which would change the framing of a chunked body the
 * client sent; a stream read from it starts unended, and goes chunked.
 */
export function bodyOf(request: http.IncomingMessage): Readable | null {
  if (request.headers['transfer-encoding'] !== undefined) return Readable.from(request, { objectMode: false });
  const length = request.headers['content-length'];
  return length === undefined || length === '0' ? null : request;
}

/** The target as the app is sent it: `http://host/x?y` (absolute form) is `/x?y`; '' when it is not a URL. */
export function originForm(target: string): string {
  if (target.charCodeAt(0) === 47 /* / */) return target;
  try {
    const url = new URL(target);
    return url.pathname + url.search;
  } catch {
    return '';
  }
}

export function unforwardable(target: string, reason: string): RainbowError {
  return new RainbowError('UNFORWARDABLE', `cannot forward ${JSON.stringify(target)}: ${reason}`);
}
