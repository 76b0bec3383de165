import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDaemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { appRunLine } from '../helpers/paths.js';
import { uniqueMarker } from '../helpers/process.js';

test('SIGUSR1 to a daemon without a default service is logged and ignored, not a crash that stops every app', { timeout: 30_000 }, async (t) => {
  const marker = uniqueMarker('signals');
  const daemon = await startDaemon(t, {
    marker,
    config: { services: { api: { run: appRunLine(marker), host: 'api.test', healthCheckPath: '/health' } } },
    waitUntilActive: false,
  });
  await daemon.waitForActive({ service: 'api' });
  daemon.signal('SIGUSR1');
  assert.match(await daemon.waitForLog(/signal-ignored/), /SIGUSR1 redeploys the default service: no service named \\?"default\\?"; use rainbowd redeploy NAME/);
  const answer = await request(daemon.proxyPort, '/', { headers: { host: 'api.test' } });
  assert.equal(answer.status, 200, 'api still serves');
  assert.equal(daemon.exit, undefined, 'the daemon still runs');
  assert.doesNotMatch(daemon.log(), /crashed/);
});
