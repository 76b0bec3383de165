import { linkSync, lstatSync, renameSync, rmSync } from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import { RainbowError, messageOf } from './errors.js';
import { stopAccepting } from './listen.js';

// The control API on a unix socket (controlSocket), as kamal-proxy takes its commands: only
// users who may open the file can talk to it, and no browser can. The socket is created
// 0600 from the start: the umask covers the bind, so there is no moment when it is open to
// everyone (a chmod after listening would leave one).

export async function listenOnSocket(server: http.Server, file: string): Promise<void> {
  await removeStaleSocket(file);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // listen() binds synchronously: the umask is back before any other code runs.
    const previous = process.umask(0o177);
    try {
      server.listen(file, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
}

/**
 * Stops `server` accepting on `file` and leaves the file in place, for the successor that
 * accepts on the same socket (`rainbowd upgrade`): closing a unix listener unlinks its path
 * (libuv does it in the close itself), whoever else listens on it. A second link to the
 * socket keeps it across the close and takes its name back in the same tick.
 */
export function stopAcceptingKeepingFile(server: net.Server, file: string): void {
  const spare = `${file}.${process.pid}.keep`;
  try {
    linkSync(file, spare);
  } catch {
    stopAccepting(server); // no file to keep (removed by hand): nothing is lost by closing
    return;
  }
  stopAccepting(server);
  renameSync(spare, file);
}

export function removeSocket(file: string): void {
  rmSync(file, { force: true });
}

/** A socket file left by a rainbowd that was killed is removed; one something answers on is not. */
async function removeStaleSocket(file: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(file).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new RainbowError('LISTEN_FAILED', `cannot listen on ${file} for the control API: a file that is not a socket is in the way; remove it or set "controlSocket" to another path`);
  const probe = await new Promise<'answered' | 'stale' | Error>((resolve) => {
    const socket = net.connect(file);
    socket.once('connect', () => {
      socket.destroy();
      resolve('answered');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED' ? 'stale' : error));
  });
  if (probe === 'answered') throw new RainbowError('PORT_IN_USE', `cannot listen on ${file} for the control API: something answers on it (is another rainbowd running?)`);
  if (probe !== 'stale') throw new RainbowError('LISTEN_FAILED', `cannot listen on ${file} for the control API: ${messageOf(probe)}`, { cause: probe });
  removeSocket(file);
}
