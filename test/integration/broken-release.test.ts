import assert from 'node:assert/strict';
import { startAppDaemon, writeFile } from '../helpers/daemon.js';
import { testEachEngine } from '../helpers/engines.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { describeProcesses, markedProcesses } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

// The run line reads the release's health behaviour from health.txt at each launch, so a
// test makes the next release broken by writing that file (no config reload involved).
const brokenReleases = [
  {
    health: 'exit',
    description: 'exits at start',
    deployTimeout: '10s',
    reason: [/refusing to start/, /exit|code/i],
    // It must fail as soon as the process exits, not at deployTimeout.
    maxDeployMs: 5000,
  },
  { health: 'never', description: 'never answers its health check', deployTimeout: '2s', reason: [/health|time/i], maxDeployMs: 15_000 },
  { health: '500', description: 'answers its health check with 500', deployTimeout: '2s', reason: [/500/], maxDeployMs: 15_000 },
] as const;

for (const release of brokenReleases) {
  testEachEngine(`a release that ${release.description} is refused while the old generation keeps serving with no error`, { timeout: 90_000 }, async (t, engine) => {
    const { daemon, marker } = await startAppDaemon(t, {
      name: `broken-${release.health}`,
      engine,
      appArgs: '--health "$(cat health.txt)"',
      files: { 'health.txt': 'ok' },
      config: { deployTimeout: release.deployTimeout, stopTimeout: '1s' },
    });
    const good = await daemon.waitForActive();
    const goodProcesses = new Set(markedProcesses(marker).map((info) => info.pid));
    const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 8, newConnectionClients: 1, requestTimeout: 10_000, maxDuration: 60_000 });

    let result;
    try {
      await load.waitForRequests();
      writeFile(daemon, 'health.txt', release.health);
      const answer = await daemon.redeploy();
      assert.ok(answer.status >= 400, `the broken release was accepted: ${answer.status} ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.ok, false);
      assert.equal(answer.body.error?.code, 'DEPLOY_FAILED', JSON.stringify(answer.body));
      for (const reason of release.reason) assert.match(answer.body.error?.message ?? '', reason);
      assert.ok(answer.elapsedMs <= release.maxDeployMs, `refusing the release took ${answer.elapsedMs} ms`);

      await waitFor(() => markedProcesses(marker).every((info) => goodProcesses.has(info.pid)), {
        timeout: 10_000,
        what: 'the broken release to leave no process behind',
      }).catch((error: Error) => {
        throw new Error(`${error.message}\n${describeProcesses(markedProcesses(marker).filter((info) => !goodProcesses.has(info.pid)))}`);
      });
      await load.waitForRequests();
    } finally {
      result = await load.stop();
    }
    assert.equal(result.errorCount, 0, `transport errors under load:\n${describeLoad(result)}`);
    assert.deepEqual(Object.keys(result.byStatus), ['200'], `non-200 responses under load:\n${describeLoad(result)}`);
    assert.deepEqual(result.generations, [String(good.id)], 'responses came from other generations than the good one');

    const service = await daemon.service();
    assert.equal(service.activeGeneration, good.id);
    assert.deepEqual(
      service.generations.map((generation) => [generation.id, generation.state]),
      [[good.id, 'active']],
    );

    // A fixed release deploys normally afterwards.
    writeFile(daemon, 'health.txt', 'ok');
    const fixed = await daemon.redeploy();
    assert.equal(fixed.status, 200, JSON.stringify(fixed.body));
    assert.ok((fixed.body.generation ?? 0) > good.id);
  });
}
