import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cli, describeCli } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { testEachEngine, type Engine } from '../helpers/engines.js';
import { header, request, type Response } from '../helpers/http.js';
import { openWebSocket } from '../helpers/websocket.js';
import { describeLoad, startLoad, type LoadResult } from '../helpers/load.js';
import { appRunLine } from '../helpers/paths.js';
import { appProcesses, describeProcesses, isAlive, uniqueMarker } from '../helpers/process.js';
import { startTarget, type Target } from '../helpers/target.js';
import { waitFor } from '../helpers/wait.js';

// pause / resume, stop / start, rollback, remove and list, each doing what it says, under
// load where it matters. `app` is a supervised service; `ext` an external one deployed with
// `rainbowd deploy`.

interface Setup {
  daemon: Daemon;
  marker: string;
  ext: Target;
}

async function startServices(t: TestContext, engine: Engine, appConfig: Record<string, unknown> = {}): Promise<Setup> {
  const marker = uniqueMarker('service-commands');
  const daemon = await startDaemon(t, {
    marker,
    engine,
    waitUntilActive: false,
    config: { services: { app: { run: appRunLine(marker), host: ['app.test', 'www.app.test'], healthCheckPath: '/health', ...appConfig } } },
  });
  await daemon.waitForActive({ service: 'app' });
  const ext = await startTarget(t, { service: 'ext', label: 'ext1', marker: uniqueMarker('service-commands-target') });
  await expectOk(cli(daemon, ['deploy', 'ext', '--target', ext.address, '--host', 'ext.test', '--path-prefix', '/api', '--health-check-path', '/health']));
  return { daemon, marker, ext };
}

async function expectOk(running: ReturnType<typeof cli>): ReturnType<typeof cli> {
  const result = await running;
  assert.equal(result.code, 0, describeCli(result));
  return result;
}

function get(daemon: Daemon, host: string, path = '/', timeout = 5000): Promise<Response & { at: number }> {
  return request(daemon.proxyPort, path, { headers: { host }, timeout }).then((response) => ({ ...response, at: Date.now() }));
}

function assertNoFailure(result: LoadResult, service: string): void {
  assert.equal(result.errorCount, 0, `transport errors under load:\n${describeLoad(result)}`);
  assert.deepEqual(Object.keys(result.byStatus), ['200'], `non-200 responses under load:\n${describeLoad(result)}`);
  assert.deepEqual(result.byService, { [service]: result.total }, `responses from another service than ${service}`);
}

testEachEngine('pause holds new requests under load while those in flight finish, and resume lets every one through', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startServices(t, engine);
  const load = startLoad({ port: daemon.proxyPort, host: 'app.test', keepAliveClients: 4, newConnectionClients: 1, requestTimeout: 15_000, maxDuration: 30_000 });
  let result;
  try {
    await load.waitForRequests();
    const inFlight = get(daemon, 'app.test', '/slow?ms=1500');
    await daemon.waitForLog(/\[app#\d+\] .*received \/slow\?ms=1500$/);
    const paused = await expectOk(cli(daemon, ['pause', 'app']));
    assert.match(paused.stdout, /app: paused/);
    const atPause = load.snapshot().total;
    const slow = await inFlight;
    assert.equal(slow.status, 200, 'a request in flight at the pause did not finish');
    // The pause lasts 2 s: requests that arrive during it must wait for the resume.
    await sleep(2000);
    const duringPause = load.snapshot().total - atPause;
    assert.ok(duringPause <= 10, `${duringPause} requests were answered during the pause`);
    assert.equal((await daemon.service('app')).mode, 'paused');
    const resumedAt = Date.now();
    await expectOk(cli(daemon, ['resume', 'app']));
    assert.ok(slow.at < resumedAt, 'the request in flight at the pause waited for the resume');
    await load.waitForRequests();
  } finally {
    result = await load.stop();
  }
  assertNoFailure(result, 'app');
  assert.ok(result.maxElapsedMs >= 1800, `no request waited through the pause (longest ${result.maxElapsedMs} ms)`);
});

testEachEngine('with a short --max-pause, requests that wait longer get 503, and the service serves again after resume', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startServices(t, engine);
  // Longer than Node's timers can wait (it would become 1 ms): refused, and nothing changes.
  const tooLong = await request(daemon.controlPort, '/services/app/pause?maxPause=1000h', { method: 'POST', body: '' });
  assert.equal(tooLong.status, 400, tooLong.body);
  assert.match(tooLong.body, /maxPause must be a duration of at most 596h31m .*got \\"1000h\\"/);
  assert.equal((await daemon.service('app')).mode, 'running');
  const drainTooLong = await cli(daemon, ['deploy', 'ext', '--target', '127.0.0.1:1', '--drain-timeout', '1000h']);
  assert.equal(drainTooLong.code, 2, describeCli(drainTooLong));
  assert.match(drainTooLong.stderr, /^rainbowd: deploy ext: "drainTimeout" must be a duration of at most 596h31m .*, got "1000h"\n$/);
  await expectOk(cli(daemon, ['pause', 'app', '--max-pause', '500ms']));
  const response = await get(daemon, 'app.test');
  assert.equal(response.status, 503, `${response.status} ${response.body}`);
  assert.ok(response.elapsedMs >= 450 && response.elapsedMs < 3000, `the 503 came after ${response.elapsedMs} ms, not after the 500 ms max pause`);
  assert.match(response.body, /paused/);
  assert.equal(header(response, 'x-service'), undefined);
  // Other services are not paused.
  assert.equal((await get(daemon, 'ext.test', '/api/x')).status, 200);
  await expectOk(cli(daemon, ['resume', 'app']));
  const after = await get(daemon, 'app.test');
  assert.equal(after.status, 200);
  assert.equal(header(after, 'x-service'), 'app');
});

