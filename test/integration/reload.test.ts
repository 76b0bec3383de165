import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cli, describeCli } from '../helpers/cli.js';
import { startAppDaemon } from '../helpers/daemon.js';
import { ENGINES, testEachEngine } from '../helpers/engines.js';
import { header, request } from '../helpers/http.js';
import { uniqueMarker } from '../helpers/process.js';
import { startTarget } from '../helpers/target.js';

function editConfig(dir: string, change: (config: Record<string, unknown>) => void): void {
  const file = join(dir, 'rainbow.conf.json');
  const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  change(config);
  writeFileSync(file, JSON.stringify(config, null, 2));
}

test('SIGHUP reloads the config: new values apply from the next deploy', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'sighup' });
  editConfig(daemon.dir, (config) => (config.run = `echo "release $RELEASE"; ${config.run as string}`));
  editConfig(daemon.dir, (config) => (config.env = { RELEASE: 'two' }));
  daemon.signal('SIGHUP');
  await daemon.waitForLog(/rainbowd reloaded .*reason="SIGHUP; new values apply from the next deploy"/);
  assert.equal((await daemon.service()).activeGeneration, 1, 'a reload alone deploys nothing');
  await daemon.redeploy();
  assert.match(daemon.log(), /^\[default#2\] release two$/m);
  assert.doesNotMatch(daemon.log(), /^\[default#1\] release/m);
  assert.equal((await request(daemon.proxyPort, '/')).headers['x-generation'], '2');
});

test('a bad config on reload is reported and changes nothing', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'bad-reload' });
  writeFileSync(join(daemon.dir, 'rainbow.conf.json'), '{"run": ');
  await daemon.waitForLog(/rainbowd reload-failed .*not valid JSON.*keeping the running config/);
  const answer = await daemon.redeploy();
  assert.equal(answer.status, 200, 'the running config still deploys');
  assert.equal((await request(daemon.proxyPort, '/')).status, 200);
});

// rainbowd upgrade hands over the proxy's listener, in the daemon's process or in proxy workers,
// or the new daemon's reload of HAProxy binds the new address: the line says it applies.
for (const workers of [0, 2]) {
  testEachEngine(`a port or listen-address change${workers > 0 ? ` with ${workers} proxy workers` : ''} is reported as needing an upgrade or a restart, never silently ignored`, { timeout: 60_000, engines: workers === 0 ? ENGINES : ['node'] }, async (t, engine) => {
    const { daemon } = await startAppDaemon(t, { name: `port-reload-${engine}`, engine, config: { workers } });
    editConfig(daemon.dir, (config) => {
      config.port = (config.port as number) + 1000 > 65535 ? 1024 : (config.port as number) + 1000;
      config.host = '127.0.0.2';
    });
    for (const key of ['port', 'host']) {
      const line = await daemon.waitForLog(new RegExp(`reload-ignored key=${key} `));
      assert.match(line, new RegExp(`changing \\\\?"${key}\\\\?" needs rainbowd upgrade \\(or a restart\\)`));
    }
    assert.equal((await request(daemon.proxyPort, '/')).status, 200, 'still listening on the old port');
  });
}

test('a reload that gives a config service a host owned by a deployed service is refused, and the running config stays', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'reload-clash' });
  const api = await startTarget(t, { service: 'api', label: 'api1', marker: uniqueMarker('reload-clash-target') });
  const deployed = await cli(daemon, ['deploy', 'api', '--target', api.address, '--host', 'x.test', '--health-check-path', '/health']);
  assert.equal(deployed.code, 0, describeCli(deployed));
  const before = (await daemon.status()).services.map((service) => service.name);

  editConfig(daemon.dir, (config) => (config.services = { site: { run: config.run, host: 'x.test', healthCheckPath: '/health' } }));
  daemon.signal('SIGHUP');
  const line = await daemon.waitForLog(/rainbowd reload-failed /);
  assert.match(line, /services\.site.*host x\.test belongs to \\?"api\\?".*keeping the running config/);
  assert.doesNotMatch(daemon.log(), /rainbowd reloaded /);

  assert.deepEqual((await daemon.status()).services.map((service) => service.name), before, 'the services listed changed');
  const routed = await request(daemon.proxyPort, '/', { headers: { host: 'x.test' } });
  assert.equal(header(routed, 'x-service'), 'api', 'x.test no longer goes to the deployed service');
});
