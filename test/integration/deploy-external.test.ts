import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import getPort from 'get-port';
import { cli, describeCli } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { testEachEngine, type Engine } from '../helpers/engines.js';
import { header, request } from '../helpers/http.js';
import { describeLoad, startLoad, type LoadResult } from '../helpers/load.js';
import { uniqueMarker } from '../helpers/process.js';
import { startTarget, type Target } from '../helpers/target.js';
import { waitFor } from '../helpers/wait.js';

// `rainbowd deploy NAME --target HOST:PORT`, kamal-proxy's deploy: health-check the target,
// switch, drain the previous target, and only then exit 0, so that the caller may remove
// the previous target at once. A target that never becomes healthy changes nothing.

const host = 'web.test';

async function daemonWithWeb(t: TestContext, engine: Engine, first: Target, extraArgs: string[] = []): Promise<Daemon> {
  const daemon = await startDaemon(t, { config: { services: {} }, engine, waitUntilActive: false });
  const deployed = await deploy(daemon, first, extraArgs);
  assert.equal(deployed.code, 0, describeCli(deployed));
  return daemon;
}

function deploy(daemon: Daemon, target: Target | string, extraArgs: string[] = []) {
  const address = typeof target === 'string' ? target : target.address;
  return cli(daemon, ['deploy', 'web', '--target', address, '--host', host, '--health-check-path', '/health', ...extraArgs]);
}

function assertNoFailure(result: LoadResult): void {
  assert.equal(result.errorCount, 0, `transport errors under load:\n${describeLoad(result)}`);
  assert.deepEqual(Object.keys(result.byStatus), ['200'], `non-200 responses under load:\n${describeLoad(result)}`);
  assert.deepEqual(result.byService, { web: result.total }, 'responses from another service than web');
}

testEachEngine('deploy of a new target under load loses no request and exits only after a slow request to the old target has completed', { timeout: 90_000 }, async (t, engine) => {
  const marker = uniqueMarker('deploy-external');
  const old = await startTarget(t, { service: 'web', label: 'old', marker });
  const next = await startTarget(t, { service: 'web', label: 'new', marker });
  const daemon = await daemonWithWeb(t, engine, old);
  const load = startLoad({ port: daemon.proxyPort, host, keepAliveClients: 8, newConnectionClients: 1, requestTimeout: 10_000, maxDuration: 60_000 });

  let result;
  try {
    await load.waitForRequests();
    const slow = request(daemon.proxyPort, '/slow?ms=2500', { headers: { host }, timeout: 15_000 }).then((response) => ({ ...response, at: Date.now() }));
    await waitFor(() => old.output.some((line) => line.endsWith('received /slow?ms=2500')), { timeout: 5000, what: 'the slow request to reach the old target' });
    const deployed = await deploy(daemon, next, ['--drain-timeout', '20s']);
    const slowResponse = await slow;
    assert.equal(deployed.code, 0, describeCli(deployed));
    assert.match(deployed.stdout, /deployed web to 127\.0\.0\.1:\d+/);
    assert.equal(slowResponse.status, 200, `the slow request got ${slowResponse.status}: ${slowResponse.body}`);
    assert.equal(header(slowResponse, 'x-generation'), 'old', 'the slow request was not answered by the old target');
    assert.ok(slowResponse.at <= deployed.exitedAt, `deploy exited ${slowResponse.at - deployed.exitedAt} ms before the old target answered its slow request`);
    assert.ok(deployed.elapsedMs >= 1500, `deploy returned after ${deployed.elapsedMs} ms: it cannot have waited for the slow request`);

    // Exit 0 means the old target may go away at once.
    await old.kill('SIGKILL');
    await load.waitForRequests();
    const fresh = await request(daemon.proxyPort, '/', { headers: { host } });
    assert.equal(header(fresh, 'x-generation'), 'new');
  } finally {
    result = await load.stop();
  }
  assertNoFailure(result);
  assert.deepEqual(result.generations, ['new', 'old']);
  const service = await daemon.service('web');
  assert.equal(service.target, next.address);
  assert.equal(service.generations.length, 1, `the old target is still listed: ${JSON.stringify(service)}`);
});

