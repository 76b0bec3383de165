// The README's install line, as a new user runs it from a fresh clone: the package npm packs
// installs globally (here under a private prefix) with no compiler and no install script.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { repoRoot } from '../helpers/paths.js';

const run = promisify(execFile);

test('the packed rainbowd installs globally without install scripts and runs', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rainbowd-install-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const packed = await run('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: repoRoot });
  const tarball = path.join(dir, packed.stdout.trim().split('\n').at(-1)!);

  const prefix = path.join(dir, 'prefix');
  const installed = await run('npm', ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', tarball], { cwd: dir });
  const installOutput = `${installed.stdout}${installed.stderr}`;
  // npm 11 warns about every install script a global install would run: a user's first sight.
  assert.doesNotMatch(installOutput, /install-scripts|allowScripts|tsc: not found/, installOutput);

  const bin = path.join(prefix, 'bin', 'rainbowd');
  const version = await run(bin, ['--version']);
  assert.match(version.stdout, /^\d+\.\d+\.\d+/);
  const help = await run(bin, ['help']);
  assert.match(help.stdout, /Usage: rainbowd/);
});
