import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mayHoldBack } from '../../lib/forward-headers.js';
import { proxyTo, rawAppOn } from '../helpers/proxy.js';

// What the node engine alone does (its behaviour shared with every engine is tested in
// data-path-contract, http-framing and faulty-peers): heed an app's Keep-Alive timeout, stop
// reading an answer for a slow client only where undici 7 survives it, and keep the
// deprecation warnings of http-proxy 1.18.1 out of the logs.

function post(port: number, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, path: '/', method: 'POST', agent: false, headers: { 'content-length': Buffer.byteLength(body) } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
    request.end(body);
  });
}

test("a POST is never sent on a connection past the app's Keep-Alive timeout, so an app with a short keep-alive gets no 502", async () => {
  // The app says `Keep-Alive: timeout=1` and closes a connection idle that long; a request
  // written onto it as it closes is lost (here: reset, as the crossing is too quick to catch).
  const idleMs = 1000;
  const upstreamPort = await rawAppOn((socket) => {
    let answeredAt = 0;
    socket.on('data', () => {
      if (answeredAt !== 0 && Date.now() - answeredAt >= idleMs) return void socket.resetAndDestroy();
      answeredAt = Date.now();
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=1\r\n\r\nok');
    });
  });
  const { port } = await proxyTo(upstreamPort);
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, idleMs + 100)); // the app's timeout passes: the point of the test
    statuses.push(await post(port, `form ${i}`));
  }
  assert.deepEqual(statuses, [200, 200, 200]);
});

test('an answer is held back for a slow client only while its connection cannot end under undici: kept alive, framed, and not all come', () => {
  const fields = (...pairs: string[]) => pairs.map((text) => Buffer.from(text, 'latin1'));
  const cases: Array<[Buffer[], number, boolean]> = [
    [fields('Content-Length', '100'), 50, true],
    [fields('Content-Length', '100'), 100, false],
    [fields('content-length', '100', 'Connection', 'close'), 50, false],
    [fields('Connection', 'keep-alive, Close', 'Content-Length', '100'), 50, false],
    [fields('Transfer-Encoding', 'chunked'), 1_000_000, true],
    [fields('Transfer-Encoding', 'chunked', 'Connection', 'close'), 10, false],
    [fields('Content-Type', 'text/plain'), 10, false], // ended by the close
  ];
  for (const [raw, received, expected] of cases) assert.equal(mayHoldBack(raw, received), expected, `${raw.join(' ')} after ${received} bytes`);
});

let deprecationScript: string;
before(() => {
  const engine = fileURLToPath(new URL('../../lib/proxy-engine.js', import.meta.url));
  deprecationScript = `await import(${JSON.stringify(engine)});
    process.emitWarning('util._extend is deprecated', { type: 'DeprecationWarning', code: 'DEP0060' });
    process.emitWarning('url.parse() is deprecated', 'DeprecationWarning', 'DEP0169');
    process.emitWarning('The URL http://a,:b/ is invalid', 'DeprecationWarning', 'DEP0170');
    process.emitWarning('some other warning', { type: 'DeprecationWarning', code: 'DEP0999' });`;
});

test('the deprecation warnings http-proxy triggers (DEP0060 on Node 22+, DEP0169 on 24+, DEP0170 on odd targets) stay out of the logs; others do not', async () => {
  const { stderr } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', deprecationScript]);
  assert.doesNotMatch(stderr, /DEP0060|DEP0169|DEP0170/);
  assert.match(stderr, /DEP0999/, 'other warnings still show');
});
