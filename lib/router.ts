import type { IncomingMessage } from 'node:http';

// Host and path -> service. An exact host beats a wildcard (`*.example.com`), which beats
// the catch-all (services with no hosts); within a host the longest path prefix wins. The
// table is rebuilt when services change, so a request costs a map lookup and a short scan.

/** Whatever can be routed to: it says which hosts and path prefix it answers. */
export interface Routable {
  route: { hosts: string[]; pathPrefix: string | null };
}

interface Route<T> {
  prefix: string | null;
  service: T;
}

export class Router<T extends Routable> {
  private exact = new Map<string, Array<Route<T>>>();
  private wildcards: Array<{ suffix: string; routes: Array<Route<T>> }> = [];
  private catchAll: Array<Route<T>> = [];

  constructor(services: Iterable<T> = []) {
    this.update(services);
  }

  update(services: Iterable<T>): void {
    const exact = new Map<string, Array<Route<T>>>();
    const wildcards = new Map<string, Array<Route<T>>>();
    const catchAll: Array<Route<T>> = [];
    const add = (table: Map<string, Array<Route<T>>>, key: string, route: Route<T>) => table.set(key, [...(table.get(key) ?? []), route]);
    for (const service of services) {
      const route = { prefix: service.route.pathPrefix, service };
      if (service.route.hosts.length === 0) catchAll.push(route);
      for (const host of service.route.hosts) {
        const name = host.toLowerCase();
        if (name.startsWith('*.')) add(wildcards, name.slice(1), route);
        else add(exact, name, route);
      }
    }
    for (const routes of [...exact.values(), ...wildcards.values(), catchAll]) routes.sort(byLongestPrefix);
    this.exact = exact;
    // Longest suffix first, so `*.api.example.com` beats `*.example.com`.
    this.wildcards = [...wildcards].map(([suffix, routes]) => ({ suffix, routes })).sort((a, b) => b.suffix.length - a.suffix.length);
    this.catchAll = catchAll;
  }

  route(request: IncomingMessage): T | null {
    const url = request.url ?? '/';
    if (this.exact.size === 0 && this.wildcards.length === 0) return match(this.catchAll, url);
    const host = hostName(request.headers.host);
    const exact = this.exact.get(host);
    if (exact) {
      const service = match(exact, url);
      if (service) return service;
    }
    for (const { suffix, routes } of this.wildcards) {
      if (host.endsWith(suffix) && host.length > suffix.length) {
        const service = match(routes, url);
        if (service) return service;
      }
    }
    return match(this.catchAll, url);
  }
}

function match<T>(routes: Array<Route<T>>, url: string): T | null {
  for (const { prefix, service } of routes) {
    if (prefix === null || underPrefix(url, prefix)) return service;
  }
  return null;
}

/** `/api`, `/api/x` and `/api?q` are under `/api`; `/apis` is not. */
export function underPrefix(url: string, prefix: string): boolean {
  if (!url.startsWith(prefix)) return false;
  const next = url.charCodeAt(prefix.length);
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */;
}

/** The URL as the app behind a stripped prefix sees it: `/api/users?x` -> `/users?x`. */
export function stripPrefix(url: string, prefix: string): string {
  const rest = url.slice(prefix.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

function byLongestPrefix<T>(a: Route<T>, b: Route<T>): number {
  return (b.prefix?.length ?? -1) - (a.prefix?.length ?? -1);
}

/** `Example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`; `example.com.` (fully qualified) -> `example.com`. */
function hostName(header: string | undefined): string {
  if (!header) return '';
  const host = header.toLowerCase();
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.indexOf(':');
  const name = colon === -1 ? host : host.slice(0, colon);
  return name.endsWith('.') ? name.slice(0, -1) : name;
}
