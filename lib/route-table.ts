import type { Listener } from './listen.js';
import type { ServiceMode } from './api.js';
import type { ForwardedField } from './forward-headers.js';

// What the data path knows of the services: a plain-data table the supervisor publishes on
// every switch, route change or pause, so a proxy in a worker process routes exactly like
// one in the daemon's own process.

/** One generation as the proxy sees it; `key` is unique for the daemon's life. */
export interface UpstreamAddress {
  key: number;
  /** Its number in its service: the same in the rainbowd that takes it over (HAProxy names its server by it). */
  generation: number;
  host: string;
  port: number;
}

export interface ServiceRoute {
  name: string;
  hosts: string[];
  pathPrefix: string | null;
  stripPathPrefix: boolean;
  mode: ServiceMode;
  message: string | null;
  maxPauseMs: number;
  /** The active generation; null while none serves (starting, crashed, failed deploy). */
  upstream: UpstreamAddress | null;
}

export interface RouteTable {
  services: ServiceRoute[];
  trustedProxies: string[];
  /** Which fields saying who the client is the data path sets (forward-headers.ts). */
  forwardedFields: readonly ForwardedField[];
  /** This daemon's token in `Via`, the same in every proxy worker: a request that already carries it has looped back. */
  via: string;
}

/**
 * The proxy as the supervisor drives it, in this process or in workers. A deploy publishes
 * the table with the new generation, waits until the previous one is idle, then releases it.
 * Every implementation honours the same contract, tested once against each of them in
 * test/unit/data-path-contract.test.ts: each new request is routed by the last table
 * published (503 while a service has no upstream); requests in flight are counted per
 * upstream until they end; `whenIdle` resolves once none is; `release` closes the upstream's
 * sockets and says how many requests it cut; a paused service's requests wait until its mode
 * is running again (503 after `maxPauseMs`), a stopped one's get the maintenance page.
 */
export interface DataPath {
  listen(port: number, host: string): Promise<void>;
  update(table: RouteTable): void;
  /**
   * Resolves once new requests are routed by every table published before: at once where an
   * update takes effect as it is published (or one IPC message later, in proxy workers); after
   * its reload with HAProxy, whose new routes need one.
   */
  whenRouted(): Promise<void>;
  /** Resolves once no request or upgraded connection is in flight to the upstream. */
  whenIdle(key: number): Promise<void>;
  /** Closes the upstream's sockets, cutting whatever is still in flight; resolves to how many were cut. */
  release(key: number): Promise<number>;
  /** Requests in flight to the upstream (from workers: as of their last report; from HAProxy: as of `readInFlight`). */
  inFlight(key: number): number;
  /** Present where the counts live in another program (HAProxy): reads them afresh, for a status about to be shown. */
  readInFlight?(): Promise<void>;
  /** Stops accepting connections for good (a later update does not open them again); requests in flight go on. */
  close(): void;
  /** Ends the data path for good, after everything has drained. */
  stop(): Promise<void>;
  /** Present where `rainbowd upgrade` can hand the data path over (handover.ts): what the successor takes it over with. */
  handover?(): DataPathHandover;
  /**
   * Once the successor serves: stops accepting, and resolves once what this process still
   * carries has ended, or after `timeoutMs`; what the successor took over goes on.
   */
  handOver?(timeoutMs: number): Promise<void>;
}

/** What a successor takes the data path over with at `rainbowd upgrade`. */
export interface DataPathHandover {
  /** The proxy's listening socket, when the proxy runs in rainbowd's processes (its own, or proxy workers). */
  proxy?: Listener;
  /** The runtime directory of the HAProxy that goes on serving (haproxy engine). */
  haproxyDir?: string;
}
