#!/usr/bin/env node
// Benchmark peer: issue 12's prototype of rainbowd's data path, as little as a proxy can be
// with the same parts (a node:http server, undici's Pool.dispatch with a raw-header handler,
// streaming both ways): no routing, no in-flight counts, no checks, the forwarded fields the
// nginx peer sets. Its distance to rainbowd is what rainbowd's own work costs per request.
//   undici-minimal.mjs --port N --app-port M
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values } = parseArgs({ options: { port: { type: 'string' }, 'app-port': { type: 'string' } } });
const port = Number(values.port);
const appPort = Number(values['app-port']);
if (!Number.isInteger(port) || !Number.isInteger(appPort)) {
  console.error(`--port and --app-port must be port numbers, got ${JSON.stringify(values)}`);
  process.exit(2);
}
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const pool = new Pool(`http://127.0.0.1:${appPort}`, { pipelining: 1 });

class Answer {
  constructor(response) {
    this.response = response;
    this.resume = null;
    this.abort = null;
  }
  onConnect(abort) {
    this.abort = abort;
  }
  onHeaders(status, raw, resume) {
    const headers = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString('latin1');
      if (!HOP_BY_HOP.has(name.toLowerCase())) headers.push(name, raw[i + 1].toString('latin1'));
    }
    this.response.writeHead(status, headers);
    this.resume = resume;
    return true;
  }
  onData(chunk) {
    if (this.response.write(chunk)) return true;
    this.response.once('drain', this.resume);
    return false;
  }
  onComplete() {
    this.response.end();
  }
  onError() {
    if (this.response.headersSent) return void this.response.destroy();
    this.response.writeHead(502).end();
  }
}

const server = http.createServer((request, response) => {
  const headers = {};
  for (const name in request.headers) if (!HOP_BY_HOP.has(name)) headers[name] = request.headers[name];
  headers['x-forwarded-for'] = request.socket.remoteAddress;
  headers['x-forwarded-proto'] = 'http';
  if (request.headers.host !== undefined) headers['x-forwarded-host'] = request.headers.host;
  const length = request.headers['content-length'];
  const body = request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0') ? null : request;
  const answer = new Answer(response);
  // As rainbowd does: a gone client's write never drains, and undici 7 crashes if the app's
  // connection then ends with the parser paused (nodejs/undici#5360).
  response.once('close', () => response.writableFinished || answer.abort?.(new Error('the client went away')));
  pool.dispatch({ path: request.url, method: request.method, headers, body }, answer);
});
server.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
