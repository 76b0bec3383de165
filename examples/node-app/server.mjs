// A tiny node:http app for rainbowd. It listens on the port rainbowd gives it
// (`--port N`, else $PORT) and shuts down gracefully on SIGTERM: it stops
// accepting, finishes the requests in flight, then exits.
import http from 'node:http';

function portFromArgs(argv) {
  const index = argv.indexOf('--port');
  return index === -1 ? undefined : argv[index + 1];
}

const port = Number(portFromArgs(process.argv.slice(2)) ?? process.env.PORT ?? 3000);
const generation = process.env.RAINBOWD_GENERATION ?? '?';
const startedAt = new Date().toISOString();

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`hello from pid ${process.pid}, generation ${generation}, started ${startedAt}\n`);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${port}`);
});

function shutdown(signal) {
  console.log(`${signal}: closing`);
  server.close(() => process.exit(0));
  // Keep-alive sockets with no request in flight would otherwise hold close() open.
  server.closeIdleConnections();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
