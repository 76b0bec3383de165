#!/usr/bin/env node
// Benchmark fixture: an app that answers every request after 20 ms, like one that waits on a
// database. Shows the latency a proxy adds to requests that are not free.
//   slow.mjs --port N [--pidfile FILE]
import { startApp } from './serve.mjs';

const body = 'hello after 20 ms\n';
const delayMs = 20;

startApp((request, response) => {
  setTimeout(() => {
    response.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    response.end(body);
  }, delayMs);
});
