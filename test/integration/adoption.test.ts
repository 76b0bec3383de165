import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAppDaemon, startDaemon, type Daemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { describeLoad, startLoad } from '../helpers/load.js';
import { appProcesses, describeProcesses, isAlive } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

// A rainbowd that dies without stopping its apps (SIGKILL, the OOM killer) leaves them
// serving; the next one started on the same config adopts the active generation.

function configOf(daemon: Daemon): Record<string, unknown> {
  return JSON.parse(readFileSync(join(daemon.dir, 'rainbow.conf.json'), 'utf8')) as Record<string, unknown>;
}

test('a rainbowd started on the config of a SIGKILLed one adopts its active generation under load: same app pid, served again once it listens, draining generations stopped, numbering goes on', { timeout: 120_000 }, async (t) => {
  const { daemon: first, marker } = await startAppDaemon(t, { name: 'adopt' });
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
  first.signal('SIGKILL');
  await first.exited;
  assert.ok(isAlive(active.pid!), 'the app outlives a SIGKILLed rainbowd');

  const second = await startDaemon(t, { config: configOf(first), dir: first.dir, proxyPort: first.proxyPort, marker });
  const listening = load.snapshot();
  await waitFor(() => load.snapshot().total >= listening.total + 200, { timeout: 20_000, what: '200 more responses from the new rainbowd' });
  const result = await load.stop();

  const adopted = await second.waitForActive();
  assert.deepEqual({ id: adopted.id, pid: adopted.pid, port: adopted.port }, { id: 2, pid: active.pid, port: active.port }, 'the active generation is adopted, not restarted');
  assert.match(second.log(), / default#2 adopting port=\d+ pid=\d+ /);
  assert.equal(result.errorCount, listening.errorCount, `no failed request once the new rainbowd listens:\n${describeLoad(result)}`);
  assert.deepEqual(Object.keys(result.byStatus), ['200'], `requests are either refused while no rainbowd listens, or answered 200:\n${describeLoad(result)}`);
  for (const error of Object.keys(result.errors)) assert.match(error, /ECONNREFUSED|ECONNRESET|socket hang up/, describeLoad(result));

  await waitFor(() => drainingPids.every((pid) => !isAlive(pid)), { timeout: 15_000, what: 'the draining generation stopped' });
  assert.match(second.log(), new RegExp(`default orphan-stopping pid=\\d+ reason="generation 1 of rainbowd pid ${first.pid}`));
  assert.deepEqual(appProcesses(marker).map((info) => info.pid), [active.pid], 'exactly one app process');
  assert.deepEqual(readdirSync(tmpdir()).filter((entry) => entry.startsWith(`rainbowd-${first.pid}-`)), [], "the killed rainbowd's runtime directory is removed");
  await slow;

  const redeployed = await second.redeploy();
  assert.equal(redeployed.status, 200, JSON.stringify(redeployed.body));
  assert.equal(redeployed.body.generation, 3, 'numbering goes on after the adopted generation');
  await waitFor(() => !isAlive(active.pid!), { timeout: 15_000, what: 'the adopted app stopped after the redeploy' });
  assert.deepEqual(await second.stop(), { code: 0, signal: null });
  assert.equal(existsSync(join(first.dir, 'rainbow.generations.json')), false, 'a rainbowd that exits cleanly leaves no generation record');
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
});
