import assert from 'node:assert/strict';
import { startAppDaemon } from '../helpers/daemon.js';
import { testEachEngine } from '../helpers/engines.js';
import { header, request } from '../helpers/http.js';
import { waitFor } from '../helpers/wait.js';

const apps = [
  { onSigterm: 'graceful', description: 'shuts down gracefully' },
  { onSigterm: 'exit', description: 'exits at once on SIGTERM' },
] as const;

for (const { onSigterm, description } of apps) {
  testEachEngine(`a 3 s request started before a redeploy completes with 200 from the old generation, when the app ${description}`, { timeout: 60_000 }, async (t, engine) => {
    const { daemon } = await startAppDaemon(t, { name: `slow-request-${onSigterm}`, appArgs: `--on-sigterm ${onSigterm}`, engine, config: { drainTimeout: '20s' } });
    const old = await daemon.waitForActive();

    const started = Date.now();
    const slow = request(daemon.proxyPort, '/slow?ms=3000', { timeout: 15_000 });
    await daemon.waitForInFlight();
    const redeploying = daemon.redeploy();

    // New requests go to the new generation while the old one drains the slow request.
    const next = await daemon.waitForActive({ after: old.id, timeout: 10_000 });
    const fresh = await request(daemon.proxyPort, '/', { timeout: 5000 });
    assert.equal(fresh.status, 200);
    assert.equal(header(fresh, 'x-generation'), String(next.id));
    await waitFor(
      async () => {
        const draining = (await daemon.service()).generations.find((generation) => generation.id === old.id);
        return draining?.state === 'draining' && draining.inFlight === 1;
      },
      { timeout: 2000, what: `generation #${old.id} listed as draining with 1 request in flight` },
    );

    const response = await slow;
    assert.equal(response.status, 200, `the slow request got ${response.status}: ${response.body}`);
    assert.equal(header(response, 'x-generation'), String(old.id));
    assert.ok(Date.now() - started >= 2900, 'the slow request did not take its 3 s');

    const answer = await redeploying;
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.generation, next.id);
    await waitFor(async () => (await daemon.service()).generations.length === 1, { timeout: 10_000, what: 'the old generation to be stopped' });
  });
}
