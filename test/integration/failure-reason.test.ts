// What a git pusher reads when a release does not start: the error the app printed, not the
// last lines of its stack trace. Real Node and Python apps, through a real daemon and CLI.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cli, describeCli } from '../helpers/cli.js';
import { startAppDaemon, startDaemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { findExecutable } from '../helpers/executables.js';
import { shellQuote } from '../helpers/paths.js';

const gunicorn = await findExecutable('gunicorn');

interface Release {
  what: string;
  run: string;
  files: Record<string, string>;
  reason: RegExp;
  skip?: string | false;
}

const releases: Release[] = [
  {
    what: 'a Node ESM app that throws at start',
    run: `${shellQuote(process.execPath)} app.mjs --port "$1"`,
    files: { 'app.mjs': "throw new Error('database URL missing');\n" },
    reason: /exited with code 1 before it was healthy; error: Error: database URL missing$/,
  },
  {
    what: 'a CommonJS app missing a package',
    run: `${shellQuote(process.execPath)} app.cjs --port "$1"`,
    files: { 'app.cjs': "require('express-not-installed');\n" },
    reason: /exited with code 1 before it was healthy; error: Error: Cannot find module 'express-not-installed' \| Require stack: \| - .*app\.cjs$/,
  },
  {
    what: 'a gunicorn app whose module raises at import',
    run: 'gunicorn app:app --bind 127.0.0.1:$1 --workers 1',
    files: { 'app.py': "import os\nDATABASE = os.environ['DATABASE_URL']\n\ndef app(environ, start_response):\n    pass\n" },
    reason: /exited with code \d+ before it was healthy; error: KeyError: 'DATABASE_URL'$/,
    skip: gunicorn ? false : 'needs gunicorn (apt-get install gunicorn; .ci/run does)',
  },
];

for (const release of releases) {
  test(`a refused release of ${release.what} names its error`, { timeout: 60_000, skip: release.skip ?? false }, async (t) => {
    const daemon = await startDaemon(t, { config: { run: release.run, workers: 0 }, files: release.files, waitUntilActive: false });
    const refused = await cli(daemon, ['redeploy']);
    assert.equal(refused.code, 1, describeCli(refused));
    assert.match(refused.stderr.trim(), release.reason, describeCli(refused));
  });
}

test('a redeploy after the app\'s cwd was deleted names the directory, and the running generation keeps serving', { timeout: 60_000 }, async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'rainbowd-cwd-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const { daemon } = await startAppDaemon(t, { name: 'gone-cwd', config: { cwd, workers: 0 } });
  rmSync(cwd, { recursive: true });
  const refused = await cli(daemon, ['redeploy']);
  assert.equal(refused.code, 1, describeCli(refused));
  assert.equal(refused.stderr.trim(), `rainbowd: default#2 cannot start: its "cwd" ${cwd} is not a directory any more`);
  assert.equal((await request(daemon.proxyPort, '/')).headers['x-generation'], '1');
});

test('while a release answers 5xx, rainbowd redeploy off a terminal says every few seconds what it waits for and the last answer', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'progress-5xx', appArgs: '--health "$(cat health.txt)"', files: { 'health.txt': 'ok' }, config: { deployTimeout: '8s' } });
  writeFileSync(join(daemon.dir, 'health.txt'), '500');
  const refused = await cli(daemon, ['redeploy']);
  assert.equal(refused.code, 1, describeCli(refused));
  const lines = refused.stderr.trim().split('\n');
  assert.match(lines[0] ?? '', /^rainbowd: deploying default, [\d.]+s: waiting for default#2 to become healthy \(last check: GET \/health answered 500\)$/, describeCli(refused));
  assert.match(lines.at(-1) ?? '', /^rainbowd: default#2 not healthy after 8\.0s \(last check: GET \/health answered 500\)$/);
});

test('with healthCheck.failAfter, a release that keeps answering 5xx is refused after that many answers, not at deployTimeout', { timeout: 60_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, {
    name: 'fail-after',
    appArgs: '--health "$(cat health.txt)"',
    files: { 'health.txt': 'ok' },
    config: { deployTimeout: '60s', healthCheck: { interval: '100ms', failAfter: 3 } },
  });
  writeFileSync(join(daemon.dir, 'health.txt'), '500');
  const refused = await cli(daemon, ['redeploy']);
  assert.equal(refused.code, 1, describeCli(refused));
  assert.equal(refused.stderr.trim(), 'rainbowd: default#2 GET /health answered 500 3 times in a row (healthCheck.failAfter 3)');
  assert.equal((await request(daemon.proxyPort, '/')).headers['x-generation'], '1');
});
