import type net from 'node:net';

/**
 * Resolves once the server listens on `port` and `host`, or on the unix socket `port` names;
 * rejects with the listen error (its `code` kept, e.g. EADDRINUSE).
 */
export function listen(server: net.Server, port: number | string, host?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const listening = () => {
      server.off('error', reject);
      resolve();
    };
    if (typeof port === 'string') server.listen(port, listening);
    else server.listen(port, host, listening);
  });
}