testEachEngine('a target that never becomes healthy is refused with exit 1 and the reason, and changes nothing: traffic, status and the state file', { timeout: 90_000 }, async (t, engine) => {
  const marker = uniqueMarker('deploy-refused');
  const good = await startTarget(t, { service: 'web', label: 'good', marker });
  const unhealthy = await startTarget(t, { service: 'web', label: 'unhealthy', marker, args: ['--health', '500'] });
  const nothingThere = `127.0.0.1:${await getPort({ host: '127.0.0.1' })}`;
  const daemon = await daemonWithWeb(t, engine, good);
  const stateFile = join(daemon.dir, 'rainbow.state.json');
  const stateBefore = readFileSync(stateFile, 'utf8');
  const modifiedBefore = statSync(stateFile).mtimeMs;
  assert.match(stateBefore, new RegExp(good.address.replaceAll('.', '\\.')));
  const load = startLoad({ port: daemon.proxyPort, host, keepAliveClients: 8, newConnectionClients: 1, requestTimeout: 10_000, maxDuration: 60_000 });

  let result;
  try {
    await load.waitForRequests();
    const refused = await deploy(daemon, unhealthy, ['--deploy-timeout', '1500ms']);
    assert.equal(refused.code, 1, describeCli(refused));
    assert.match(refused.stderr, /not healthy/);
    assert.match(refused.stderr, /500/, 'the reason (the health check answered 500) is not given');
    assert.equal(refused.stderr.trim().split('\n').length, 1, 'the error is not one line');

    const unreachable = await deploy(daemon, nothingThere, ['--deploy-timeout', '1s']);
    assert.equal(unreachable.code, 1, describeCli(unreachable));
    assert.match(unreachable.stderr, /connection refused/);
    await load.waitForRequests();
  } finally {
    result = await load.stop();
  }
  assertNoFailure(result);
  assert.deepEqual(result.generations, ['good'], 'requests reached another target than the good one');
  const service = await daemon.service('web');
  assert.equal(service.target, good.address);
  assert.deepEqual(service.hosts, [host]);
  assert.equal(service.generations.length, 1, JSON.stringify(service));
  assert.equal(readFileSync(stateFile, 'utf8'), stateBefore, 'the refused deploys changed the state file');
  assert.equal(statSync(stateFile).mtimeMs, modifiedBefore, 'the refused deploys rewrote the state file');
});

testEachEngine('while a deploy that will be refused is health-checked, requests are still forwarded as before it', { timeout: 60_000 }, async (t, engine) => {
  const marker = uniqueMarker('deploy-refused-window');
  const good = await startTarget(t, { service: 'web', label: 'good', marker });
  const unhealthy = await startTarget(t, { service: 'web', label: 'unhealthy', marker, args: ['--health', 'never'] });
  const daemon = await daemonWithWeb(t, engine, good, ['--path-prefix', '/app']);
  const before = await request(daemon.proxyPort, '/app/page', { headers: { host } });
  assert.equal(header(before, 'x-path'), '/page');

  // The refused deploy would forward /app unstripped; until it has succeeded nothing may change.
  const refusing = deploy(daemon, unhealthy, ['--path-prefix', '/app', '--no-strip-path-prefix', '--deploy-timeout', '3s']);
  await waitFor(async () => (await daemon.service('web')).deploying, { timeout: 5000, what: 'the deploy to be under way' });
  const during = await request(daemon.proxyPort, '/app/page', { headers: { host } });
  const listed = await daemon.service('web');
  const refused = await refusing;
  assert.equal(refused.code, 1, describeCli(refused));
  assert.equal(header(during, 'x-generation'), 'good');
  assert.equal(header(during, 'x-path'), '/page', 'a request during the refused deploy was forwarded with the path handling of the refused deploy');
  assert.equal(listed.target, good.address, 'status showed the refused target while it was being health-checked');
  await waitFor(async () => header(await request(daemon.proxyPort, '/app/page', { headers: { host } }), 'x-path') === '/page', { timeout: 2000, what: 'the stripped path after the refusal' });
});

testEachEngine("a target that is rainbowd's own proxy or control API is refused with TARGET_LOOP and changes nothing: traffic, status and the state file", { timeout: 60_000 }, async (t, engine) => {
  const good = await startTarget(t, { service: 'web', label: 'good', marker: uniqueMarker('deploy-loop') });
  const daemon = await daemonWithWeb(t, engine, good);
  const stateFile = join(daemon.dir, 'rainbow.state.json');
  const stateBefore = readFileSync(stateFile, 'utf8');
  const modifiedBefore = statSync(stateFile).mtimeMs;

  for (const target of [`127.0.0.1:${daemon.proxyPort}`, `localhost:${daemon.controlPort}`, `0.0.0.0:${daemon.proxyPort}`, `127.0.0.2:${daemon.proxyPort}`]) {
    const refused = await cli(daemon, ['deploy', 'loop', '--target', target, '--host', 'loop.test']);
    assert.equal(refused.code, 1, describeCli(refused));
    assert.match(refused.stderr, new RegExp(`^rainbowd: deploy loop: target ${target.replaceAll('.', '\\.')} is rainbowd's own (proxy|control API) \\(port \\d+ on this machine(, localhost is 127\\.0\\.0\\.1)?\\): every request would come back into rainbowd in a loop; give the address of the app\\n$`));
    // Replacing web's target with rainbowd itself is refused the same way, over the API too.
    const answer = await request(daemon.controlPort, '/services/web', { method: 'PUT', body: JSON.stringify({ target, host: host }) });
    assert.equal(answer.status, 409, answer.body);
    assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'TARGET_LOOP');
  }
  assert.deepEqual((await daemon.status()).services.map((service) => [service.name, service.target]), [['web', good.address]]);
  assert.equal(header(await request(daemon.proxyPort, '/', { headers: { host } }), 'x-generation'), 'good');
  assert.equal((await request(daemon.proxyPort, '/', { headers: { host: 'loop.test' } })).status, 404);
  assert.equal(readFileSync(stateFile, 'utf8'), stateBefore, 'the refused deploys changed the state file');
  assert.equal(statSync(stateFile).mtimeMs, modifiedBefore, 'the refused deploys rewrote the state file');
});
