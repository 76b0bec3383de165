// What the fixture apps share: listen on --port, write --pidfile, say when they listen (with
// their own timestamp, which the deploy benchmark reads from rainbowd's log), and shut down
// gracefully on SIGTERM.
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

export function startApp(handler) {
  const { values } = parseArgs({ options: { port: { type: 'string' }, pidfile: { type: 'string' } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port <= 0) {
    console.error(`--port must be a port number, got ${JSON.stringify(values.port)}`);
    process.exit(2);
  }
  const server = http.createServer(handler);
  server.listen(port, '127.0.0.1', () => {
    if (values.pidfile) writeFileSync(values.pidfile, `${process.pid}\n`);
    console.log(`listening on 127.0.0.1:${port} at ${new Date().toISOString()}`);
  });
  const shutdown = () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    // Connections busy now become idle after their response: close those too.
    setInterval(() => server.closeIdleConnections(), 50).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}
