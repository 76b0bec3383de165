import net from 'node:net';
import { defaultWorkers } from './config.js';
import { BAD_GATEWAY, BAD_REQUEST, type Page, pageBody, RESTARTING } from './pages.js';
import { CLIENT_CLAIM_FIELDS, type ForwardedField } from './forward-headers.js';
import type { RouteTable, ServiceRoute } from './route-table.js';

// HAProxy's config, generated from the route table: the routing of router.ts as rules
// (exact host, then wildcard by longest suffix, then the catch-all; within each the longest
// path prefix, `/api` matching `/api`, `/api/x` and `/api?q` but not `/apis`), one backend
// per service holding its generations as servers, the forwarded header fields of
// forward-headers.ts, and the fallback: rainbowd's own proxy on a unix socket, which answers
// everything that is not "a running service with an active generation" (404, the starting
// page, paused and stopped services). Which services HAProxy serves itself is the map
// ACTIVE_MAP (service -> backend), changed at run time without a reload.

/** A generation HAProxy holds as a server: the active one of its service, or one draining. */
export interface HaproxyServer {
  key: number;
  generation: number;
  service: string;
  host: string;
  port: number;
  /** Takes new requests (the service's active generation); else it is draining, `disabled` in a fresh config. */
  serving: boolean;
}

export interface HaproxyPaths {
  adminSocket: string;
  activeMap: string;
  fallbackSocket: string;
}

export const FRONTEND = 'rainbowd';
export const FALLBACK_BACKEND = 'fallback';
/** The field in which HAProxy names the client to the fallback (see forward-headers.ts). */
export const CLIENT_ADDRESS_FIELD = 'x-rainbowd-client';

// Options a dynamic server must be given on `add server` itself: it does not inherit
// default-server, and without connection reuse HAProxy measured 0.34x its throughput.
export const SERVER_OPTIONS = 'pool-max-conn -1 pool-purge-delay 4s';

/**
 * HAProxy's threads: as many as rainbowd's own proxy workers by default (one on 2 cores),
 * since the app shares the cores. HAProxy's default, a thread per core, measured 10.7k
 * against 13.4k req/s on the hello app on 2 cores, and ~1 MB more RSS.
 */
const HAPROXY_THREADS = Math.max(1, defaultWorkers());

// Old workers keep the connections they had at a reload until those end: no longer than this.
const HARD_STOP_AFTER = '10m';

const TIMEOUT: Page = { status: 408, title: 'Request Timeout', text: 'The request was not received in time.' };
const GATEWAY_TIMEOUT: Page = { status: 504, title: 'Gateway Timeout', text: 'The app did not answer in time.' };
// HAProxy answers 503 when the app refused the connection (it crashed and is being restarted).
// A request its connection layer cannot parse (400) or whose headers do not come in time
// (408) gets HAProxy's built-in page instead: 2.6 lets no config replace those (mux_h1).
const ERROR_PAGES = [BAD_REQUEST, TIMEOUT, BAD_GATEWAY, RESTARTING, GATEWAY_TIMEOUT];

/** HAProxy's answer when the fallback does not answer: no rainbowd runs (it was killed, and the next one has not started yet). */
const DAEMON_RESTARTING: Page = { status: 503, title: 'Service Unavailable', text: 'rainbowd is restarting. Try again in a moment.', retryAfter: 1 };

/** Sent again once when the app closed the connection without answering, as the node engine does. */
const IDEMPOTENT_METHODS = 'GET HEAD PUT DELETE OPTIONS TRACE';

/** `%41`: a percent-encoded letter, digit, `-`, `.`, `_` or `~` (RFC 3986 §2.3), which request-path.ts decodes. */
const ENCODED_UNRESERVED = '%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])';


export function backendOf(service: string): string {
  return `svc_${service}`;
}

/** By generation number, not the daemon's key: a rainbowd that takes HAProxy over addresses the servers it finds. */
export function serverName(generation: number): string {
  return `g${generation}`;
}

