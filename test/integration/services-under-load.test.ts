import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cli, describeCli } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { testEachEngine } from '../helpers/engines.js';
import { describeLoad, startLoad, type LoadResult } from '../helpers/load.js';
import { appRunLine } from '../helpers/paths.js';
import { appProcesses, describeProcesses, uniqueMarker } from '../helpers/process.js';
import { startTarget, type Target } from '../helpers/target.js';
import { waitFor } from '../helpers/wait.js';

// Four services on one rainbowd, each on its own host, all redeployed again and again while
// every host is under load: a and b are supervised (rainbowd launches them), c is an external
// target declared in the config (moved by editing the config, reloading and redeploying), d
// an external target deployed from the CLI (moved with `rainbowd deploy d --target`). After
// each move the old target is killed at once: a finished deploy means it is safe to.

const minimumLoadDuration = 10_500;
const minimumDeploys = 4;
const maximumDeploys = 40;

testEachEngine('two supervised and two external services redeployed repeatedly under load for 10 s answer every request, each from the service its host routes to', { timeout: 240_000 }, async (t, engine) => {
  const appMarker = uniqueMarker('services-load-app');
  const targetMarker = uniqueMarker('services-load-target');
  let c = await startTarget(t, { service: 'c', label: 'c1', marker: targetMarker });
  let d = await startTarget(t, { service: 'd', label: 'd1', marker: targetMarker });
  const daemon = await startDaemon(t, {
    marker: appMarker,
    engine,
    waitUntilActive: false,
    config: {
      services: {
        a: { run: appRunLine(appMarker), host: 'a.test', healthCheckPath: '/health' },
        b: { run: appRunLine(appMarker), host: ['b.test', 'www.b.test'], healthCheckPath: '/health' },
        c: { target: c.address, host: 'c.test', healthCheckPath: '/health' },
      },
    },
  });
  for (const service of ['a', 'b', 'c']) await daemon.waitForActive({ service });
  const deployD = (target: Target) => cli(daemon, ['deploy', 'd', '--target', target.address, '--host', 'd.test', '--health-check-path', '/health']);
  const firstD = await deployD(d);
  assert.equal(firstD.code, 0, describeCli(firstD));

  const hosts = { a: 'a.test', b: 'www.b.test', c: 'c.test', d: 'd.test' } as const;
  const loads = Object.entries(hosts).map(([service, host]) => ({
    service,
    host,
    load: startLoad({ port: daemon.proxyPort, host, keepAliveClients: 4, newConnectionClients: 1, requestTimeout: 10_000, maxDuration: 120_000 }),
  }));
  const loadStarted = Date.now();

  const targetsMade = { c: 1, d: 1 };
  // c: a new target in the config file, reloaded (SIGHUP), then redeployed.
  const moveC = async () => {
    const next = await startTarget(t, { service: 'c', label: `c${++targetsMade.c}`, marker: targetMarker });
    setConfigTarget(daemon, 'c', next.address);
    daemon.signal('SIGHUP');
    await waitFor(async () => (await daemon.service('c')).target === next.address, { timeout: 5000, what: `the reload to give c the target ${next.address}` });
    const answer = await daemon.redeploy({ service: 'c' });
    assert.equal(answer.status, 200, `redeploy of c to ${next.address}: ${JSON.stringify(answer.body)}`);
    await c.kill('SIGKILL');
    c = next;
  };
  // d: kamal-proxy style.
  const moveD = async () => {
    const next = await startTarget(t, { service: 'd', label: `d${++targetsMade.d}`, marker: targetMarker });
    const deployed = await deployD(next);
    assert.equal(deployed.code, 0, `deploy d --target ${next.address}: ${describeCli(deployed)}`);
    await d.kill('SIGKILL');
    d = next;
  };
  const redeploy = async (service: string) => {
    const answer = await daemon.redeploy({ service });
    assert.equal(answer.status, 200, `redeploy of ${service}: ${JSON.stringify(answer.body)}`);
  };

  // Each service is redeployed in its own loop, so deploys of different services overlap.
  const deploys: Record<string, number> = {};
  const again = async (service: string, deploy: () => Promise<void>) => {
    deploys[service] = 0;
    while (deploys[service] < maximumDeploys && (deploys[service] < minimumDeploys || Date.now() - loadStarted < minimumLoadDuration)) {
      await deploy();
      deploys[service]++;
      // A breath between deploys, so that each service also serves between its switches.
      await sleep(200);
    }
  };
  const results: Record<string, LoadResult> = {};
  try {
    await Promise.all([again('a', () => redeploy('a')), again('b', () => redeploy('b')), again('c', moveC), again('d', moveD)]);
  } finally {
    for (const { service, load } of loads) results[service] = await load.stop();
  }

  for (const { service, host } of loads) {
    const result = results[service]!;
    assert.equal(result.errorCount, 0, `transport errors on ${host}:\n${describeLoad(result)}`);
    const non2xx = Object.keys(result.byStatus).filter((status) => Number(status) < 200 || Number(status) > 299);
    assert.deepEqual(non2xx, [], `non-2xx responses on ${host}:\n${describeLoad(result)}`);
    assert.deepEqual(result.byService, { [service]: result.total }, `responses on ${host} came from other services than ${service}`);
    assert.ok(result.generations.length >= minimumDeploys, `responses on ${host} came from generations ${result.generations.join(',')} only`);
    assert.ok(result.durationMs >= 10_000, `the load on ${host} ran ${result.durationMs} ms only`);
  }

  // The drained generations are gone: one live generation per service, one app process per supervised service.
  await waitFor(
    async () => {
      const { services } = await daemon.status();
      return services.every((service) => service.generations.length === 1 && service.generations[0]?.state === 'active') && appProcesses(appMarker).length === 2;
    },
    { timeout: 20_000, what: 'one live generation per service and one app process per supervised service' },
  ).catch(async (error: Error) => {
    throw new Error(`${error.message}\nstatus: ${JSON.stringify((await daemon.status()).services)}\nprocesses:\n${describeProcesses(appProcesses(appMarker))}`);
  });
  for (const service of (await daemon.status()).services) assert.equal(service.restarts, 0, `${service.name} restarted: ${JSON.stringify(service)}`);
});

function setConfigTarget(daemon: Daemon, service: string, target: string): void {
  const file = join(daemon.dir, 'rainbow.conf.json');
  const config = JSON.parse(readFileSync(file, 'utf8')) as { services: Record<string, { target?: string }> };
  config.services[service]!.target = target;
  writeFileSync(file, JSON.stringify(config, null, 2));
}
