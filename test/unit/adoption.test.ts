import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, test } from 'node:test';
import { findLeftovers } from '../../lib/adoption.js';
import { generationRecordFile } from '../../lib/generation-record.js';
import { groupMembers, waitFor } from '../../lib/process-group.js';

// Real processes with the environment rainbowd gives its apps, left by a rainbowd that is
// gone, and a generation record written by that rainbowd or by one that still runs.

const dir = mkdtempSync(join(tmpdir(), 'rainbowd-adoption-test-'));
const CONFIG = join(dir, 'rainbow.conf.json');
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    await once(child, 'exit');
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function deadPid(): Promise<number> {
  const child = spawn('true');
  await once(child, 'exit');
  return child.pid!;
}

/** A detached app of generation `generation` launched by `launcher`, as rainbowd starts them. */
function app(generation: number, launcher: number): { groupId: number; marker: string } {
  const marker = `${launcher}/web#${generation}/test`;
  const env = { ...process.env, RAINBOWD_CONFIG: CONFIG, RAINBOWD_DAEMON_PID: String(launcher), RAINBOWD_SERVICE: 'web', RAINBOWD_GENERATION: String(generation), RAINBOWD_GENERATION_MARKER: marker };
  const child = spawn('sh', ['-c', 'sleep 30 & wait'], { detached: true, stdio: 'ignore', env });
  children.push(child);
  return { groupId: child.pid!, marker };
}

/** Each app's shell has forked its sleep: all its processes can be found. */
async function forked(...apps: Array<{ groupId: number }>): Promise<void> {
  assert.ok(await waitFor(() => apps.every(({ groupId }) => groupMembers(groupId).length === 2), 5000), 'the apps started');
}

function record(owner: number, generations: Array<{ generation: number; active: boolean; groupId: number; marker: string }>): void {
  const entries = generations.map((entry) => ({ service: 'web', port: 1, pidfile: join(dir, 'none.pid'), ...entry }));
  writeFileSync(generationRecordFile(CONFIG), JSON.stringify({ daemonPid: owner, generations: entries }));
}

test("the active generation named in a dead rainbowd's record is adoptable; a draining one is to stop; numbering goes on after both", async () => {
  const launcher = await deadPid();
  const active = app(4, launcher);
  const draining = app(5, launcher);
  record(await deadPid(), [{ generation: 4, active: true, ...active }, { generation: 5, active: false, ...draining }]);
  await forked(active, draining);
  const leftovers = findLeftovers(CONFIG, () => true, dir);
  assert.deepEqual(leftovers.adoptable.map(({ generation, app: { groupId } }) => ({ generation, groupId })), [{ generation: 4, groupId: active.groupId }]);
  assert.deepEqual(leftovers.toStop.map((orphan) => orphan.groupId), [draining.groupId]);
  assert.deepEqual([...leftovers.lastGenerations], [['web', 5]]);
  assert.deepEqual(findLeftovers(CONFIG, () => false, dir).adoptable, [], 'a service that no longer launches apps adopts nothing');
});

test('apps a running rainbowd adopted are left alone, though the rainbowd that launched them is dead', async () => {
  const adopted = app(7, await deadPid());
  record(process.ppid, [{ generation: 7, active: true, ...adopted }]);
  await forked(adopted);
  const leftovers = findLeftovers(CONFIG, () => true, dir);
  assert.deepEqual({ adoptable: leftovers.adoptable.length, toStop: leftovers.toStop.length }, { adoptable: 0, toStop: 0 });
});
