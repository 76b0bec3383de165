import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, test } from 'node:test';
import { findOrphans, stopOrphan } from '../../lib/orphans.js';
import { waitFor } from '../helpers/wait.js';

// Real processes with the environment rainbowd gives its apps, owned by a rainbowd that is
// gone (a pid that has exited) or still running (our parent).

const CONFIG = `/nonexistent/rainbowd-orphans-test-${process.pid}/rainbow.conf.json`;
const children: ChildProcess[] = [];
after(() => {
  for (const child of children) if (child.pid !== undefined) killGroup(child.pid);
});

function killGroup(groupId: number): void {
  try {
    process.kill(-groupId, 'SIGKILL');
  } catch {
    // already gone
  }
}

async function deadPid(): Promise<number> {
  const child = spawn('true');
  await once(child, 'exit');
  return child.pid!;
}

/** A detached shell running `script`, as rainbowd starts apps, with the owner's environment. */
function app(script: string, env: Record<string, string>): ChildProcess {
  const child = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore', env: { ...process.env, RAINBOWD_SERVICE: 'web', RAINBOWD_GENERATION: '3', ...env } });
  children.push(child);
  return child;
}

/** Until the orphan's shell has forked its `sleep`: its group then has two processes. */
function waitForForkedSleep(): Promise<unknown> {
  return waitFor(() => findOrphans(CONFIG).some((orphan) => orphan.pids.length === 2), { timeout: 10_000, interval: 10, what: "the orphan's shell and its sleep" });
}

test('finds the apps of a dead rainbowd on the same config, and only those', async () => {
  const dead = String(await deadPid());
  const orphan = app('sleep 30 & wait', { RAINBOWD_CONFIG: CONFIG, RAINBOWD_DAEMON_PID: dead });
  app('sleep 30', { RAINBOWD_CONFIG: CONFIG, RAINBOWD_DAEMON_PID: String(process.ppid) });
  app('sleep 30', { RAINBOWD_CONFIG: `${CONFIG}.other`, RAINBOWD_DAEMON_PID: dead });
  await waitForForkedSleep();

  const found = findOrphans(CONFIG);
  assert.equal(found.length, 1, JSON.stringify(found));
  assert.deepEqual({ ...found[0], pids: found[0]!.pids.length }, { service: 'web', generation: '3', groupId: orphan.pid, pids: 2, daemonPid: Number(dead), configFile: CONFIG, marker: null });

  assert.equal(await stopOrphan(found[0]!, 5000), 'SIGTERM');
  assert.deepEqual(findOrphans(CONFIG), []);
});

test('an orphan that ignores SIGTERM is SIGKILLed after the timeout', async () => {
  const dead = String(await deadPid());
  app('trap "" TERM; sleep 30 & wait', { RAINBOWD_CONFIG: CONFIG, RAINBOWD_DAEMON_PID: dead });
  await waitForForkedSleep();
  const [orphan] = findOrphans(CONFIG);
  assert.ok(orphan);
  const started = Date.now();
  assert.equal(await stopOrphan(orphan, 300), 'SIGKILL');
  assert.ok(Date.now() - started >= 300, 'SIGKILL came before the timeout');
  assert.deepEqual(findOrphans(CONFIG), []);
});
