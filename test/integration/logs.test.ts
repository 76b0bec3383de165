import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startAppDaemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';

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