testEachEngine('a WebSocket opened during a pause waits for the resume like any other request', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startServices(t, engine);
  await expectOk(cli(daemon, ['pause', 'app']));
  const opening = openWebSocket(daemon.proxyPort, '/chat', { headers: { host: 'app.test' }, timeout: 10_000 }).then((socket) => ({ socket, at: Date.now() }));
  opening.catch(() => undefined);
  // The pause lasts 1 s after the WebSocket was sent: it must not be accepted before the resume.
  await sleep(1000);
  const resumedAt = Date.now();
  await expectOk(cli(daemon, ['resume', 'app']));
  const { socket, at } = await opening;
  assert.ok(at >= resumedAt, 'the WebSocket was accepted during the pause');
  assert.equal(socket.headers['x-service'], 'app');
  socket.send('after the pause');
  assert.equal(await socket.next(), 'after the pause');
  await socket.close();
});

testEachEngine('stop --message answers 503 with the message until start, which serves again at once', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startServices(t, engine);
  const active = await daemon.waitForActive({ service: 'app' });
  const stopped = await expectOk(cli(daemon, ['stop', 'app', '--message', 'Back at 5 pm, sorry!']));
  assert.match(stopped.stdout, /stopped/);
  for (const host of ['app.test', 'www.app.test']) {
    const response = await get(daemon, host, '/anything');
    assert.equal(response.status, 503);
    assert.match(response.body, /Back at 5 pm, sorry!/);
    assert.equal(header(response, 'x-service'), undefined);
  }
  await expectOk(cli(daemon, ['stop', 'ext']));
  const maintenance = await get(daemon, 'ext.test', '/api/');
  assert.equal(maintenance.status, 503);
  assert.match(maintenance.body, /maintenance/);
  await expectOk(cli(daemon, ['start', 'app']));
  // At once: the first request after `start` answers is served, by the generation that
  // served before the stop (nothing was redeployed or restarted).
  const served = await get(daemon, 'app.test');
  assert.equal(served.status, 200);
  assert.equal(header(served, 'x-service'), 'app');
  assert.equal(header(served, 'x-generation'), String(active.id));
  assert.equal((await daemon.service('app')).restarts, 0);
  assert.equal((await get(daemon, 'ext.test', '/api/')).status, 503, 'start of app started ext too');
});

