// examples/git-hooks/post-receive, as the README sets it up: a bare repository whose hook
// checks each push to main out into the app's directory and redeploys it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { startAppDaemon } from '../helpers/daemon.js';
import { findExecutable } from '../helpers/executables.js';
import { daemonBin, repoRoot } from '../helpers/paths.js';

const run = promisify(execFile);
const hook = join(repoRoot, 'examples', 'git-hooks', 'post-receive');
const identity = { GIT_AUTHOR_NAME: 'test', GIT_AUTHOR_EMAIL: 'test@example.com', GIT_COMMITTER_NAME: 'test', GIT_COMMITTER_EMAIL: 'test@example.com' };

interface Repositories {
  work: string;
  bare: string;
  env: NodeJS.ProcessEnv;
}

// The programs the hook and git need, and nothing else: a rainbowd installed on this machine
// must not be found when the test says there is none.
const hookTools = ['bash', 'sh', 'env', 'git', 'sed', 'cat', 'mkdir', 'curl'];

// A working repository to push from and a bare one with the hook, deploying into `appDir`.
// `withCli`: the hook's PATH has a `rainbowd` (as after `npm install -g`), or only the tools.
async function repositories(t: TestContext, appDir: string, { withCli }: { withCli: boolean }): Promise<Repositories> {
  const root = mkdtempSync(join(tmpdir(), 'rainbowd-hook-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const bin = join(root, 'bin');
  mkdirSync(bin);
  if (withCli) symlinkSync(daemonBin, join(bin, 'rainbowd'));
  symlinkSync(process.execPath, join(bin, 'node'));
  for (const tool of hookTools) {
    const found = await findExecutable(tool);
    assert.ok(found, `${tool} is not installed`);
    symlinkSync(found, join(bin, tool));
  }
  const env: NodeJS.ProcessEnv = { ...identity, PATH: bin, HOME: root };
  const work = join(root, 'work');
  const bare = join(root, 'app.git');
  await run('git', ['init', '--quiet', '--initial-branch=main', work], { env });
  await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare], { env });
  copyFileSync(hook, join(bare, 'hooks', 'post-receive'));
  chmodSync(join(bare, 'hooks', 'post-receive'), 0o755);
  await run('git', ['--git-dir', bare, 'config', 'deploy.appdir', appDir], { env });
  return { work, bare, env };
}

async function commitAndPush({ work, env }: Repositories, files: Record<string, string>): Promise<{ code: number; output: string }> {
  for (const [name, content] of Object.entries(files)) writeFileSync(join(work, name), content);
  await run('git', ['-C', work, 'add', '--all'], { env });
  await run('git', ['-C', work, 'commit', '--quiet', '--message', 'release'], { env });
  try {
    const pushed = await run('git', ['-C', work, 'push', '--quiet', '../app.git', 'main'], { env, timeout: 60_000 });
    return { code: 0, output: `${pushed.stdout}${pushed.stderr}` };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, output: `${failed.stdout}${failed.stderr}` };
  }
}

test('a push to main checks the release out, redeploys it, and leaves the bare repository on its branch', { timeout: 90_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'hook' });
  const repos = await repositories(t, daemon.dir, { withCli: true });

  const first = await commitAndPush(repos, { 'release.txt': 'one\n', 'removed-later.txt': 'x\n' });
  assert.equal(first.code, 0, first.output);
  assert.match(first.output, /is live/);
  assert.equal((await daemon.service()).activeGeneration, 2);

  await run('git', ['-C', repos.work, 'rm', '--quiet', 'removed-later.txt'], { env: repos.env });
  const second = await commitAndPush(repos, { 'release.txt': 'two\n' });
  assert.equal(second.code, 0, second.output);
  assert.equal((await daemon.service()).activeGeneration, 3);
  assert.equal(readFileSync(join(daemon.dir, 'release.txt'), 'utf8'), 'two\n');
  assert.throws(() => readFileSync(join(daemon.dir, 'removed-later.txt')), /ENOENT/, 'a file the release deleted is still in the app directory');
  // The daemon's config is not in the repository: the checkout must leave it alone.
  assert.ok(readFileSync(join(daemon.dir, 'rainbow.conf.json'), 'utf8').length > 0);

  // `git checkout <sha>` in the bare repository would have detached its HEAD.
  const head = await run('git', ['--git-dir', repos.bare, 'symbolic-ref', 'HEAD'], { env: repos.env });
  assert.equal(head.stdout.trim(), 'refs/heads/main');
});

test('without the rainbowd CLI on its PATH, the hook redeploys the rainbowd running in its app directory, found from its record', { timeout: 90_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'hook-curl' });
  const repos = await repositories(t, daemon.dir, { withCli: false });
  const pushed = await commitAndPush(repos, { 'release.txt': 'one\n' });
  assert.equal(pushed.code, 0, pushed.output);
  assert.match(pushed.output, /"generation": 2/);
  assert.equal((await daemon.service()).activeGeneration, 2);
});
