import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAppDaemon, startDaemon, type Daemon } from '../helpers/daemon.js';
import { skipReason, testEachEngine } from '../helpers/engines.js';
import { haproxyMasters, haproxyProcesses } from '../helpers/haproxy.js';
import { request } from '../helpers/http.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { appProcesses, describeProcesses, isAlive } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

// A rainbowd that dies without stopping its apps (SIGKILL, the OOM killer) leaves them
// serving; the next one started on the same config adopts the active generation.

function configOf(daemon: Daemon): Record<string, unknown> {
  return JSON.parse(readFileSync(join(daemon.dir, 'rainbow.conf.json'), 'utf8')) as Record<string, unknown>;
}

testEachEngine('a rainbowd started on the config of a SIGKILLed one adopts its active generation under load: same app pid, served again once it listens (with HAProxy: served throughout), draining generations stopped, numbering goes on', { timeout: 120_000 }, async (t, engine) => {
  const { daemon: first, marker } = await startAppDaemon(t, { name: 'adopt', engine });
  // Generation 1 drains a long request while generation 2 serves: the one to stop, not adopt.
  const slow = request(first.proxyPort, '/slow?ms=60000', { timeout: 90_000 }).catch((error: Error) => error);
  await waitFor(async () => (await first.service()).generations[0]?.inFlight === 1, { timeout: 10_000, what: 'the slow request in flight on generation 1' });
  assert.equal((await first.redeploy({ wait: false })).status, 202);
  const active = await first.waitForActive({ after: 1 });
  await waitFor(async () => (await first.service()).generations.some((generation) => generation.id === 1 && generation.state === 'draining'), { timeout: 10_000, what: 'generation 1 draining' });
  const drainingPids = appProcesses(marker).map((info) => info.pid).filter((pid) => pid !== active.pid);
  assert.equal(drainingPids.length, 1, describeProcesses(appProcesses(marker)));

  const load = startLoad({ port: first.proxyPort, keepAliveClients: 3, newConnectionClients: 2, maxDuration: 60_000 });
  await waitFor(() => load.snapshot().total >= 50, { timeout: 10_000, what: '50 responses before the kill' });
  const haproxy = haproxyMasters(first.dir);
  first.signal('SIGKILL');
  await first.exited;
  assert.ok(isAlive(active.pid!), 'the app outlives a SIGKILLed rainbowd');
  if (engine === 'haproxy') {
    const killed = load.snapshot().total;
    await waitFor(() => load.snapshot().total >= killed + 100, { timeout: 20_000, what: '100 responses from HAProxy while no rainbowd runs' });
  }

  const second = await startDaemon(t, { config: configOf(first), engine, dir: first.dir, proxyPort: first.proxyPort, marker });
  const listening = load.snapshot();
  await waitFor(() => load.snapshot().total >= listening.total + 200, { timeout: 20_000, what: '200 more responses from the new rainbowd' });
  const result = await load.stop();

  const adopted = await second.waitForActive();
  assert.deepEqual({ id: adopted.id, pid: adopted.pid, port: adopted.port }, { id: 2, pid: active.pid, port: active.port }, 'the active generation is adopted, not restarted');
  assert.match(second.log(), / default#2 adopting port=\d+ pid=\d+ /);
  assert.equal(result.errorCount, engine === 'haproxy' ? 0 : listening.errorCount, `no failed request once the new rainbowd listens (with HAProxy: none at all):\n${describeLoad(result)}`);
  assert.deepEqual(Object.keys(result.byStatus), ['200'], `requests are either refused while no rainbowd listens, or answered 200:\n${describeLoad(result)}`);
  for (const error of Object.keys(result.errors)) assert.match(error, /ECONNREFUSED|ECONNRESET|socket hang up/, describeLoad(result));

  await waitFor(() => drainingPids.every((pid) => !isAlive(pid)), { timeout: 15_000, what: 'the draining generation stopped' });
  assert.match(second.log(), new RegExp(`default orphan-stopping pid=\\d+ reason="generation 1 of rainbowd pid ${first.pid}`));
  assert.deepEqual(appProcesses(marker).map((info) => info.pid), [active.pid], 'exactly one app process');
  assert.deepEqual(readdirSync(tmpdir()).filter((entry) => entry.startsWith(`rainbowd-${first.pid}-`)), [], "the killed rainbowd's runtime directory is removed");
  await slow;
  // The HAProxy the killed rainbowd started serves on, taken over: the only one.
  assert.deepEqual(haproxyMasters(first.dir).map((info) => info.pid), haproxy.map((info) => info.pid), describeProcesses(haproxyProcesses(first.dir)));
  assert.equal(haproxy.length, engine === 'haproxy' ? 1 : 0);
  if (engine === 'haproxy') assert.match(second.log(), new RegExp(`haproxy-adopted pid=${haproxy[0]!.pid} `));

  const redeployed = await second.redeploy();
  assert.equal(redeployed.status, 200, JSON.stringify(redeployed.body));
  assert.equal(redeployed.body.generation, 3, 'numbering goes on after the adopted generation');
  await waitFor(() => !isAlive(active.pid!), { timeout: 15_000, what: 'the adopted app stopped after the redeploy' });
  const haproxyLeft = haproxyProcesses(first.dir);
  assert.deepEqual(await second.stop(), { code: 0, signal: null });
  assert.equal(existsSync(join(first.dir, 'rainbow.generations.json')), false, 'a rainbowd that exits cleanly leaves no generation record');
  assert.ok(haproxyLeft.every((info) => !isAlive(info.pid)), `the adopted HAProxy stopped with the daemon that took it over:\n${describeProcesses(haproxyLeft)}`);
  assert.equal(existsSync(join(first.dir, 'rainbow.haproxy.json')), false, 'nor an HAProxy record');
});

test('an adopted app that dies is restarted as a new generation, like a crash', { timeout: 60_000 }, async (t) => {
  const { daemon: first, marker } = await startAppDaemon(t, { name: 'adopt-crash' });
  const active = await first.waitForActive();
  first.signal('SIGKILL');
  await first.exited;
  const second = await startDaemon(t, { config: configOf(first), dir: first.dir, marker });
  assert.equal((await second.waitForActive()).pid, active.pid);

  process.kill(active.pid!, 'SIGKILL');
  const restarted = await second.waitForActive({ after: 1 });
  assert.equal(restarted.id, 2);
  assert.match(second.log(), /default#1 stopping .*reason="crashed: exited \(its exit status is unknown: it was adopted from an earlier rainbowd\)/);
  assert.equal(appProcesses(marker).length, 1);
});

test('an app left hung (SIGSTOP) by a SIGKILLed rainbowd is given up after 10 s, not after deployTimeout: the new rainbowd listens and deploys a fresh generation', { timeout: 90_000 }, async (t) => {
  const { daemon: first, marker } = await startAppDaemon(t, { name: 'adopt-hung', config: { deployTimeout: '5m', stopTimeout: '2s' } });
  const hung = await first.waitForActive();
  first.signal('SIGKILL');
  await first.exited;
  process.kill(hung.pid!, 'SIGSTOP');
  t.after(() => {
    if (isAlive(hung.pid!)) process.kill(hung.pid!, 'SIGKILL');
  });

  // Waiting for deployTimeout (5 minutes) would outlast this test.
  const second = await startDaemon(t, { config: configOf(first), dir: first.dir, marker, startTimeout: 60_000 });
  const fresh = await second.waitForActive();
  assert.equal(fresh.id, 2, 'a fresh generation, numbered after the hung one');
  assert.notEqual(fresh.pid, hung.pid);
  assert.match(second.log(), /default#1 failed .*reason="not healthy after 10s \(last check: GET \/health: no answer within/);
  await waitFor(() => !isAlive(hung.pid!), { timeout: 15_000, what: 'the hung app killed' });
  assert.equal(appProcesses(marker).length, 1, describeProcesses(appProcesses(marker)));
  // Before the first daemon's cleanup removes the directory the second one writes its records in.
  assert.deepEqual(await second.stop(), { code: 0, signal: null });
});

test('a rainbowd on the node engine stops the HAProxy a SIGKILLed one left before it binds the port, saying why, and adopts the app', { timeout: 60_000, skip: skipReason('haproxy') }, async (t) => {
  const { daemon: first, marker } = await startAppDaemon(t, { name: 'adopt-engine-change', engine: 'haproxy' });
  const active = await first.waitForActive();
  const haproxy = haproxyProcesses(first.dir);
  first.signal('SIGKILL');
  await first.exited;
  const second = await startDaemon(t, { config: { ...configOf(first), engine: 'node' }, dir: first.dir, proxyPort: first.proxyPort, marker });
  assert.equal((await second.waitForActive()).pid, active.pid);
  assert.match(second.log(), /haproxy-stopped pid=\d+ reason="left serving by a rainbowd that exited without stopping it; this one runs the node engine, which needs the port/);
  assert.ok(haproxy.length > 0 && haproxy.every((info) => !isAlive(info.pid)), describeProcesses(haproxy));
  assert.equal((await request(first.proxyPort, '/')).status, 200);
  assert.equal(existsSync(join(first.dir, 'rainbow.haproxy.json')), false, 'the HAProxy record is removed');
  // Before the first daemon's cleanup removes the directory the second one writes its records in.
  assert.deepEqual(await second.stop(), { code: 0, signal: null });
});

test('an HAProxy that died after its rainbowd was SIGKILLed is started afresh by the next rainbowd, which adopts the app', { timeout: 60_000, skip: skipReason('haproxy') }, async (t) => {
  const { daemon: first, marker } = await startAppDaemon(t, { name: 'adopt-haproxy-gone', engine: 'haproxy' });
  const active = await first.waitForActive();
  const [master] = haproxyMasters(first.dir);
  first.signal('SIGKILL');
  await first.exited;
  process.kill(-master!.pid, 'SIGKILL');
  await waitFor(() => haproxyProcesses(first.dir).length === 0, { timeout: 10_000, what: 'HAProxy gone' });
  const second = await startDaemon(t, { config: configOf(first), engine: 'haproxy', dir: first.dir, proxyPort: first.proxyPort, marker });
  assert.equal((await second.waitForActive()).pid, active.pid);
  assert.match(second.log(), /haproxy-gone reason="the HAProxy a killed rainbowd left no longer runs; starting a new one"/);
  const masters = haproxyMasters(first.dir);
  assert.equal(masters.length, 1, describeProcesses(haproxyProcesses(first.dir)));
  assert.notEqual(masters[0]!.pid, master!.pid);
  assert.equal((await request(first.proxyPort, '/')).status, 200);
  assert.deepEqual(await second.stop(), { code: 0, signal: null });
  assert.ok(!isAlive(masters[0]!.pid), 'the new HAProxy stopped with its daemon');
});