testEachEngine('rollback of an external service under load goes back to the previous target with no error', { timeout: 60_000 }, async (t, engine) => {
  const { daemon, ext } = await startServices(t, engine);
  const none = await cli(daemon, ['rollback', 'ext']);
  assert.equal(none.code, 1, describeCli(none));
  assert.match(none.stderr, /no previous target/);

  const next = await startTarget(t, { service: 'ext', label: 'ext2', marker: uniqueMarker('service-commands-target') });
  await expectOk(cli(daemon, ['deploy', 'ext', '--target', next.address, '--host', 'ext.test', '--path-prefix', '/api', '--health-check-path', '/health']));
  assert.equal(header(await get(daemon, 'ext.test', '/api/'), 'x-generation'), 'ext2');
  const load = startLoad({ port: daemon.proxyPort, host: 'ext.test', path: '/api/x', keepAliveClients: 6, newConnectionClients: 1, requestTimeout: 10_000, maxDuration: 30_000 });
  let result;
  try {
    await load.waitForRequests();
    const rolledBack = await expectOk(cli(daemon, ['rollback', 'ext']));
    assert.match(rolledBack.stdout, /^rolled back ext to /);
    const after = await get(daemon, 'ext.test', '/api/x');
    assert.equal(header(after, 'x-generation'), 'ext1', 'requests did not go back to the previous target');
    assert.equal(header(after, 'x-path'), '/x');
    await load.waitForRequests();
  } finally {
    result = await load.stop();
  }
  assertNoFailure(result, 'ext');
  assert.deepEqual(result.generations, ['ext1', 'ext2']);
  assert.equal((await daemon.service('ext')).target, ext.address);
  const saved = JSON.parse(readFileSync(join(daemon.dir, 'rainbow.state.json'), 'utf8')) as { services: Record<string, { deployed?: { target?: string } }> };
  assert.equal(saved.services.ext?.deployed?.target, ext.address, 'the state file still names the target rolled back from');
});

testEachEngine('after a rollback to a target deployed with other hosts, the hosts listed are the hosts routed', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startServices(t, engine);
  const next = await startTarget(t, { service: 'ext', label: 'ext2', marker: uniqueMarker('service-commands-target') });
  await expectOk(cli(daemon, ['deploy', 'ext', '--target', next.address, '--host', 'ext.test', '--host', 'new.ext.test', '--path-prefix', '/api', '--health-check-path', '/health']));
  assert.equal(header(await get(daemon, 'new.ext.test', '/api/'), 'x-service'), 'ext');
  await expectOk(cli(daemon, ['rollback', 'ext']));
  const listed = (await daemon.service('ext')).hosts ?? [];
  const routed = header(await get(daemon, 'new.ext.test', '/api/'), 'x-service') === 'ext';
  assert.equal(routed, listed.includes('new.ext.test'), `after the rollback ext lists the hosts ${listed.join(',')} but new.ext.test is ${routed ? '' : 'not '}routed to it`);
});

testEachEngine('rollback of a supervised service takes back the previous generation while it is still draining', { timeout: 120_000 }, async (t, engine) => {
  const { daemon, marker } = await startServices(t, engine, { drainTimeout: '30s' });
  const first = await daemon.waitForActive({ service: 'app' });
  // Held by the app until the rollback is done: #1 drains however long the CLI calls take.
  const slow = get(daemon, 'app.test', '/hold?id=rollback', 120_000);
  await daemon.waitForInFlight({ service: 'app', timeout: 30_000 });
  const redeploy = cli(daemon, ['redeploy', 'app']);
  const second = await daemon.waitForActive({ service: 'app', after: first.id, timeout: 30_000 });
  await waitFor(async () => (await daemon.service('app')).generations.find((generation) => generation.id === first.id)?.state === 'draining', {
    timeout: 30_000,
    what: `generation #${first.id} draining`,
  });

  const rolledBack = await expectOk(cli(daemon, ['rollback', 'app']));
  assert.match(rolledBack.stdout, new RegExp(`generation #${first.id}\\b`));
  await request(first.port, '/release?id=rollback');
  // The redeploy under way does not claim that its generation serves.
  const redeployed = await redeploy;
  assert.equal(redeployed.code, 1, describeCli(redeployed));
  assert.match(redeployed.stderr, new RegExp(`deployed app#${second.id}, but a rollback then took app#${first.id} back into service`));
  const after = await get(daemon, 'app.test');
  assert.equal(header(after, 'x-generation'), String(first.id), 'new requests did not go back to the previous generation');
  const held = await slow;
  assert.equal(held.status, 200);
  assert.equal(header(held, 'x-generation'), String(first.id));
  // The generation rolled back from is drained and stopped; the rolled-back one stays.
  await waitFor(
    async () => {
      const service = await daemon.service('app');
      return service.activeGeneration === first.id && service.generations.length === 1 && second.pid !== null && !isAlive(second.pid);
    },
    { timeout: 30_000, what: `#${second.id} stopped and #${first.id} the only generation` },
  );
  assert.equal(appProcesses(marker).length, 1, describeProcesses(appProcesses(marker)));

  // Once the previous generation has stopped there is nothing to roll back to.
  const third = await daemon.redeploy({ service: 'app' });
  assert.equal(third.status, 200, JSON.stringify(third.body));
  const none = await cli(daemon, ['rollback', 'app']);
  assert.equal(none.code, 1, describeCli(none));
  assert.match(none.stderr, /no previous generation/);
  assert.equal(header(await get(daemon, 'app.test'), 'x-generation'), String(third.body.generation));
});

