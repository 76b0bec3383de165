import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import getPort from 'get-port';
import { setTimeout as sleep } from 'node:timers/promises';
import { cli, describeCli } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { testEachEngine } from '../helpers/engines.js';
import { header, request } from '../helpers/http.js';
import { appRunLine } from '../helpers/paths.js';
import { uniqueMarker } from '../helpers/process.js';
import { startTarget, type Target } from '../helpers/target.js';
import { waitFor } from '../helpers/wait.js';

// rainbow.state.json keeps what `rainbowd deploy`, `pause` and `stop` changed, so that a
// restart brings it back. It is written atomically, read entry by entry, and never written
// by a deploy that was refused.

interface SavedState {
  version: number;
  services: Record<string, { deployed?: { target?: string; host?: string[]; pathPrefix?: string }; mode?: string; message?: string | null }>;
}

const config = { services: {} };

function stateFile(daemon: Daemon): string {
  return join(daemon.dir, 'rainbow.state.json');
}

function readState(daemon: Daemon): SavedState {
  return JSON.parse(readFileSync(stateFile(daemon), 'utf8')) as SavedState;
}

async function deploy(daemon: Daemon, name: string, target: Target, args: string[] = []): Promise<void> {
  const result = await cli(daemon, ['deploy', name, '--target', target.address, '--host', `${name}.test`, '--health-check-path', '/health', ...args]);
  assert.equal(result.code, 0, `deploy ${name}: ${describeCli(result)}`);
}

async function restart(t: TestContext, daemon: Daemon): Promise<Daemon> {
  assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
  return startDaemon(t, { config, engine: daemon.engine, dir: daemon.dir, waitUntilActive: false });
}

function get(daemon: Daemon, host: string, path = '/') {
  return request(daemon.proxyPort, path, { headers: { host } });
}

testEachEngine('services deployed from the CLI and their stop state come back after a restart, each health-checked before it takes traffic', { timeout: 90_000 }, async (t, engine) => {
  const marker = uniqueMarker('state-restart');
  const one = await startTarget(t, { service: 'one', label: 'one', marker });
  let two = await startTarget(t, { service: 'two', label: 'two', marker });
  const three = await startTarget(t, { service: 'three', label: 'three', marker });
  const first = await startDaemon(t, { config, engine, waitUntilActive: false });
  await deploy(first, 'one', one);
  await deploy(first, 'two', two, ['--path-prefix', '/two']);
  await deploy(first, 'three', three);
  const stopped = await cli(first, ['stop', 'three', '--message', 'Back at noon']);
  assert.equal(stopped.code, 0, describeCli(stopped));

  const saved = readState(first);
  assert.equal(saved.version, 1);
  assert.equal(saved.services.one?.deployed?.target, one.address);
  assert.deepEqual(saved.services.one?.deployed?.host, ['one.test']);
  assert.equal(saved.services.two?.deployed?.pathPrefix, '/two');
  assert.equal(saved.services.three?.mode, 'stopped');
  assert.equal(saved.services.three?.message, 'Back at noon');
  assert.deepEqual(readdirSync(first.dir).filter((name) => name.includes('tmp')), [], 'a temporary state file was left behind');

  // While rainbowd is down, two's target is replaced by one whose health check fails.
  await two.kill();
  const unhealthy = await startTarget(t, { service: 'two', label: 'two-unhealthy', marker, port: two.port, args: ['--health', '500'] });
  const second = await restart(t, first);
  await second.waitForActive({ service: 'one' });
  assert.match(second.log(), /two restored/);
  assert.doesNotMatch(second.log(), /state-skipped/);

  const fromOne = await get(second, 'one.test');
  assert.equal(fromOne.status, 200);
  assert.equal(header(fromOne, 'x-service'), 'one');
  const fromThree = await get(second, 'three.test');
  assert.equal(fromThree.status, 503, 'the stopped service serves again after the restart');
  assert.match(fromThree.body, /Back at noon/);
  // two is back but not healthy: no request may reach its target.
  for (let i = 0; i < 5; i++) {
    const response = await get(second, 'two.test', '/two/page');
    assert.equal(response.status, 503, `an unhealthy restored target got traffic: ${response.status} ${response.body}`);
    assert.equal(header(response, 'x-service'), undefined);
    // Spread over a second: a target taken into service early would be seen.
    await sleep(200);
  }
  assert.equal((await second.service('two')).activeGeneration, null);

  // Once its target is healthy, two takes traffic, with its saved path prefix.
  await unhealthy.kill();
  two = await startTarget(t, { service: 'two', label: 'two-healthy', marker, port: two.port });
  await second.waitForActive({ service: 'two', timeout: 20_000 });
  const fromTwo = await get(second, 'two.test', '/two/page');
  assert.equal(fromTwo.status, 200);
  assert.equal(header(fromTwo, 'x-generation'), 'two-healthy');
  assert.equal(header(fromTwo, 'x-path'), '/page');
  const started = await cli(second, ['start', 'three']);
  assert.equal(started.code, 0, describeCli(started));
  assert.equal(header(await get(second, 'three.test'), 'x-service'), 'three');
});

