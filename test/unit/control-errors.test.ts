import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import getPort from 'get-port';
import { ControlServer, type ControlTarget } from '../../lib/control.js';
import { RainbowError } from '../../lib/errors.js';
import { request } from '../helpers/http.js';

// The control API's errors come from the catalogue: each answer names what happened with
// its own code, on a real listener, in-process.

async function controlServer(t: TestContext, target: Partial<ControlTarget>): Promise<number> {
  const port = await getPort({ host: '127.0.0.1' });
  const server = new ControlServer(target as ControlTarget, { host: '127.0.0.1', port, token: null });
  await server.listen();
  t.after(() => server.close());
  return port;
}

test('an endpoint the control API does not have is a 404 NOT_FOUND naming it', async (t) => {
  const port = await controlServer(t, {});
  const answer = await request(port, '/services/web/explode', { method: 'POST' });
  assert.equal(answer.status, 404);
  assert.deepEqual(JSON.parse(answer.body), { ok: false, error: { code: 'NOT_FOUND', message: 'no such endpoint: POST /services/web/explode' } });
});

test('a bug in rainbowd is a 500 INTERNAL saying so, not a failed deploy', async (t) => {
  const port = await controlServer(t, {
    redeploy: () => Promise.reject(new TypeError("Cannot read properties of undefined (reading 'id')")),
  });
  const answer = await request(port, '/redeploy', { method: 'POST' });
  assert.equal(answer.status, 500);
  assert.deepEqual(JSON.parse(answer.body), { ok: false, error: { code: 'INTERNAL', message: "internal error: Cannot read properties of undefined (reading 'id')" } });
});

test('a refused deploy keeps its own code and status', async (t) => {
  const port = await controlServer(t, { redeploy: () => Promise.reject(new RainbowError('DEPLOY_FAILED', 'default#2 not healthy after 1.0s')) });
  const answer = await request(port, '/redeploy', { method: 'POST' });
  assert.equal(answer.status, 500);
  assert.deepEqual(JSON.parse(answer.body), { ok: false, error: { code: 'DEPLOY_FAILED', message: 'default#2 not healthy after 1.0s' } });
});

test('the CLI exits 2 on a 404 NOT_FOUND, as on a bad request, and 1 on an internal error', () => {
  assert.equal(new RainbowError('NOT_FOUND', 'x').exitCode, new RainbowError('BAD_REQUEST', 'x').exitCode);
  assert.equal(new RainbowError('NOT_FOUND', 'x').exitCode, 2);
  assert.equal(new RainbowError('INTERNAL', 'x').exitCode, 1);
  assert.equal(new RainbowError('LISTEN_FAILED', 'x').exitCode, new RainbowError('PORT_IN_USE', 'x').exitCode);
});
