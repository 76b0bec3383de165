import type http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { BAD_REQUEST, type Page, sendRawPage } from './pages.js';
import { normalizeTarget } from './request-path.js';

// What the proxy accepts, decided before routing and independent of the engine that
// forwards: the framing rules nginx and HAProxy enforce on top of what Node's parser
// (llhttp) already refuses (CL with TE, two Content-Lengths, obs-fold, bare LF, ...), each
// with the status class they answer. Every request gets an answer; none a silent close.

/** Header fields a request may have; Node cuts the rest off silently, we answer 431 instead. */
export const MAX_HEADERS = 2000;

export interface Refusal {
  page: Page;
  /** For the log: what was wrong with the request. */
  reason: string;
}

const NOT_IMPLEMENTED: Page = { status: 501, title: 'Not Implemented', text: 'The request body uses a transfer coding this server does not support; send it with Content-Length or chunked.' };
const UNKNOWN_METHOD: Page = { status: 501, title: 'Not Implemented', text: 'The request method is not one this server knows (methods are case-sensitive: GET, not get).' };
const VERSION_NOT_SUPPORTED: Page = { status: 505, title: 'HTTP Version Not Supported', text: 'This server speaks HTTP/1.0 and HTTP/1.1.' };
const TOO_MANY_HEADERS: Page = { status: 431, title: 'Request Header Fields Too Large', text: 'The request has too many header fields, or they are too large.' };
const NOT_ALLOWED: Page = { status: 405, title: 'Method Not Allowed', text: 'This server does not open tunnels (CONNECT).' };
const TIMEOUT: Page = { status: 408, title: 'Request Timeout', text: 'The request was not received in time.' };
const LOOP: Page = {
  status: 508,
  title: 'Loop Detected',
  text: "This request has already passed through this server: a service's target leads back to it. Check the targets of the services.",
};

/**
 * Why the request is refused, or null; the request target is normalized on the way (see
 * request-path.ts). `via` is this daemon's token in `Via`: a request carrying it has come
 * back round, and forwarding it would only open another connection to ourselves.
 */
export function refusal(request: http.IncomingMessage, via: string): Refusal | null {
  if (request.method === 'CONNECT') return { page: NOT_ALLOWED, reason: 'CONNECT' };
  const major = request.httpVersionMajor;
  if (major === 0) return { page: BAD_REQUEST, reason: 'an HTTP/0.9 request line (no version)' };
  if (major > 1) return { page: VERSION_NOT_SUPPORTED, reason: `an HTTP/${request.httpVersion} request line` };
  const raw = request.rawHeaders;
  if (raw.length > 2 * MAX_HEADERS) return { page: TOO_MANY_HEADERS, reason: `more than ${MAX_HEADERS} header fields` };
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') hosts++;
  if (hosts > 1) return { page: BAD_REQUEST, reason: `${hosts} Host header fields` };
  if (hosts === 0 && request.httpVersionMinor === 1) return { page: BAD_REQUEST, reason: 'an HTTP/1.1 request without Host' };
  const headers = request.headers;
  const coding = headers['transfer-encoding'];
  if (coding !== undefined) {
    if (request.httpVersionMinor === 0) return { page: BAD_REQUEST, reason: 'Transfer-Encoding on an HTTP/1.0 request' };
    // Anything but exactly `chunked` (`identity, chunked`, `gzip, chunked`) is read
    // differently by different servers: forwarding it is how requests get smuggled.
    if (coding.trim().toLowerCase() !== 'chunked') return { page: NOT_IMPLEMENTED, reason: `Transfer-Encoding ${JSON.stringify(coding.slice(0, 64))}` };
  }
  if (headers.via?.includes(via)) return { page: LOOP, reason: 'the request came back to this proxy (its Via names us): a target leads back to rainbowd' };
  const target = normalizeTarget(request.url ?? '/');
  if (target === null) return { page: BAD_REQUEST, reason: 'a path that climbs above the root' };
  request.url = target;
  return null;
}

type ParseError = NodeJS.ErrnoException & { rawPacket?: Buffer };

/** The answer to a request Node's parser refused: the status nginx gives the same fault. */
export function answerParseError(error: ParseError, socket: Duplex): void {
  if (!(socket as Socket).writable) return void socket.destroy();
  sendRawPage(socket, parseErrorPage(error));
}

/** `GET / HTTP/3.0`, `GET / HTTP/1.2`: a version we do not speak (Node's parser knows 1.0 and 1.1 only), rather than a malformed request line. */
const LATER_VERSION = /^[^\r\n]* HTTP\/(?:[2-9]\.\d|1\.[2-9])\r?\n/;
/** A well-formed request line (RFC 9112 §3) whose method Node's parser does not know: `BREW / HTTP/1.1`, not a stray TLS handshake. */
const WELL_FORMED_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^\s]+ HTTP\/\d\.\d\r?\n/;

function parseErrorPage(error: ParseError): Page {
  if (error.code === 'HPE_HEADER_OVERFLOW') return TOO_MANY_HEADERS;
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return TIMEOUT;
  const start = error.rawPacket?.toString('latin1', 0, 8192) ?? '';
  if (error.code === 'HPE_INVALID_VERSION' && LATER_VERSION.test(start)) return VERSION_NOT_SUPPORTED;
  // RFC 9110 §9.1: an unrecognized method is answered 501.
  if (error.code === 'HPE_INVALID_METHOD' && WELL_FORMED_LINE.test(start)) return UNKNOWN_METHOD;
  return BAD_REQUEST;
}

/** Only WebSocket upgrades are tunnelled; any other Upgrade is ignored (RFC 9110 §7.8 lets a server) and the request served as it is. */
export function isWebSocketUpgrade(request: http.IncomingMessage): boolean {
  const upgrade = request.headers.upgrade;
  return upgrade !== undefined && /(?:^|,)\s*websocket\s*(?:,|$)/i.test(upgrade);
}

/**
 * The request's head without its upgrade (the `Upgrade` field and the `upgrade` token of
 * `Connection`), as bytes to parse again: Node 20's server hands any upgrade request over
 * as a raw socket (it has no shouldUpgradeCallback), so an `Upgrade: h2c` or a POST with
 * `Upgrade` is parsed a second time as the plain request it also is, body and all.
 */
export function headWithoutUpgrade(request: http.IncomingMessage): Buffer {
  const lines = [`${request.method} ${request.url} HTTP/${request.httpVersion}`];
  const raw = request.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'upgrade') continue;
    let value = raw[i + 1]!;
    if (lower === 'connection') {
      value = value
        .split(',')
        .map((token) => token.trim())
        .filter((token) => token !== '' && token.toLowerCase() !== 'upgrade')
        .join(', ');
      if (value === '') continue;
    }
    lines.push(`${name}: ${value}`);
  }
  // Node reads header bytes as latin1: writing them back the same way restores them exactly.
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}