testEachEngine('a corrupted state entry is reported in the log and skipped while the others come back', { timeout: 60_000 }, async (t, engine) => {
  const marker = uniqueMarker('state-corrupt');
  const one = await startTarget(t, { service: 'one', label: 'one', marker });
  const two = await startTarget(t, { service: 'two', label: 'two', marker });
  const appMarker = uniqueMarker('state-corrupt-app');
  const withApp = { services: { app: { run: appRunLine(appMarker), host: 'app.test', healthCheckPath: '/health' } } };
  const first = await startDaemon(t, { config: withApp, engine, marker: appMarker, waitUntilActive: false });
  await deploy(first, 'one', one);
  await deploy(first, 'two', two);
  assert.equal((await cli(first, ['pause', 'app'])).code, 0);
  assert.deepEqual(await first.stop(), { code: 0, signal: null });

  const saved = readState(first);
  const broken = {
    ...saved,
    services: {
      bad: { mode: 'sideways' },
      ...saved.services,
      worse: { deployed: { target: 'not an address', host: ['worse.test'] } },
      text: 'not an object',
      thief: { deployed: { target: one.address, host: ['one.test'] } },
    },
  };
  writeFileSync(stateFile(first), JSON.stringify(broken, null, 2));
  const second = await startDaemon(t, { config: withApp, engine, marker: appMarker, dir: first.dir, waitUntilActive: false });
  await second.waitForActive({ service: 'one' });
  await second.waitForActive({ service: 'two' });
  await second.waitForActive({ service: 'app' });

  const skipped = second.output.filter((line) => line.includes('state-skipped'));
  for (const name of ['bad', 'worse', 'text', 'thief']) {
    // The log quotes the reason, so the name's quotes are escaped in it.
    assert.ok(skipped.some((line) => line.includes(`\\"${name}\\"`)), `no state-skipped line names "${name}":\n${skipped.join('\n')}`);
  }
  assert.deepEqual((await second.status()).services.map((service) => service.name).sort(), ['app', 'one', 'two']);
  assert.equal(header(await get(second, 'one.test'), 'x-service'), 'one');
  assert.equal(header(await get(second, 'two.test'), 'x-service'), 'two');
  assert.equal((await second.service('app')).mode, 'paused', 'the pause of app was lost');
});

test('a state file that is not JSON at all is set aside and reported, and rainbowd starts with its config', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('state-not-json');
  const withApp = { services: { app: { run: appRunLine(marker), host: 'app.test', healthCheckPath: '/health' } } };
  const daemon = await startDaemon(t, { config: withApp, marker, files: { 'rainbow.state.json': '{"version": 1, "services": {"one": {"deployed"' }, waitUntilActive: false });
  await daemon.waitForActive({ service: 'app' });
  assert.match(await daemon.waitForLog(/state-skipped/), /not valid JSON/);
  assert.ok(existsSync(`${stateFile(daemon)}.corrupt`), 'the unreadable state file was not kept aside');
  assert.equal(header(await get(daemon, 'app.test'), 'x-service'), 'app');
});

