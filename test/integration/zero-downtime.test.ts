import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAppDaemon } from '../helpers/daemon.js';
import { ENGINES, testEachEngine } from '../helpers/engines.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { appProcesses, describeProcesses, markedProcesses } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

const redeploys = 12;
const minimumLoadDuration = 10_500;
const pauseBetweenRedeploys = 600;

// Every engine, and the node engine in both its modes: proxy workers (the default on more
// than 2 cores, and of the test daemons) and the proxy in the daemon's own process (the
// default on 1 or 2). `workers` is a node-engine setting, so that case runs for node only.
const cases = [
  { onSigterm: 'graceful', description: 'shuts down gracefully on SIGTERM', mode: '', config: {}, engines: ENGINES },
  { onSigterm: 'exit', description: 'exits at once on SIGTERM', mode: '', config: {}, engines: ENGINES },
  { onSigterm: 'graceful', description: 'shuts down gracefully on SIGTERM', mode: ", with the proxy in the daemon's process", config: { workers: 0 }, engines: ['node'] },
] as const;

for (const { onSigterm, description, mode, config, engines } of cases) {
  testEachEngine(`no request fails while an app that ${description} is redeployed ${redeploys} times under load${mode}`, { timeout: 180_000, engines }, async (t, engine) => {
    const { daemon, marker } = await startAppDaemon(t, { name: `zero-downtime-${onSigterm}-${engine}`, appArgs: `--on-sigterm ${onSigterm}`, engine, config });
    const first = await daemon.waitForActive();
    const load = startLoad({ port: daemon.proxyPort, keepAliveClients: 16, newConnectionClients: 1, requestTimeout: 10_000, maxDuration: 120_000 });
    const loadStarted = Date.now();

    let result;
    try {
      let active = first.id;
      for (let i = 0; i < redeploys; i++) {
        await sleep(pauseBetweenRedeploys);
        if (i % 2 === 0) {
          const answer = await daemon.redeploy();
          assert.equal(answer.status, 200, `redeploy #${i + 1} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
          assert.ok((answer.body.generation ?? 0) > active, `redeploy #${i + 1} did not make a newer generation: ${JSON.stringify(answer.body)}`);
          active = answer.body.generation ?? 0;
        } else {
          daemon.signal('SIGUSR1');
          active = (await daemon.waitForActive({ after: active, timeout: 30_000 })).id;
        }
      }
      const remaining = minimumLoadDuration - (Date.now() - loadStarted);
      if (remaining > 0) await sleep(remaining);
    } finally {
      result = await load.stop();
    }
    assert.equal(result.errorCount, 0, `transport errors under load:\n${describeLoad(result)}`);
    const non2xx = Object.keys(result.byStatus).filter((status) => Number(status) < 200 || Number(status) > 299);
    assert.deepEqual(non2xx, [], `non-2xx responses under load:\n${describeLoad(result)}`);
    assert.ok(result.generations.length >= 3, `responses came from generations ${result.generations.join(',')} only`);
    assert.ok(result.durationMs >= 10_000, `the load ran ${result.durationMs} ms only`);

    // The drained generations are stopped: one generation and one app process remain.
    await waitFor(
      async () => {
        const service = await daemon.service();
        return service.generations.length === 1 && service.generations[0]?.state === 'active' && appProcesses(marker).length === 1;
      },
      { timeout: 20_000, what: 'exactly one live generation and one app process' },
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}\nstatus: ${JSON.stringify(await daemon.service())}\nprocesses:\n${describeProcesses(appProcesses(marker))}`);
    });
    const service = await daemon.service();
    assert.equal(service.restarts, 0, `stopping old generations was taken for crashes: ${JSON.stringify(service)}`);

    const exit = await daemon.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal(describeProcesses(markedProcesses(marker)), '(none)', 'processes left after the daemon exited');
  });
}
