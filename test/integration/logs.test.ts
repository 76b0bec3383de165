import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startAppDaemon } from '../helpers/daemon.js';

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
