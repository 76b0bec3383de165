#!/usr/bin/env node
// Benchmark fixture: the smallest useful node:http app. Answers every request at once.
//   hello.mjs --port N [--pidfile FILE]
import { startApp } from './serve.mjs';

const body = 'hello world\n';

startApp((request, response) => {
  response.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  response.end(body);
});
