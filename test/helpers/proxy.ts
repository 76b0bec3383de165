import http from 'node:http';
import net from 'node:net';
import { after } from 'node:test';
import { PassThrough } from 'node:stream';
import { FORWARDED_FIELDS } from '../../lib/forward-headers.js';
import { Logger } from '../../lib/log.js';
import { listen } from '../../lib/listen.js';
import { Proxy } from '../../lib/proxy.js';
import type { ServiceRoute } from '../../lib/route-table.js';

// A real proxy listener in the test's own process, in front of real upstream servers; all
// of it is closed when the test file ends.

export const log = new Logger('text', new PassThrough().resume());

const cleanup: Array<() => unknown> = [];
after(async () => {
  for (const step of cleanup.reverse()) await step();
});

/** Runs `step` when the test file ends. */
export function atEnd(step: () => unknown): void {
  cleanup.push(step);
}

/** An app on node:http. */
export async function serverOn(handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler);
  await listen(server, 0, '127.0.0.1');
  cleanup.push(() => server.close());
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** An app written on raw sockets, for answers node:http would not send. */
export async function rawAppOn(onConnection: (socket: net.Socket) => void): Promise<number> {
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

export const UPSTREAM_KEY = 1;
export const VIA = 'rainbowd-test';

/** A proxy whose one service (catch-all unless `route` says otherwise) forwards to `upstreamPort`. */
export async function proxyTo(upstreamPort: number, trustedProxies: string[] = [], route: Partial<ServiceRoute> = {}): Promise<{ proxy: Proxy; port: number }> {
  const proxy = new Proxy(log);
  const upstream = { key: UPSTREAM_KEY, generation: 1, host: '127.0.0.1', port: upstreamPort };
  proxy.update({ services: [{ name: 'default', hosts: [], pathPrefix: null, stripPathPrefix: true, mode: 'running', message: null, maxPauseMs: 30_000, upstream, ...route }], trustedProxies, forwardedFields: FORWARDED_FIELDS, via: VIA });
  await proxy.listen(0, '127.0.0.1');
  cleanup.push(() => proxy.stop());
  return { proxy, port: (proxy.server.address() as net.AddressInfo).port };
}

export function get(port: number, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', headers, agent: false, timeout: 5000 }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .on('error', reject)
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy(new Error('timed out'));
      });
  });
}

/**
 * Sends `raw` on a new connection; resolves with everything the proxy answered before it
 * closed, or, given `until`, as soon as what came satisfies it (closing the connection).
 */
export function sendRaw(port: number, raw: string, timeoutMs = 5000, until?: (answer: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = net.connect(port, '127.0.0.1', () => socket.write(raw, 'latin1'));
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer within ${timeoutMs} ms; got ${JSON.stringify(answer.slice(0, 200))}`)));
    socket.on('data', (chunk) => {
      answer += chunk;
      if (until?.(answer)) {
        socket.destroy();
        resolve(answer);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
  });
}

/** The first line of a raw answer. */
export function statusLine(answer: string): string {
  return answer.slice(0, answer.indexOf('\r\n'));
}

/** For `sendRaw`: whether `answer` holds a whole answer with a Content-Length (one a proxy may keep the connection open after). */
export function wholeAnswer(answer: string): boolean {
  const headEnd = answer.indexOf('\r\n\r\n');
  const length = /\r\ncontent-length: *(\d+)/i.exec(answer.slice(0, headEnd))?.[1];
  return headEnd >= 0 && length !== undefined && answer.length >= headEnd + 4 + Number(length);
}
