import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAppDaemon } from '../helpers/daemon.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { repoRoot } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

// A proxy's young generation grows under load and V8 keeps it once the load stops: rainbowd
// gives it back once quiet (idle-collection.ts). The daemon runs with a preload that writes
// its young generation's size to a file.

const PRELOAD = join(repoRoot, 'test', 'fixtures', 'young-generation.mjs');
const SIZE_FILE = 'young-generation.txt';
const MB = 1024 * 1024;

test('once the load stops, the proxy gives back the young generation it grew under the load', { timeout: 120_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'idle-memory', config: { workers: 0 }, nodeArgs: ['--import', PRELOAD], env: { RAINBOWD_TEST_YOUNG_GENERATION: SIZE_FILE } });
  const youngGeneration = () => {
    try {
      return Number(readFileSync(join(daemon.dir, SIZE_FILE), 'utf8'));
    } catch {
      return 0; // not written yet, or being written
    }
  };
  const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 32, newConnectionClients: 0, maxDuration: 60_000 });
  try {
    await waitFor(() => youngGeneration() >= 16 * MB, { timeout: 60_000, interval: 200, what: 'the young generation grown to 16 MB under the load' });
  } finally {
    const result = await load.stop();
    assert.equal(result.errorCount, 0, describeLoad(result));
  }
  // Quiet for a whole check interval (10 s) and then collected: at most 25 s.
  await waitFor(() => youngGeneration() <= 4 * MB, { timeout: 40_000, interval: 200, what: `the young generation given back (now ${youngGeneration() / MB} MB)` });
});
