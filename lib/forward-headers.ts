import { randomUUID } from 'node:crypto';
import type http from 'node:http';

// The header fields a request is forwarded with and a response is answered with,
// independent of the engine that carries them. Hop-by-hop fields (RFC 9110 §7.6.1) describe
// one connection and stop at the proxy, in both directions; fields saying who the client
// is are set by us, since anyone can send them, unless the peer is a trusted proxy.

/** Hop-by-hop in both directions, whether or not `Connection` names them. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const HOP_BY_HOP_LENGTHS = new Set([...HOP_BY_HOP].map((name) => name.length));
/** What a client says about where the request came from: believed only from a trusted proxy (both engines drop these). */
export const CLIENT_CLAIM_FIELDS = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip'] as const;
const CLIENT_CLAIMS = new Set<string>(CLIENT_CLAIM_FIELDS);
/**
 * The fields rainbowd can set to say who the client is (config `forwardedFields`). By default
 * the three X-Forwarded ones, as nginx's usual setup, Caddy and kamal-proxy send: `Forwarded`
 * and `X-Real-IP` say the same again, and each field costs the proxy and the app on every
 * request (HAProxy: 6.9k instructions for these two, of its 87.7k a request; callgrind).
 */
export const FORWARDED_FIELDS = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-real-ip'] as const;
export type ForwardedField = (typeof FORWARDED_FIELDS)[number];
export const DEFAULT_FORWARDED_FIELDS: readonly ForwardedField[] = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'];
/** Never dropped because `Connection` names them: without them the request would change meaning or framing. */
const END_TO_END = new Set(['host', 'content-length']);

export interface Forwarding {
  /** Peers (the local nginx) whose X-Forwarded-*, Forwarded and X-Real-IP are kept and extended. */
  trustedProxies: ReadonlySet<string>;
  /**
   * The fields we set. A client's claims are dropped whether or not we set that field; a
   * trusted proxy's are kept, extended only where we set the field.
   */
  fields: ReadonlySet<ForwardedField>;
  /** This daemon's token, added to `Via` to detect loops (see request-framing.ts). */
  via: string;
  /**
   * The field in which the peer, HAProxy in front of the haproxy engine's fallback, names the
   * client; it is never forwarded. Only for a listener no one else can reach.
   */
  clientAddressField?: string;
}

/**
 * The fields to forward `request` with: its own less the hop-by-hop ones and unbelieved claims,
 * plus ours. A chunked body is framed again by the engine. `Expect: 100-continue` is answered
 * here (Node's server sends the 100 itself) and the body follows to the app as any other:
 * undici cannot send `Expect`, and an unasked 100 from the app would break its answer.
 */
export function requestHeaders(request: http.IncomingMessage, forwarding: Forwarding, websocket: boolean): http.IncomingHttpHeaders {
  const received = request.headers;
  const address = clientAddress(request, forwarding.clientAddressField);
  const trusted = forwarding.trustedProxies.has(address);
  const named = connectionOptions(received.connection);
  const headers: http.IncomingHttpHeaders = {};
  for (const name in received) {
    if (HOP_BY_HOP.has(name) || (!trusted && CLIENT_CLAIMS.has(name)) || named?.has(name) || name === 'expect' || name === forwarding.clientAddressField) continue;
    headers[name] = received[name];
  }
  if (websocket) {
    headers.connection = 'Upgrade';
    headers.upgrade = received.upgrade;
  }
  const proto = 'encrypted' in request.socket ? 'https' : 'http';
  const host = received.host;
  const { fields } = forwarding;
  if (fields.has('x-forwarded-for')) headers['x-forwarded-for'] = trusted ? append(headers['x-forwarded-for'], address) : address;
  if (fields.has('x-forwarded-proto')) headers['x-forwarded-proto'] = (trusted && headers['x-forwarded-proto']) || proto;
  if (fields.has('x-forwarded-host') && host !== undefined) headers['x-forwarded-host'] = (trusted && headers['x-forwarded-host']) || host;
  if (fields.has('forwarded')) {
    const hop = `for=${forwardedNode(address)};proto=${proto}${host === undefined ? '' : `;host=${quoted(host)}`}`;
    headers.forwarded = trusted ? append(headers.forwarded, hop) : hop;
  }
  if (fields.has('x-real-ip')) headers['x-real-ip'] = (trusted && headers['x-real-ip']) || address;
  headers.via = append(headers.via, `${request.httpVersion} ${forwarding.via}`);
  headers['x-request-id'] ??= randomUUID();
  return headers;
}

