import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startAppDaemon } from '../helpers/daemon.js';
import { type Engine, testEachEngine } from '../helpers/engines.js';
import { request } from '../helpers/http.js';
import { repoRoot } from '../helpers/paths.js';
import { openWebSocket } from '../helpers/websocket.js';

// A package the daemon loads is memory it holds for as long as it runs (README, Performance):
// it loads what its config and its traffic use, no more. The daemon runs with a preload that
// lists, at its exit, the CommonJS files it loaded: undici and http-proxy are CommonJS.

const PRELOAD = join(repoRoot, 'test', 'fixtures', 'loaded-modules.mjs');
// Relative: the daemon writes it in its working directory, the test's directory for it.
const LIST = 'loaded-modules.txt';

/** Runs a one-process daemon with the preload through `use`, stops it, and returns the files of node_modules it loaded, as `package/path`. */
async function packageFilesLoaded(t: TestContext, name: string, engine: Engine, use: (proxyPort: number) => Promise<void>): Promise<string[]> {
  const { daemon } = await startAppDaemon(t, { name, engine, config: { workers: 0 }, nodeArgs: ['--import', PRELOAD], env: { RAINBOWD_TEST_LOADED_MODULES: LIST } });
  await use(daemon.proxyPort);
  assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
  return readFileSync(join(daemon.dir, LIST), 'utf8')
    .split('\n')
    .flatMap((file) => /\/node_modules\/(.+)$/.exec(file)?.[1] ?? []);
}

const fromPackage = (files: string[], name: string) => files.filter((file) => file.startsWith(`${name}/`));

testEachEngine('a daemon that forwards only plain requests loads no http-proxy, the node engine only undici\'s Pool, the haproxy engine no undici', { timeout: 60_000 }, async (t, engine) => {
  const files = await packageFilesLoaded(t, `loaded-${engine}`, engine, async (proxyPort) => {
    assert.equal((await request(proxyPort, '/')).status, 200);
    // A path with a dot segment: the haproxy engine's fallback forwards it, normalized.
    assert.equal((await request(proxyPort, '/a/../health')).status, 200);
  });
  assert.deepEqual(fromPackage(files, 'http-proxy'), []);
  const undici = fromPackage(files, 'undici');
  if (engine === 'haproxy') return assert.deepEqual(undici, []);
  assert.ok(undici.includes('undici/lib/dispatcher/pool.js'), `undici's Pool is what forwards: ${undici.join(', ')}`);
  // Its index loads fetch, WebSocket, the cache and mock agents, none of which rainbowd uses.
  assert.deepEqual(undici.filter((file) => file === 'undici/index.js' || /^undici\/lib\/(web|mock|cache)\//.test(file)), []);
});

test('the first WebSocket upgrade loads http-proxy', { timeout: 60_000 }, async (t) => {
  const files = await packageFilesLoaded(t, 'loaded-websocket', 'node', async (proxyPort) => {
    const socket = await openWebSocket(proxyPort, '/chat');
    socket.send('hello');
    assert.equal(await socket.next(), 'hello');
    await socket.close();
  });
  assert.ok(fromPackage(files, 'http-proxy').includes('http-proxy/index.js'), `http-proxy was not loaded: ${files.join(', ')}`);
});
