import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { startAppDaemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { proxyWorkers } from '../helpers/process.js';

// What V8 kept after a burst of traffic (its young generation) is given back once rainbowd's
// processes have been idle for `releaseIdleMemoryAfter`: the daemon's own, and each proxy
// worker's.

function rssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

for (const workers of [0, 1]) {
  const where = workers === 0 ? 'the daemon' : 'a proxy worker';
  test(`after a burst of traffic and ${where} idle for releaseIdleMemoryAfter, ${where} gives back its young generation and serves as before`, { timeout: 60_000 }, async (t) => {
    const { daemon } = await startAppDaemon(t, { name: `idle-memory-${workers}`, config: { workers, releaseIdleMemoryAfter: '1s' } });
    const proxyPid = workers === 0 ? daemon.pid : proxyWorkers(daemon.pid)[0]?.pid;
    assert.ok(proxyPid, 'the proxy worker process');
    const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 16, newConnectionClients: 0, maxDuration: 30_000 });
    await load.waitForRequests(20_000, 30_000);
    const result = await load.stop();
    assert.equal(result.errorCount, 0, describeLoad(result));
    assert.deepEqual(Object.keys(result.byStatus), ['200'], describeLoad(result));
    const rssAfterLoad = rssKb(proxyPid);
    const pattern = workers === 0 ? /memory-released youngGeneration="(\d+) → (\d+) MB"/ : new RegExp(`memory-released youngGeneration="(\\d+) → (\\d+) MB".*worker=${proxyPid}`);
    const line = await daemon.waitForLog(pattern, 30_000);
    const [, before, after] = pattern.exec(line)!.map(Number);
    assert.ok(after! < before!, line);
    assert.ok(rssKb(proxyPid) < rssAfterLoad, `RSS ${rssAfterLoad} kB after the load, ${rssKb(proxyPid)} kB after: ${line}`);
    assert.equal((await request(daemon.proxyPort, '/')).status, 200);
    t.diagnostic(`${result.total} requests; RSS ${rssAfterLoad} → ${rssKb(proxyPid)} kB; ${line}`);
  });
}
