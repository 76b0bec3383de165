import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAppDaemon, type Daemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { proxyWorkers } from '../helpers/process.js';

// What V8 kept after a burst of traffic (its young generation) is given back once rainbowd's
// processes have been idle for `releaseIdleMemoryAfter`: the daemon's own, and each proxy
// worker's.

function rssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

async function burst(daemon: Daemon): Promise<void> {
  const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 16, newConnectionClients: 0, maxDuration: 30_000 });
  await load.waitForRequests(20_000, 30_000);
  const result = await load.stop();
  assert.equal(result.errorCount, 0, describeLoad(result));
  assert.deepEqual(Object.keys(result.byStatus), ['200'], describeLoad(result));
}

/** Waits for the release of `pid` (the daemon's, or a worker's), and checks that it gave memory back. */
async function assertReleased(daemon: Daemon, pid: number, rssAfterLoad: number): Promise<string> {
  const pattern = pid === daemon.pid ? /memory-released youngGeneration="(\d+) → (\d+) MB"/ : new RegExp(`memory-released youngGeneration="(\\d+) → (\\d+) MB".*worker=${pid}`);
  const line = await daemon.waitForLog(pattern, 30_000);
  const [, before, after] = pattern.exec(line)!.map(Number);
  assert.ok(after! < before!, line);
  assert.ok(rssKb(pid) < rssAfterLoad, `RSS ${rssAfterLoad} kB after the load, ${rssKb(pid)} kB after: ${line}`);
  assert.equal((await request(daemon.proxyPort, '/')).status, 200);
  return line;
}

test('after a burst of traffic and the daemon idle for releaseIdleMemoryAfter, it gives back its young generation and serves as before', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'idle-memory', config: { workers: 0, releaseIdleMemoryAfter: '1s' } });
  await burst(daemon);
  const rssAfterLoad = rssKb(daemon.pid);
  const line = await assertReleased(daemon, daemon.pid, rssAfterLoad);
  t.diagnostic(`RSS ${rssAfterLoad} → ${rssKb(daemon.pid)} kB; ${line}`);
});

test('a proxy worker keeps its memory with releaseIdleMemoryAfter 0, and gives it back once a reload sets a period', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'idle-memory-worker', config: { workers: 1, releaseIdleMemoryAfter: 0 } });
  const worker = proxyWorkers(daemon.pid)[0]?.pid;
  assert.ok(worker, 'the proxy worker process');
  await burst(daemon);
  const rssAfterLoad = rssKb(worker);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.doesNotMatch(daemon.log(), /memory-released/, 'nothing released with releaseIdleMemoryAfter 0');
  const file = join(daemon.dir, 'rainbow.conf.json');
  writeFileSync(file, JSON.stringify({ ...(JSON.parse(readFileSync(file, 'utf8')) as object), releaseIdleMemoryAfter: '1s' }));
  daemon.signal('SIGHUP');
  const line = await assertReleased(daemon, worker, rssAfterLoad);
  t.diagnostic(`RSS ${rssAfterLoad} → ${rssKb(worker)} kB; ${line}`);
});
