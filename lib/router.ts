import type { IncomingMessage } from 'node:http';
import type { Service } from './service.js';

// Host -> service. An exact host beats a wildcard (`*.example.com`), which beats the
// catch-all service (the one with no hosts). The table is rebuilt when services change, so
// a request costs one map lookup in the common case.

export class Router {
  private exact = new Map<string, Service>();
  private wildcards: Array<{ suffix: string; service: Service }> = [];
  private catchAll: Service | null = null;

  constructor(services: Iterable<Service> = []) {
    this.update(services);
  }

  update(services: Iterable<Service>): void {
    const exact = new Map<string, Service>();
    const wildcards: Array<{ suffix: string; service: Service }> = [];
    let catchAll: Service | null = null;
    for (const service of services) {
      if (service.config.hosts.length === 0) catchAll = service;
      for (const host of service.config.hosts) {
        const name = host.toLowerCase();
        if (name.startsWith('*.')) wildcards.push({ suffix: name.slice(1), service });
        else exact.set(name, service);
      }
    }
    // Longest suffix first, so `*.api.example.com` beats `*.example.com`.
    wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
    this.exact = exact;
    this.wildcards = wildcards;
    this.catchAll = catchAll;
  }

  route(request: IncomingMessage): Service | null {
    if (this.exact.size === 0 && this.wildcards.length === 0) return this.catchAll;
    const host = hostName(request.headers.host);
    const exact = this.exact.get(host);
    if (exact) return exact;
    for (const { suffix, service } of this.wildcards) {
      if (host.endsWith(suffix) && host.length > suffix.length) return service;
    }
    return this.catchAll;
  }
}

/** `Example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`. */
function hostName(header: string | undefined): string {
  if (!header) return '';
  const host = header.toLowerCase();
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
