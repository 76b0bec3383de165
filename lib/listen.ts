import type http from 'node:http';

/** Resolves once the server listens; rejects with the listen error (its `code` kept, e.g. EADDRINUSE). */
export function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
