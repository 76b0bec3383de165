import { lookup } from 'node:dns/promises';
import net from 'node:net';
import os from 'node:os';

// An external service's `host:port`, and the one target it may never be: rainbowd itself.
// A target that reaches rainbowd's own proxy sends each request back into the proxy, which
// sends it on again: one request opened 2,048 connections before the daemon ran out of file
// descriptors. The check is deliberately broad: any address of this machine at the proxy or
// control port counts, whatever address rainbowd listens on, since a listener on 0.0.0.0 or
// :: is reached through every one of them. Names are resolved only when the port is one of
// ours, so a target elsewhere costs no lookup.

// A name that takes longer to resolve is not this machine's: its own names are in /etc/hosts.
const LOOKUP_TIMEOUT_MS = 2000;

// Loopback, and the unspecified addresses: connecting to 0.0.0.0 or :: reaches this machine.
const alwaysThisMachine = new net.BlockList();
alwaysThisMachine.addSubnet('127.0.0.0', 8, 'ipv4');
alwaysThisMachine.addAddress('0.0.0.0', 'ipv4');
alwaysThisMachine.addAddress('::1', 'ipv6');
alwaysThisMachine.addAddress('::', 'ipv6');

/** `host:port` or `[IPv6]:port` as host and port; null when `target` is not one. */
export function parseTarget(target: string): { host: string; port: number } | null {
  const match = /^([^\s:/]+|\[[0-9a-fA-F:]+\]):(\d+)$/.exec(target);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) return null;
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

/** A target the config validated (config.ts): its host and port. */
export function splitTarget(target: string): { host: string; port: number } {
  const parsed = parseTarget(target);
  if (!parsed) throw new Error(`not a host:port target: ${JSON.stringify(target)}`);
  return parsed;
}

/** Why `target` would send requests back into rainbowd (listening on `own`), or null when it does not. */
export async function findTargetLoop(target: string | undefined, own: { port: number; controlPort: number }): Promise<string | null> {
  if (target === undefined) return null;
  const { host, port } = splitTarget(target);
  const listener = port === own.port ? 'proxy' : port === own.controlPort ? 'control API' : null;
  if (listener === null) return null;
  const local = (await addressesOf(host)).find(isThisMachine);
  if (local === undefined) return null;
  const resolved = local === host ? '' : `, ${host} is ${local}`;
  return `${target} is rainbowd's own ${listener} (port ${port} on this machine${resolved}): every request would come back into rainbowd in a loop; give the address of the app`;
}

async function addressesOf(host: string): Promise<string[]> {
  if (net.isIP(host)) return [host];
  // RFC 6761: localhost and its subdomains are this machine, whatever the resolver says.
  if (/(^|\.)localhost$/i.test(host)) return ['127.0.0.1'];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<[]>((resolve) => (timer = setTimeout(() => resolve([]), LOOKUP_TIMEOUT_MS)));
  const found = lookup(host, { all: true }).then(
    (addresses) => addresses.map((entry) => entry.address),
    () => [], // a name that does not resolve reaches nothing, rainbowd included
  );
  return Promise.race([found, timeout]).finally(() => clearTimeout(timer));
}

function isThisMachine(address: string): boolean {
  const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
  if (alwaysThisMachine.check(address, family)) return true;
  const interfaces = new net.BlockList();
  for (const entry of Object.values(os.networkInterfaces()).flat()) {
    if (entry) interfaces.addAddress(entry.address, entry.family === 'IPv6' ? 'ipv6' : 'ipv4');
  }
  return interfaces.check(address, family);
}