/** What a reload must change: services, their routes, the header rules. Mode and generations change at run time. */
export function routingSignature(table: RouteTable): string {
  const routes = table.services.map(({ name, hosts, pathPrefix, stripPathPrefix }) => ({ name, hosts, pathPrefix, stripPathPrefix }));
  return JSON.stringify({ routes, trustedProxies: table.trustedProxies, forwardedFields: table.forwardedFields, via: table.via });
}

/** The backend HAProxy sends a service's requests to, or null: then the fallback answers them. */
export function activeBackend(route: ServiceRoute): string | null {
  return route.mode === 'running' && route.upstream !== null ? backendOf(route.name) : null;
}

/** ACTIVE_MAP's content for the table. */
export function activeMap(table: RouteTable): string {
  return table.services.flatMap((route) => {
    const backend = activeBackend(route);
    return backend === null ? [] : [`${route.name} ${backend}\n`];
  }).join('');
}

/** Where the frontend listens; closed once rainbowd shuts down, for good: a reload must not open it again. */
export interface HaproxyListener {
  host: string;
  port: number;
  closed?: boolean;
}

export function haproxyConfig(table: RouteTable, servers: HaproxyServer[], listen: HaproxyListener, paths: HaproxyPaths): string {
  const routing = routingRules(table.services);
  const lines = [
    '# Written by rainbowd from its route table, and again on every change of services or routes.',
    'global',
    // nice -1024: a switch's and a drain's commands run before the traffic HAProxy is busy
    // with, as HAProxy's manual advises for an admin socket. Ten deploys under load twice
    // each: first healthy answer → switched, median 5 and 5 ms with it, 6 and 7 ms without.
    `  stats socket ${paths.adminSocket} mode 600 level admin nice -1024`,
    `  hard-stop-after ${HARD_STOP_AFTER}`,
    `  nbthread ${HAPROXY_THREADS}`,
    '',
    'defaults',
    '  mode http',
    // An idle connection to the app serves any client's request, as nginx's upstream keepalive
    // and the node engine's pool do: with the default (safe) a client that closes its
    // connection after each request (nginx's default proxying) opened one to the app each time.
    '  http-reuse always',
    // A reload hands the listeners to a new worker: the old one closes each kept-alive client
    // connection after its next answer, not while the client may be sending on it.
    '  option idle-close-on-response',
    '  timeout connect 5s',
    // As the node engine, which does not bound how long an app takes to answer or stream.
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout tunnel 1h',
    '  timeout http-request 10s',
    '  timeout http-keep-alive 65s',
    // A half-closed tunnel would otherwise hold a drain until timeout tunnel.
    '  timeout client-fin 5s',
    '  timeout server-fin 5s',
    // Once, when the app closed a kept-alive connection as the request went out (as the node
    // engine). A refused connection is not retried: the app is down, and HAProxy would wait a
    // second before the retry; the client gets the 503 at once. HAProxy copies each request's
    // 16 KB buffer to be able to send it again (33k of the 77.5k instructions callgrind counts
    // a request, counting the copy byte by byte: far less of its time); without it the race of a
    // kept-alive connection the app closes loses the request (data-path-contract.test.ts).
    '  retries 1',
    '  retry-on empty-response',
    ...ERROR_PAGES.map(errorPage),
    '',
    `frontend ${FRONTEND}`,
    bindLine(listen),
    ...(listen.closed ? ['  disabled'] : []),
    ...routing.rules,
    // An old worker after a reload answers one more request on each kept-alive connection
    // (idle-close-on-response), by its old routes: the fallback routes it by the current ones.
    `  use_backend ${FALLBACK_BACKEND} if { stopping }`,
    // A request that already passed through us: the fallback answers it 508, as the node engine.
    `  use_backend ${FALLBACK_BACKEND} if { req.hdr(via) -m sub ${table.via} }`,
    // A target not in origin form (`http://host/x`, `*`), a path with dot segments or
    // percent-encoded unreserved characters: the fallback routes and forwards it in origin
    // form, normalized (request-path.ts), or refuses it, as the node engine does. The regex
    // only runs on a path with a `%` in it: most have none.
    `  use_backend ${FALLBACK_BACKEND} if !{ url -m beg / } or { path -m sub /. } or { path -m sub % } { path -m reg ${ENCODED_UNRESERVED} }`,
    `  use_backend %[${routing.service},map(${paths.activeMap},${FALLBACK_BACKEND})]`,
    `  default_backend ${FALLBACK_BACKEND}`,
    '',
    `backend ${FALLBACK_BACKEND}`,
    // HAProxy outlives a killed rainbowd: until the next one listens, this is what the fallback's requests get.
    errorPage(DAEMON_RESTARTING),
    `  http-request set-header ${CLIENT_ADDRESS_FIELD} %[src]`,
    `  server fallback unix@${paths.fallbackSocket}`,
  ];
  for (const route of table.services) {
    lines.push('', `backend ${backendOf(route.name)}`, ...serviceRules(route, table, listen));
    for (const server of servers.filter((candidate) => candidate.service === route.name)) {
      lines.push(`  server ${serverName(server.generation)} ${serverAddress(server)} ${SERVER_OPTIONS}${server.serving ? '' : ' disabled'}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The frontend's bind line: in the config a rainbowd takes over, it says where HAProxy listens. */
export function bindLine({ host, port }: HaproxyListener): string {
  return `  bind ${host}:${port}`;
}

export function serverAddress({ host, port }: { host: string; port: number }): string {
  return `${host}:${port}`;
}

/**
 * The service that routes the request, as a sample expression: txn.service, which the rules
 * set (the first rule that matches wins), or the service's name when a lone catch-all
 * service routes every request (the common case, one app): no rule then, which measured
 * ~1k of HAProxy's ~87k instructions a request.
 */
function routingRules(services: ServiceRoute[]): { rules: string[]; service: string } {
  const [only] = services;
  if (services.length === 1 && only!.hosts.length === 0 && only!.pathPrefix === null) return { rules: [], service: `str(${only!.name})` };
  const exact = new Map<string, ServiceRoute[]>();
  const wildcards = new Map<string, ServiceRoute[]>();
  const catchAll: ServiceRoute[] = [];
  for (const route of services) {
    if (route.hosts.length === 0) catchAll.push(route);
    for (const host of route.hosts.map((name) => name.toLowerCase())) {
      const table = host.startsWith('*.') ? wildcards : exact;
      const key = host.startsWith('*.') ? host.slice(1) : host;
      table.set(key, [...(table.get(key) ?? []), route]);
    }
  }
  const rules: string[] = [];
  if (exact.size > 0 || wildcards.size > 0) {
    // As router.ts: lower case, without the port or a trailing dot.
    rules.push('  http-request set-var(txn.host) req.hdr(host),lower,regsub(:[0-9]*$,),regsub([.]$,)');
  }
  const add = (hostCondition: string, routes: ServiceRoute[]) => {
    for (const route of [...routes].sort(byLongestPrefix)) {
      const alternatives = route.pathPrefix === null ? [''] : [` { path -m str ${route.pathPrefix} }`, ` { path -m beg ${route.pathPrefix}/ }`];
      const condition = alternatives.map((path) => `!{ var(txn.service) -m found }${hostCondition}${path}`).join(' or ');
      rules.push(`  http-request set-var(txn.service) str(${route.name}) if ${condition}`);
    }
  };
  for (const [host, routes] of exact) add(` { var(txn.host) -m str ${host} }`, routes);
  for (const [suffix, routes] of [...wildcards].sort(([a], [b]) => b.length - a.length)) add(` { var(txn.host) -m end ${suffix} }`, routes);
  add('', catchAll);
  return { rules, service: 'var(txn.service)' };
}

/**
 * A service's backend: the prefix stripped, the forwarded fields of forward-headers.ts, the
 * retry rule. Each rule costs HAProxy per request (1.5–3.5k instructions an added field, of
 * its ~81k a request with the default fields; HAProxy alone ~65k), so a field the client's claims were deleted from is
 * added without asking whether it is there, and a client on an IPv4 listener needs no IPv6 quoting.
 */
function serviceRules(route: ServiceRoute, table: RouteTable, listen: HaproxyListener): string[] {
  const rules: string[] = [];
  if (route.pathPrefix !== null && route.stripPathPrefix) rules.push(`  http-request replace-path ^${escapeRegExp(route.pathPrefix)}/?(.*)$ /\\1`);
  const trusted = table.trustedProxies.length > 0;
  if (trusted) rules.push(`  acl trusted src ${table.trustedProxies.join(' ')}`);
  rules.push(`  http-request del-header ^(${CLIENT_CLAIM_FIELDS.join('|')})$ -m reg${trusted ? ' unless trusted' : ''}`);
  /** A claim of the client's that a trusted proxy may have made: kept then, else added. */
  const unlessClaimed = (field: string) => (trusted ? ` unless { req.hdr(${field}) -m found }` : '');
  const fields = new Set(table.forwardedFields);
  const sets = (field: ForwardedField, ...lines: string[]) => (fields.has(field) ? lines : []);
  const ipv4Only = net.isIPv4(listen.host);
  // The client's address as text, formatted into a variable once (concat() makes it a
  // string) when two fields or more use it: each %[src] formats it again (~1.5k instructions),
  // but the variable costs ~1.1k itself, more than the one %[src] of the default fields.
  const clientUses = [fields.has('x-forwarded-for'), fields.has('x-real-ip'), fields.has('forwarded') && ipv4Only].filter(Boolean).length;
  const client = clientUses > 1 ? '%[var(txn.client)]' : '%[src]';
  const forwardedFor = ipv4Only ? client : '%[var(txn.forwarded_for)]';
  rules.push(
    ...(clientUses > 1 ? ['  http-request set-var(txn.client) src,concat()'] : []),
    ...sets('x-forwarded-for', `  http-request add-header x-forwarded-for ${client}`),
    ...sets('x-forwarded-proto', `  http-request add-header x-forwarded-proto http${unlessClaimed('x-forwarded-proto')}`),
    ...sets('x-forwarded-host', `  http-request add-header x-forwarded-host %[req.hdr(host)] if { req.hdr(host) -m found }${trusted ? ' !{ req.hdr(x-forwarded-host) -m found }' : ''}`),
    ...sets(
      'forwarded',
      // An IPv6 node is quoted and bracketed in Forwarded (RFC 7239 §6), as forward-headers.ts does.
      ...(ipv4Only
        ? []
        : ['  http-request set-var(txn.forwarded_for) src unless { src -m sub : }', '  http-request set-var-fmt(txn.forwarded_for) "\\"[%[src]]\\"" if { src -m sub : }']),
      `  http-request add-header forwarded "for=${forwardedFor};proto=http;host=\\"%[req.hdr(host)]\\"" if { req.hdr(host) -m found }`,
      `  http-request add-header forwarded "for=${forwardedFor};proto=http" unless { req.hdr(host) -m found }`,
    ),
    ...sets('x-real-ip', `  http-request add-header x-real-ip ${client}${unlessClaimed('x-real-ip')}`),
    `  http-request add-header via "%[req.ver] ${table.via}"`,
    '  http-request add-header x-request-id %[uuid] unless { req.hdr(x-request-id) -m found }',
    `  http-request disable-l7-retry unless { method ${IDEMPOTENT_METHODS} }`,
  );
  return rules;
}

function byLongestPrefix(a: ServiceRoute, b: ServiceRoute): number {
  return (b.pathPrefix?.length ?? -1) - (a.pathPrefix?.length ?? -1);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\\\$&');
}

function errorPage(page: Page): string {
  return `  http-error status ${page.status} content-type "text/plain; charset=utf-8" string ${quote(pageBody(page))} hdr cache-control no-store${page.retryAfter === undefined ? '' : ` hdr retry-after ${page.retryAfter}`}`;
}

/** A double-quoted HAProxy string: its escapes are the backslash ones. */
function quote(text: string): string {
  return `"${text.replace(/[\\"$]/g, '\\$&').replace(/\n/g, '\\n')}"`;
}
