import type http from 'node:http';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { RainbowError, isRainbowError, messageOf } from './errors.js';

/**
 * Resolves once the server listens on `port` and `host`, or on the unix socket `port` names;
 * rejects with the listen error (its `code` kept, e.g. EADDRINUSE).
 */
export function listen(server: net.Server, port: number | string, host?: string): Promise<void> {
  return listenWith(server, (done) => (typeof port === 'string' ? server.listen(port, done) : server.listen(port, host, done)));
}

/**
 * A listening TCP socket as libuv holds it, not a server: no process accepts on it until one
 * listens on it. Proxy workers share one (proxy-workers.ts); child_process passes it on as it is.
 */
export interface SocketHandle {
  getsockname(out: { address?: string; port?: number }): number;
  close(): void;
}

/** A listener handed over: a server (accepting already) or a bare handle (proxy workers'). */
export type Listener = net.Server | SocketHandle;

/** Binds a TCP socket without accepting on it: proxy workers accept on it, not the process that binds it. */
export async function bindHandle(port: number, host: string): Promise<SocketHandle> {
  const { address, family } = await lookup(host);
  const created = (net as unknown as { _createServerHandle(address: string, port: number, family: number): SocketHandle | number })._createServerHandle(address, port, family);
  // libuv keeps a bind's EADDRINUSE for listen(), which is the workers': the socket would be
  // unbound, and a worker listening on it would get a random port. getsockname says it now.
  const failure = typeof created === 'number' ? created : created.getsockname({});
  if (failure === 0) return created as SocketHandle;
  if (typeof created !== 'number') created.close();
  const code = getSystemErrorName(failure);
  throw Object.assign(new Error(`listen ${code}: ${host}:${port}`), { code });
}

/** The address a listener is bound to. */
export function addressOf(listener: Listener): { address: string; port: number } | null {
  if (listener instanceof net.Server) {
    const address = listener.address();
    return typeof address === 'object' && address !== null ? address : null;
  }
  const out: { address?: string; port?: number } = {};
  return listener.getsockname(out) === 0 && out.address !== undefined && out.port !== undefined ? { address: out.address, port: out.port } : null;
}

/** Connections a handed-over listener accepted before a server took it: they wait for it. */
const waiting = new WeakMap<net.Server, { hold: (socket: net.Socket) => void; sockets: net.Socket[] }>();

/**
 * A listening socket handed over arrives accepting (Node listens on it at once): its
 * connections are held from then on, until `listenOnHandedOver` gives them to a server.
 */
export function holdConnections(handed: net.Server): void {
  const held = { sockets: [] as net.Socket[], hold: (socket: net.Socket) => void held.sockets.push(socket) };
  handed.on('connection', held.hold);
  waiting.set(handed, held);
}

/**
 * Accepts on a listening socket another rainbowd handed over (handover.ts): both processes
 * accept on it until the other closes its copy. A TCP socket is taken as it is; a unix
 * socket's connections are passed on from the server Node made for it.
 */
export async function listenOnHandedOver(server: http.Server, handed: Listener): Promise<void> {
  if (!(handed instanceof net.Server)) return listenWith(server, (done) => server.listen(handed, done));
  const handle = (handed as net.Server & { _handle?: unknown })._handle;
  const held = waiting.get(handed);
  if (held) handed.off('connection', held.hold);
  if (handle?.constructor.name === 'TCP') await listenWith(server, (done) => server.listen(handed, done));
  else {
    handed.on('connection', (socket: net.Socket) => server.emit('connection', socket));
    server.once('close', () => handed.close());
  }
  for (const socket of held?.sockets ?? []) server.emit('connection', socket);
}

/**
 * A handed-over listening socket this rainbowd does not listen on (its port changed): closed
 * here, the predecessor closes its own copy; what it accepted meanwhile is served all the same.
 */
export function closeHandedOver(handed: Listener, server: http.Server): void {
  if (!(handed instanceof net.Server)) return handed.close();
  const held = waiting.get(handed);
  if (held) handed.off('connection', held.hold);
  handed.close();
  for (const socket of held?.sockets ?? []) server.emit('connection', socket);
}

/**
 * Stops accepting, leaving kept-alive connections open: http.Server#close also closes the
 * idle ones (Node 19+), and a client may be writing its next request onto one just then.
 */
export function stopAccepting(server: net.Server): void {
  if (server.listening) net.Server.prototype.close.call(server);
}

function listenWith(server: net.Server, start: (done: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Listens, or throws the error a user can act on: which address, for what, and the setting that changes it. */
export async function listenOrExplain(listening: Promise<void>, what: string, host: string, port: number, setting: string, file: string | null): Promise<void> {
  try {
    await listening;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      const problem = code === 'EADDRINUSE' ? 'is already in use (is another rainbowd running?)' : code === 'EACCES' ? 'needs privileges' : 'is not an address of this machine';
      const errorCode = code === 'EADDRINUSE' ? 'PORT_IN_USE' : 'LISTEN_FAILED';
      throw new RainbowError(errorCode, `cannot listen on ${host}:${port} for the ${what}: it ${problem}; set ${setting}${file ? ` in ${file}` : ''}`, { cause: error });
    }
    throw isRainbowError(error) ? error : new RainbowError('LISTEN_FAILED', `cannot listen on ${host}:${port} for the ${what}: ${messageOf(error)}`, { cause: error });
  }
}
