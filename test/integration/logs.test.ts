import assert from 'node:assert/strict';
import { test } from 'node:test';
import getPort from 'get-port';
import { cli, describeCli } from '../helpers/cli.js';
import { startAppDaemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { appProcesses, uniqueMarker } from '../helpers/process.js';
import { startTarget } from '../helpers/target.js';

test('--log-format json (logFormat in the config) gives one JSON object per line', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'json-logs', config: { logFormat: 'json' } });
  await daemon.redeploy();
  const events = daemon.output.filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
  const stopped = events.find((event) => event.event === 'stopped' && event.generation === 1);
  assert.ok(stopped, 'generation 1 stopped');
  assert.equal(stopped.service, 'default');
  assert.equal(typeof stopped.port, 'number');
  assert.equal(typeof stopped.pid, 'number');
  assert.match(String(stopped.reason), /SIGTERM to pid \d+ \(from pidfile\)/);
  assert.ok(events.some((event) => event.event === 'output' && event.generation === 2), 'app output is wrapped too');
});

test('each lifecycle event is one text line with time, service#generation, port, pid and reason', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'text-logs' });
  await daemon.redeploy();
  for (const event of ['starting', 'healthy', 'active']) {
    assert.ok(daemon.output.some((line) => new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z default#2 ${event} port=\\d+ pid=\\d+`).test(line)), `${event} line`);
  }
  assert.ok(daemon.output.some((line) => /^\S+Z default#1 stopping port=\d+ pid=\d+ reason="replaced by default#2"$/.test(line)));
  assert.ok(daemon.output.some((line) => /^\[default#2\] /.test(line)), 'app output is prefixed');
});

test('a log nobody reads any more (its pipe closed) does not take rainbowd down: it deploys and serves on', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'closed-log' });
  daemon.child.stdout?.destroy(); // as when `rainbowd | tee log` loses its tee, or the terminal is gone
  const answer = await daemon.redeploy();
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.generation, 2);
  assert.equal((await request(daemon.proxyPort, '/')).status, 200);
  assert.equal(daemon.exit, undefined, 'rainbowd is still running');
  assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
});

test('mode changes are logged as a person says them: paused, resumed, stopped, started', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'mode-logs' });
  for (const action of ['pause', 'resume', 'stop', 'start']) {
    const result = await cli(daemon, [action, 'default']);
    assert.equal(result.code, 0, describeCli(result));
  }
  const events = daemon.output.map((line) => /^\S+Z default (\S+) /.exec(line)?.[1]).filter((event) => event !== undefined);
  assert.deepEqual(events, ['paused', 'resumed', 'stopped', 'started']);
});

test('a service removed and declared again goes on numbering its generations, so default#1 names one generation', { timeout: 60_000 }, async (t) => {
  const first = await startTarget(t, { service: 'ext', label: 'one', marker: uniqueMarker('numbering') });
  const { daemon } = await startAppDaemon(t, { name: 'numbering' });
  const deploy = () => cli(daemon, ['deploy', 'ext', '--target', first.address, '--host', 'ext.test', '--health-check-path', '/health']);
  assert.match((await deploy()).stdout, /^deployed ext /);
  assert.equal((await daemon.service('ext')).activeGeneration, 1);
  assert.equal((await cli(daemon, ['remove', 'ext'])).code, 0);
  assert.match((await deploy()).stdout, /^deployed ext /);
  assert.equal((await daemon.service('ext')).activeGeneration, 2);
  // An external target is someone else's process: at shutdown it is left running, and said so.
  await daemon.stop();
  assert.ok(
    daemon.output.some((line) => /^\S+Z ext#2 stopped .*reason="external target: no longer routed to, left running"$/.test(line)),
    daemon.log(),
  );
});

test('a refused deploy of a new service schedules no restart: the caller was told, nothing is retried', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'refused-deploy' });
  const closed = await getPort({ host: '127.0.0.1' });
  const refused = await cli(daemon, ['deploy', 'ext', '--target', `127.0.0.1:${closed}`, '--host', 'ext.test', '--deploy-timeout', '300ms']);
  assert.equal(refused.code, 1, describeCli(refused));
  await daemon.waitForLog(/ext#1 failed/);
  assert.deepEqual(daemon.output.filter((line) => /ext restart-scheduled/.test(line)), []);
});

test('the pid shown for an app without a pidfile is the app, not the sh -c around it', { timeout: 60_000 }, async (t) => {
  const { daemon, marker } = await startAppDaemon(t, { name: 'no-pidfile', pidfile: false });
  const [app] = appProcesses(marker);
  assert.ok(app, 'the app is running');
  assert.equal((await daemon.waitForActive()).pid, app.pid);
});
