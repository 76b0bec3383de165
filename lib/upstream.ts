import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { UpstreamAddress } from './route-table.js';

// One generation as the data path sees it: where to send requests, a keep-alive agent of
// its own, and what is in flight to it, so a deploy can wait for exactly that to finish.

export class Upstream {
  readonly key: number;
  /** http-proxy's target, built once so the request path does no parsing. */
  readonly proxyTarget: { protocol: 'http:'; host: string; port: number };
  /**
   * Connections are reused, and closed when the generation is released. The idle timeout
   * (4 s) is below Node's keep-alive timeout (5 s), so we usually close an idle socket before
   * the app does; when the app is first, the engine's stale-socket retry covers the race.
   */
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, timeout: 4000 });
  inFlight = 0;
  private readonly upgraded = new Set<Duplex>();
  private idleWaiters: Array<() => void> = [];

  constructor(address: UpstreamAddress) {
    this.key = address.key;
    this.proxyTarget = { protocol: 'http:', host: address.host, port: address.port };
  }

  requestStarted(): void {
    this.inFlight++;
  }

  requestFinished(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** WebSockets and other upgraded connections count as in flight until they close. */
  trackUpgrade(socket: Duplex): void {
    this.requestStarted();
    this.upgraded.add(socket);
    socket.once('close', () => {
      this.upgraded.delete(socket);
      this.requestFinished();
    });
  }

  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Closes every socket to the generation; returns how many requests and connections that cut. */
  release(): number {
    const cut = this.inFlight;
    for (const socket of this.upgraded) socket.destroy();
    this.agent.destroy();
    return cut;
  }
}
