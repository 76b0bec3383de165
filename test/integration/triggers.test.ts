import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { startAppDaemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { daemonBin } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const cli = (args: string[], cwd: string) =>
  promisify(execFile)(process.execPath, [daemonBin, ...args], { cwd, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );

test('POST /redeploy?wait=0 answers 202 at once and the deploy still happens', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'wait0', appArgs: '--start-delay 1000' });
  const answer = await daemon.redeploy({ wait: false });
  assert.equal(answer.status, 202);
  assert.ok(answer.elapsedMs < 900, `answered after ${answer.elapsedMs} ms, before the app could start`);
  const active = await daemon.waitForActive({ after: 1 });
  assert.equal(active.id, 2);
});

test('triggers during a deploy coalesce into exactly one follow-up deploy', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'coalesce', appArgs: '--start-delay 800' });
  const answers = await Promise.all([daemon.redeploy(), daemon.redeploy(), daemon.redeploy(), daemon.redeploy()]);
  const generations = answers.map((answer) => answer.body.generation);
  assert.deepEqual(answers.map((answer) => answer.status), [200, 200, 200, 200]);
  // The first trigger deploys #2; the three that arrived during it share one follow-up, #3.
  assert.deepEqual(generations, [2, 3, 3, 3]);
  assert.equal((await daemon.service()).activeGeneration, 3);
  assert.match(daemon.log(), /default queued .*a deploy is under way/);
});

test('rainbowd redeploy and rainbowd status talk to the daemon found from the config', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'cli' });
  const deployed = await cli(['redeploy'], daemon.dir);
  assert.equal(deployed.code, 0, deployed.stderr);
  assert.match(deployed.stdout, /^deployed default#2 on port \d+ \(healthy after [\d.]+m?s; #1 drained by [\d.]+m?s and stopped\)\n$/);

  const table = await cli(['status'], daemon.dir);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /SERVICE\s+GEN\s+STATE\s+PORT\s+PID\s+IN-FLIGHT\s+AGE\s+RESTARTS/);
  assert.match(table.stdout, /default\s+#2\s+active\s+\d+\s+\d+\s+0\s+\S+\s+0/);

  const json = await cli(['status', '--json', '--control-port', String(daemon.controlPort)], '/');
  assert.equal(JSON.parse(json.stdout).services[0].activeGeneration, 2);
});

test('the CLI finds the rainbowd that runs, even after its config on disk changed ports or became invalid', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'cli-record' });
  const configFile = join(daemon.dir, 'rainbow.conf.json');
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  // A port change needs a restart: until then the daemon listens where it did.
  writeFileSync(configFile, JSON.stringify({ ...config, port: daemon.proxyPort + 2, controlPort: daemon.proxyPort + 3 }));
  await daemon.waitForLog(/reload-ignored key=controlPort/);
  const status = await cli(['status'], daemon.dir);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`pid ${daemon.pid},`));

  writeFileSync(configFile, '{"run": ');
  await daemon.waitForLog(/reload-failed/);
  const deployed = await cli(['redeploy'], daemon.dir);
  assert.equal(deployed.code, 0, deployed.stderr);
  assert.match(deployed.stdout, /^deployed default#2 /);

  // Gone with the daemon: a client must not find a rainbowd that no longer runs.
  await daemon.stop();
  assert.equal(existsSync(join(daemon.dir, 'rainbow.daemon.json')), false);
});

test('rainbowd redeploy of a broken release exits 1 with the reason; the old generation keeps serving', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'cli-broken', appArgs: '--health "$(cat health.txt)"', files: { 'health.txt': 'ok' } });
  writeFileSync(join(daemon.dir, 'health.txt'), 'exit');
  const refused = await cli(['redeploy'], daemon.dir);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^rainbowd: default#2 exited with code 1 before it was healthy; last output: .*refusing to start/);
  assert.equal(refused.stderr.trim().split('\n').length, 1);
  assert.equal((await request(daemon.proxyPort, '/')).headers['x-generation'], '1');
});

