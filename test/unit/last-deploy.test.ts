import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import getPort from 'get-port';
import type { DaemonStatus } from '../../lib/api.js';
import { ControlServer, type ControlTarget } from '../../lib/control.js';
import type { Service } from '../../lib/service.js';
import { describeCli, runCli } from '../helpers/cli.js';
import { broken, codeOf, redeployWhileHeld, settled, startService } from '../helpers/service.js';

// What status says of a service's last deploy is what that deploy answered: deployed, failed,
// or rolled back. A Service in this process; `rainbowd status` and `list` read it through the
// real control API.

/** The control API in front of one in-process service: what `status` and `list` read. */
async function controlOf(t: TestContext, service: Service): Promise<number> {
  const port = await getPort({ host: '127.0.0.1' });
  const status = async (): Promise<DaemonStatus> => ({
    pid: process.pid,
    version: 'test',
    uptimeMs: 0,
    config: null,
    proxy: { host: '127.0.0.1', port: 0, workers: 0 },
    control: { host: '127.0.0.1', port, socket: null, token: false },
    services: [service.status()],
  });
  const server = new ControlServer({ status } as ControlTarget, { host: '127.0.0.1', port, token: null });
  await server.listen();
  t.after(() => server.close());
  return port;
}

test('after a redeploy that a rollback undid, status shows its last deploy as rolled back, not ok, and rainbowd status and list say so', { timeout: 30_000 }, async (t) => {
  const setup = await startService(t);
  const { service } = setup;
  // A request held by #1 keeps it draining, so the rollback can take it back.
  const { held, deploy: redeploy } = await redeployWhileHeld(setup, 'release 2');
  await service.rollback();
  const answer = await redeploy;
  assert.equal(!answer.ok && codeOf(answer.error), 'ROLLED_BACK');
  const undone = 'deployed default#2, but a rollback then took default#1 back into service before it had drained; default#1 serves';
  assert.equal(!answer.ok && (answer.error as Error).message, undone);
  await held.abandon();

  const { lastDeploy } = service.status();
  assert.deepEqual({ ...lastDeploy, at: undefined }, { at: undefined, ok: false, outcome: 'rolled-back', generation: 2, message: undone });
  const port = await controlOf(t, service);
  for (const command of ['status', 'list']) {
    const shown = await runCli([command, '--control-port', String(port)], { timeout: 20_000 });
    assert.equal(shown.code, 0, describeCli(shown));
    assert.ok(shown.stdout.includes(`\ndefault: last deploy was rolled back: ${undone}\n`), `rainbowd ${command} does not say so: ${describeCli(shown)}`);
  }
});

test('status shows a deployed release as deployed and a refused one as failed, with the reason', { timeout: 30_000 }, async (t) => {
  const { service } = await startService(t);
  assert.deepEqual({ ...service.status().lastDeploy, at: undefined }, { at: undefined, ok: true, outcome: 'deployed', generation: 1, message: 'initial deploy' });
  const release = service.config;
  service.reconfigure(broken(release));
  const refused = await settled(service.redeploy('broken release'));
  assert.equal(!refused.ok && codeOf(refused.error), 'DEPLOY_FAILED');

  const { lastDeploy } = service.status();
  assert.equal(lastDeploy?.outcome, 'failed');
  assert.equal(lastDeploy?.ok, false);
  assert.equal(lastDeploy?.generation, 2);
  assert.match(lastDeploy?.message ?? '', /^default#2 exited with code 1 before it was healthy; last output: app: refusing to start \(--health exit\)$/);
  const shown = await runCli(['status', '--control-port', String(await controlOf(t, service))], { timeout: 20_000 });
  assert.ok(shown.stdout.includes(`\ndefault: last deploy failed: ${lastDeploy?.message}\n`), describeCli(shown));
});