testEachEngine("a saved target that is rainbowd's own proxy is skipped with the reason, and the others come back", { timeout: 60_000 }, async (t, engine) => {
  const one = await startTarget(t, { service: 'one', label: 'one', marker: uniqueMarker('state-loop') });
  const proxyPort = await getPort({ host: '127.0.0.1' });
  const saved = { version: 1, services: { one: { deployed: { target: one.address, host: ['one.test'] } }, loop: { deployed: { target: `127.0.0.1:${proxyPort}`, host: ['loop.test'] } } } };
  const daemon = await startDaemon(t, { config, engine, proxyPort, files: { 'rainbow.state.json': JSON.stringify(saved) }, waitUntilActive: false });
  await daemon.waitForActive({ service: 'one' });
  assert.match(await daemon.waitForLog(/ loop state-skipped /), new RegExp(`target 127\\.0\\.0\\.1:${proxyPort} is rainbowd's own proxy`));
  assert.deepEqual((await daemon.status()).services.map((service) => service.name), ['one']);
  assert.equal((await get(daemon, 'loop.test')).status, 404);
  assert.equal(header(await get(daemon, 'one.test'), 'x-service'), 'one');
});

// JSON that is not an object used to throw in the start sequence: listening, never deploying.
for (const content of ['null', '[]', '3', '"x"', '{"version": 1, "services": null}']) {
  test(`a state file holding ${content} is set aside and reported, and rainbowd deploys and serves`, { timeout: 60_000 }, async (t) => {
    const marker = uniqueMarker('state-not-object');
    const withApp = { services: { app: { run: appRunLine(marker), host: 'app.test', healthCheckPath: '/health' } } };
    const daemon = await startDaemon(t, { config: withApp, marker, files: { 'rainbow.state.json': content }, waitUntilActive: false });
    await daemon.waitForActive({ service: 'app' });
    assert.match(await daemon.waitForLog(/state-skipped/), /not an object; kept as .*rainbow\.state\.json\.corrupt, starting without saved services/);
    assert.equal(readFileSync(`${stateFile(daemon)}.corrupt`, 'utf8'), content, 'the unreadable state file was not kept aside as it was');
    assert.equal(header(await get(daemon, 'app.test'), 'x-service'), 'app');
  });
}

testEachEngine('a refused deploy never touches the state file, not even when another change saves the state while it is being health-checked', { timeout: 90_000 }, async (t, engine) => {
  const marker = uniqueMarker('state-refused');
  const good = await startTarget(t, { service: 'web', label: 'good', marker });
  const aux = await startTarget(t, { service: 'aux', label: 'aux', marker });
  const unhealthy = await startTarget(t, { service: 'web', label: 'unhealthy', marker, args: ['--health', 'never'] });
  const first = await startDaemon(t, { config, engine, waitUntilActive: false });

  // Refused before anything was saved: no state file appears.
  const refusedFirst = await cli(first, ['deploy', 'web', '--target', unhealthy.address, '--host', 'web.test', '--health-check-path', '/health', '--deploy-timeout', '1s']);
  assert.equal(refusedFirst.code, 1, describeCli(refusedFirst));
  assert.equal(existsSync(stateFile(first)), false, 'a refused deploy created the state file');

  await deploy(first, 'web', good);
  await deploy(first, 'aux', aux);
  const refusing = cli(first, ['deploy', 'web', '--target', unhealthy.address, '--host', 'web.test', '--health-check-path', '/health', '--deploy-timeout', '3s']);
  await waitFor(async () => (await first.service('web')).deploying, { timeout: 30_000, what: "web's refused deploy to be under way" });
  // Saves the state while web's refused deploy is still being health-checked.
  assert.equal((await cli(first, ['stop', 'aux', '--message', 'maintenance'])).code, 0);
  const refused = await refusing;
  assert.equal(refused.code, 1, describeCli(refused));
  const saved = readState(first);
  assert.equal(saved.services.aux?.mode, 'stopped');
  assert.equal(saved.services.web?.deployed?.target, good.address, `the refused target reached the state file: ${JSON.stringify(saved.services.web)}`);

  // And so a restart brings back the target that served, not the refused one.
  const second = await restart(t, first);
  await waitFor(async () => header(await get(second, 'web.test'), 'x-generation') === 'good', { timeout: 5000, what: 'web to serve from its good target after the restart' });
});