test('rainbowd redeploy without a daemon says where it looked, exit 1', async () => {
  const answer = await cli(['redeploy', '--control-port', '1'], '/');
  assert.equal(answer.code, 1);
  assert.equal(answer.stderr, 'rainbowd: no rainbowd at 127.0.0.1:1 (nothing is listening there); is it running? Pass --control-port or run this where its config is\n');
});

test('a redeploy of an unknown service is a 404, of a malformed path a 400, each with the reason', { timeout: 30_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'unknown' });
  const answer = await request(daemon.controlPort, '/services/nope/redeploy?wait=0', { method: 'POST' });
  assert.equal(answer.status, 404);
  assert.deepEqual(JSON.parse(answer.body), { ok: false, error: { code: 'SERVICE_NOT_FOUND', message: 'no service named "nope"' } });
  const malformed = await request(daemon.controlPort, '/services/%zz/redeploy', { method: 'POST' });
  assert.equal(malformed.status, 400);
  assert.deepEqual(JSON.parse(malformed.body), { ok: false, error: { code: 'BAD_REQUEST', message: 'the request target "/services/%zz/redeploy" is not a valid URL: URI malformed' } });
  assert.equal((await daemon.service()).activeGeneration, 1, 'nothing was deployed');
});

test('a change to a watched file triggers one debounced redeploy', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'watch', config: { watch: ['release.txt'] }, files: { 'release.txt': 'v1' } });
  await daemon.waitForLog(/default watching paths=\S*release\.txt/);
  for (let i = 2; i <= 5; i++) writeFileSync(join(daemon.dir, 'release.txt'), `v${i}`);
  const active = await daemon.waitForActive({ after: 1 });
  assert.equal(active.id, 2);
  // Well past the debounce: a second deploy would have begun by now.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal((await daemon.service()).activeGeneration, 2, 'four quick writes make one deploy');
  assert.match(daemon.log(), /default#2 deploy reason="changed: .*release\.txt"/);
});

test('a port taken between choice and bind is retried on another port', { timeout: 60_000 }, async (t) => {
  // The first launch of generation 2 binds a port that is already taken (the proxy's own),
  // as if another process had grabbed rainbowd's choice; the retry gets the real one.
  const { daemon } = await startAppDaemon(t, {
    name: 'port-retry',
    appArgs: '$( [ "$RAINBOWD_GENERATION" = 2 ] && [ ! -e taken.done ] && touch taken.done && echo "--port $(cat proxy-port.txt)" )',
  });
  writeFileSync(join(daemon.dir, 'proxy-port.txt'), String(daemon.proxyPort));
  const answer = await daemon.redeploy();
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.generation, 2);
  assert.match(daemon.log(), /default#2 retrying .*port \d+ was taken before the app could bind it/);
  assert.equal((await request(daemon.proxyPort, '/')).headers['x-generation'], '2');
});

test('past maxGenerations the oldest draining generation is stopped at once, and the log says so', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'max-gen', config: { maxGenerations: 2, drainTimeout: '30s' } });
  // Hold a request on generation 1 so that it stays draining.
  const held = request(daemon.proxyPort, '/slow?ms=20000', { timeout: 25_000 }).catch((error: Error) => error);
  await daemon.waitForInFlight();
  const second = daemon.redeploy({ wait: false });
  await waitFor(async () => (await daemon.service()).generations.some((g) => g.id === 1 && g.state === 'draining'), { timeout: 10_000, what: '#1 draining' });
  await second;
  const third = await daemon.redeploy();
  assert.equal(third.status, 200);
  await daemon.waitForLog(/default#1 limit|default limit .*default#1 is stopped without waiting/);
  await waitFor(async () => !(await daemon.service()).generations.some((g) => g.id === 1), { timeout: 10_000, what: '#1 gone' });
  await held;
});
