import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type http from 'node:http';
import { RainbowError } from './errors.js';

// Who may talk to the control API. It can deploy, stop and pause every site on the server,
// and it listens where the operator's own browser can reach it: any page they visit can
// send it requests, and the browser carries them out even when it hides the answer. The
// checks run before the request's body is read and before any action, so a refused request
// changes nothing.

export interface ControlListener {
  /** The address the TCP listener is bound to (controlHost) and its port. */
  host: string;
  port: number;
  /** The bearer token every request must carry; null = none configured. */
  token: string | null;
}

/** How the request arrived: over TCP, or over the unix socket (controlSocket). */
export type ControlTransport = 'tcp' | 'unix';

const LOOPBACK_NAMES = new Set(['localhost', '::1']);
const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::']);

/** Why the request may not be served, or null when it may. */
export function refusal(request: http.IncomingMessage, listener: ControlListener, transport: ControlTransport): RainbowError | null {
  return crossSite(request, transport) ?? misdirected(request, listener, transport) ?? unauthorized(request, listener);
}

// CSRF: a page on another site can make the browser send a "simple" POST (no preflight)
// here. Browsers mark such requests with Origin and Sec-Fetch-Site; curl, the CLI and git
// hooks send neither. The only origin allowed is the listener's own, as the Host names it:
// a page would need to be served by the control API itself, which serves none.
function crossSite(request: http.IncomingMessage, transport: ControlTransport): RainbowError | null {
  const site = request.headers['sec-fetch-site'];
  // Browsers send cross-site, same-site, same-origin or none; anything but the last two is refused.
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    return new RainbowError('CROSS_SITE_REQUEST', `the control API does not take requests from web pages (Sec-Fetch-Site: ${site.slice(0, 100)}); use the rainbowd CLI or curl`);
  }
  const origin = request.headers.origin;
  if (origin === undefined) return null;
  const host = request.headers.host;
  const ownOrigin = transport === 'tcp' && host !== undefined && origin.toLowerCase() === `http://${host.toLowerCase()}`;
  if (ownOrigin) return null;
  return new RainbowError('CROSS_SITE_REQUEST', `the control API does not take requests from web pages (Origin: ${origin.slice(0, 100)}); use the rainbowd CLI or curl`);
}

// DNS rebinding: a page on evil.example re-points its own name at 127.0.0.1 and is then
// "same-origin" with the control API, Origin and all. The browser still sends
// `Host: evil.example`, so only names this listener is reached by are served: loopback
// addresses and localhost, and with a token also the controlHost it is bound to (any IP
// literal when that is a wildcard: a page cannot rebind an IP literal). No Host at all
// (HTTP/1.0; HTTP/1.1 without one is refused by Node with 400) is a local script, never a
// browser, and is served. Over the unix socket Host means nothing: browsers cannot reach it.
function misdirected(request: http.IncomingMessage, listener: ControlListener, transport: ControlTransport): RainbowError | null {
  const header = request.headers.host;
  if (transport === 'unix' || header === undefined) return null;
  const match = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(header);
  const name = match?.[1]?.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  const port = match?.[2];
  if (name !== undefined && (port === undefined || Number(port) === listener.port) && namesListener(name, listener)) return null;
  return new RainbowError('MISDIRECTED_REQUEST', `the control API answers only to Host names of this machine's loopback (127.0.0.1, [::1], localhost) and its port ${listener.port}, got Host: ${header.slice(0, 100)}`);
}

function namesListener(name: string, listener: ControlListener): boolean {
  if (LOOPBACK_NAMES.has(name) || (isIP(name) === 4 && name.startsWith('127.'))) return true;
  if (listener.token === null) return false;
  if (WILDCARD_ADDRESSES.has(listener.host)) return isIP(name) !== 0;
  return name === listener.host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
}

// The token, when set, is what lets the control API listen beyond loopback. Compared as
// digests in constant time so that neither its content nor its length leaks through timing.
function unauthorized(request: http.IncomingMessage, listener: ControlListener): RainbowError | null {
  if (listener.token === null) return null;
  const given = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
  if (given !== undefined && timingSafeEqual(digest(given), digest(listener.token))) return null;
  const what = given === undefined ? 'no Authorization: Bearer token was sent' : 'the token is wrong';
  return new RainbowError('UNAUTHORIZED', `the control API needs its token and ${what}; the rainbowd CLI sends the config's controlToken or RAINBOWD_CONTROL_TOKEN`);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
