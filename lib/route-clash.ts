// Two services may not answer the same host and path prefix: requests would go silently to
// one of them. The config file, `rainbowd deploy`, a restored state file and a reload all
// apply this one rule.

/** What a service claims of the routes. */
export interface RouteClaim {
  name: string;
  /** Host names (exact or `*.example.com`); none = the catch-all. */
  hosts: string[];
  pathPrefix: string | null;
}

/** Names the service that already answers a route `candidate` wants; null when none does. */
export function findRouteClash(services: Iterable<RouteClaim>, candidate: RouteClaim): string | null {
  const wanted = new Set(routeKeys(candidate));
  for (const service of services) {
    if (service.name === candidate.name) continue;
    const taken = routeKeys(service).find((key) => wanted.has(key));
    if (taken !== undefined) return `host is used by another service: ${describeRouteKey(taken)} belongs to "${service.name}"`;
  }
  return null;
}

function routeKeys(service: RouteClaim): string[] {
  const hosts = service.hosts.length === 0 ? [''] : service.hosts.map((host) => host.toLowerCase());
  return hosts.map((host) => `${host} ${service.pathPrefix ?? '/'}`);
}

function describeRouteKey(key: string): string {
  const [host, prefix] = key.split(' ');
  const where = host === '' ? 'the catch-all host' : `host ${host}`;
  return prefix === '/' ? where : `${where} with path ${prefix}`;
}