/**
 * The fields of an app's response (raw, as undici hands them: name, value, ...) to answer the
 * client with, flat as `writeHead` takes them: less what concerns only the app's connection
 * to us, since the proxy frames the answer again. Bytes are kept as they came (latin1).
 * One pass, lower-casing only names as long as a hop-by-hop one: it runs on every answer.
 */
export function responseHeaders(raw: ReadonlyArray<Buffer | string>): string[] {
  let named: Set<string> | null = null;
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = latin1(raw[i]!);
    if (HOP_BY_HOP_LENGTHS.has(name.length)) {
      const lower = name.toLowerCase();
      if (lower === 'connection') named = connectionOptions(latin1(raw[i + 1]!));
      if (HOP_BY_HOP.has(lower)) continue;
    }
    headers.push(name, latin1(raw[i + 1]!));
  }
  return named === null ? headers : withoutFields(headers, named);
}

const CLOSE = /(?:^|,)\s*close\s*(?:,|$)/i;

/** Whether an app's answer (raw fields, as undici hands them) says it closes the connection after it. */
export function closesConnection(raw: Buffer[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toString('latin1').toLowerCase() === 'connection') return CLOSE.test(raw[i + 1]!.toString('latin1'));
  }
  return false;
}

/**
 * Whether the reading of an app's answer (raw fields) may stop while a slow client catches up,
 * `received` bytes of its body in. undici 7 takes the process down (an assertion in its
 * socket's end handler, nodejs/undici#5360) if the app's end of the connection is read while
 * it is stopped: so not on an answer that closes its connection, or that the close ends (no
 * Content-Length, not chunked), or whose Content-Length has all come. Such a rest is bounded
 * by the answer; a kept-alive, framed answer is held back at the app.
 */
export function mayHoldBack(raw: Buffer[], received: number): boolean {
  let length: number | null = null;
  let chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    if (name === 'connection' && CLOSE.test(raw[i + 1]!.toString('latin1'))) return false;
    if (name === 'content-length') length ??= Number(raw[i + 1]!.toString('latin1'));
    if (name === 'transfer-encoding') chunked = /(?:^|,)\s*chunked\s*$/i.test(raw[i + 1]!.toString('latin1'));
  }
  return chunked || (length !== null && received < length);
}

function latin1(text: Buffer | string): string {
  return typeof text === 'string' ? text : text.toString('latin1');
}

function withoutFields(headers: string[], names: Set<string>): string[] {
  const kept: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (!names.has(headers[i]!.toLowerCase())) kept.push(headers[i]!, headers[i + 1]!);
  return kept;
}

/** The fields `Connection` names, beyond its own options (close, keep-alive, upgrade). */
function connectionOptions(value: string | undefined): Set<string> | null {
  // What nearly every app and client sends, without splitting it.
  if (value === undefined || value === 'keep-alive' || value === 'close') return null;
  let names: Set<string> | null = null;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === '' || name === 'close' || HOP_BY_HOP.has(name) || END_TO_END.has(name)) continue;
    (names ??= new Set()).add(name);
  }
  return names;
}

function clientAddress(request: http.IncomingMessage, field: string | undefined): string {
  const named = field === undefined ? undefined : request.headers[field];
  const raw = typeof named === 'string' ? named : (request.socket.remoteAddress ?? '');
  return raw.startsWith('::ffff:') ? raw.slice(7) : raw;
}

function append(list: string | string[] | undefined, item: string): string {
  return list ? `${String(list)}, ${item}` : item;
}

/** RFC 7239 §6: an IPv6 address is bracketed and quoted. */
function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address || 'unknown';
}

function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