testEachEngine('remove drains the service (a request in flight completes), then its host answers 404 or the catch-all and its processes are gone', { timeout: 60_000 }, async (t, engine) => {
  const { daemon, marker } = await startServices(t, engine, { drainTimeout: '20s' });
  assert.equal(appProcesses(marker).length, 1);
  const slow = get(daemon, 'app.test', '/slow?ms=2000', 15_000);
  await daemon.waitForInFlight({ service: 'app' });
  const removed = await expectOk(cli(daemon, ['remove', 'app']));
  const held = await slow;
  assert.equal(held.status, 200, 'the request in flight was cut by remove');
  assert.ok(held.at <= removed.exitedAt, `remove exited ${held.at - removed.exitedAt} ms before its request in flight finished`);
  const gone = await get(daemon, 'app.test');
  assert.equal(gone.status, 404);
  assert.equal(describeProcesses(appProcesses(marker)), '(none)', 'the removed service left processes');
  assert.ok(!(await daemon.status()).services.some((service) => service.name === 'app'));

  // A removed host falls to the catch-all when there is one.
  const fallback = await startTarget(t, { service: 'fallback', label: 'fallback', marker: uniqueMarker('service-commands-target') });
  await expectOk(cli(daemon, ['deploy', 'fallback', '--target', fallback.address, '--health-check-path', '/health']));
  assert.equal(header(await get(daemon, 'ext.test', '/api/'), 'x-service'), 'ext');
  await expectOk(cli(daemon, ['remove', 'ext']));
  assert.equal(header(await get(daemon, 'ext.test', '/api/'), 'x-service'), 'fallback');
  const saved = JSON.parse(readFileSync(join(daemon.dir, 'rainbow.state.json'), 'utf8')) as { services: Record<string, unknown> };
  assert.deepEqual(Object.keys(saved.services), ['fallback'], 'the removed service is still in the state file');

  const unknown = await cli(daemon, ['remove', 'nothing']);
  assert.equal(unknown.code, 1, describeCli(unknown));
  assert.match(unknown.stderr, /no service named "nothing"/);
});

// What the CLI prints, the same whatever the data path.
test('list shows a table of services with hosts, path, target or generation, and state', { timeout: 60_000 }, async (t) => {
  const { daemon, ext } = await startServices(t, 'node');
  const active = await daemon.waitForActive({ service: 'app' });
  const rows = async () => (await expectOk(cli(daemon, ['list']))).stdout.trimEnd().split('\n');

  const table = await rows();
  assert.match(table[0] ?? '', /^SERVICE\s+HOSTS\s+PATH\s+TARGET\s+STATE$/);
  assert.equal(table.length, 3, table.join('\n'));
  assert.match(table.find((row) => row.startsWith('app ')) ?? '', new RegExp(`^app\\s+app\\.test,www\\.app\\.test\\s+/\\s+#${active.id} on :${active.port}\\s+running$`));
  assert.match(table.find((row) => row.startsWith('ext ')) ?? '', new RegExp(`^ext\\s+ext\\.test\\s+/api\\s+${ext.address.replaceAll('.', '\\.')}\\s+running$`));

  await expectOk(cli(daemon, ['pause', 'app']));
  await expectOk(cli(daemon, ['stop', 'ext', '--message', 'x']));
  const changed = await rows();
  assert.match(changed.find((row) => row.startsWith('app ')) ?? '', /\spaused$/);
  assert.match(changed.find((row) => row.startsWith('ext ')) ?? '', /\sstopped$/);

  const json = JSON.parse((await expectOk(cli(daemon, ['list', '--json']))).stdout) as Array<{ name: string; mode: string }>;
  assert.deepEqual(json.map((service) => [service.name, service.mode]), [['app', 'paused'], ['ext', 'stopped']]);
});

