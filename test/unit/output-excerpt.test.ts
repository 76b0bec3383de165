import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { describeOutput } from '../../lib/output-excerpt.js';

// What real programs print when they fail at start, captured live rather than pasted, so a
// new Node or Python version that words its crash differently shows up here.
function outputOf(t: { after: (fn: () => void) => void }, program: string, files: Record<string, string>, args: string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-excerpt-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const result = spawnSync(program, args, { cwd: dir, encoding: 'utf8' });
  assert.notEqual(result.status, 0, `${program} ${args.join(' ')} did not fail`);
  return `${result.stdout}${result.stderr}`.split('\n');
}

test('a Node ESM app that throws at start is described by its Error line, not its stack frames', (t) => {
  const lines = outputOf(t, process.execPath, { 'app.mjs': "throw new Error('database URL missing');\n" }, ['app.mjs']);
  assert.equal(describeOutput(lines), 'error: Error: database URL missing');
});

test('a CommonJS app missing a module is described by the module and who required it', (t) => {
  const lines = outputOf(t, process.execPath, { 'app.cjs': "require('no-such-package');\n" }, ['app.cjs']);
  assert.match(describeOutput(lines), /^error: Error: Cannot find module 'no-such-package' \| Require stack: \| - \/.*app\.cjs$/);
});

test('an ESM import of a missing file names the file, with Node\'s error code', (t) => {
  const lines = outputOf(t, process.execPath, { 'app.mjs': "import './missing.mjs';\n" }, ['app.mjs']);
  assert.match(describeOutput(lines), /^error: Error \[ERR_MODULE_NOT_FOUND\]: Cannot find module '.*missing\.mjs' imported from /);
});

test('a Python traceback is described by its exception line, not by what a server logs after it', (t) => {
  const program = "import os\nprint('[2026-11-30 12:00:00 +0000] [1] [INFO] Booting worker', flush=True)\nos.environ['DATABASE_URL']\n";
  const lines = outputOf(t, 'python3', { 'app.py': program }, ['app.py']);
  // What gunicorn prints after a worker's traceback.
  lines.push('[2026-11-30 12:00:00 +0000] [1] [INFO] Worker exiting (pid: 1)', '[2026-11-30 12:00:00 +0000] [1] [INFO] Reason: Worker failed to boot.');
  assert.equal(describeOutput(lines), "error: KeyError: 'DATABASE_URL'");
});

test('output without an error line is quoted by its last lines; no output says so', () => {
  assert.equal(describeOutput(['listening', 'shutting down', 'bye']), 'last output: listening | shutting down | bye');
  assert.equal(describeOutput([]), 'it printed nothing');
});
