import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_QUEUED_LOG_BYTES } from '../../lib/log.js';
import { MAX_LINE_BYTES } from '../../lib/output-lines.js';
import { startAppDaemon } from '../helpers/daemon.js';
import { request } from '../helpers/http.js';
import { memoryOf } from '../helpers/process.js';
import { StopWaiting, waitFor } from '../helpers/wait.js';

const MB = 1024 * 1024;
// Well above what rainbowd needs to pass this much output through, well below what holding
// it would take (a 200 MB line is 200 MB as a string alone, and more while it is built).
const GROWTH_LIMIT = 100 * MB;

test('an app that prints 200 MB without a newline gets its line cut at 64 KB: rainbowd stays up, serves, and its memory does not grow with the line', { timeout: 120_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'long-line' });
  const before = memoryOf(daemon.pid);
  const bytes = 200 * MB;
  const printed = await request(daemon.proxyPort, `/print?bytes=${bytes}&newlines=0`, { timeout: 90_000 });
  assert.equal(printed.status, 200);
  // Memory is watched while the line passes through, so that holding it fails here, not later.
  await waitFor(
    () => {
      assertGrowthBelowLimit(daemon.pid, before.rss);
      return daemon.output.includes(`[default#1] printed ${bytes} bytes`);
    },
    { timeout: 30_000, what: 'the line after the long one in the log' },
  );
  const cut = daemon.output.find((line) => line.startsWith('[default#1] x')) ?? '';
  assert.equal(cut.indexOf('…') - cut.indexOf('x'), MAX_LINE_BYTES, 'the line keeps its first 64 KB');
  assert.match(cut, new RegExp(`x… \\[line cut at 64 KB, ${bytes - MAX_LINE_BYTES} bytes dropped\\]$`));
  assert.equal((await request(daemon.proxyPort, '/')).status, 200);
  assert.equal((await daemon.redeploy()).status, 200);
});

test('a log reader that stops reading costs rainbowd bounded memory: lines are dropped, the proxy serves on, and the count is logged once it reads again', { timeout: 120_000 }, async (t) => {
  const { daemon } = await startAppDaemon(t, { name: 'stalled-log' });
  const before = memoryOf(daemon.pid);
  daemon.child.stdout!.pause(); // as a paused `rainbowd | less`, or a hung journald
  const bytes = 100 * MB;
  const printed = await request(daemon.proxyPort, `/print?bytes=${bytes}`, { timeout: 90_000 });
  assert.equal(printed.status, 200, 'the proxy serves while the log is stalled');
  assert.equal((await request(daemon.proxyPort, '/')).status, 200);
  assert.equal((await daemon.status()).services[0]?.activeGeneration, 1, 'the control API answers');
  assertGrowthBelowLimit(daemon.pid, before.rss);
  daemon.child.stdout!.resume();
  const dropped = await daemon.waitForLog(/^\S+Z rainbowd log-lines-dropped lines=\d+ /, 30_000);
  const lines = Number(/lines=(\d+)/.exec(dropped)?.[1]);
  const printedLines = bytes / 1024;
  // Everything but what fitted in the queue (and the pipe) was dropped, and every line was either written or counted.
  assert.ok(lines > printedLines - MAX_QUEUED_LOG_BYTES / 1024 - 1024, `${lines} lines dropped of ${printedLines}`);
  const written = daemon.output.filter((line) => /^\[default#1\] (x|printed )/.test(line)).length;
  assert.equal(written + lines, printedLines + 1);
});

function assertGrowthBelowLimit(pid: number, rssBefore: number): void {
  const growth = memoryOf(pid).peakRss - rssBefore;
  if (growth >= GROWTH_LIMIT) throw new StopWaiting(`rainbowd's RSS grew by ${Math.round(growth / MB)} MB (peak), more than ${GROWTH_LIMIT / MB} MB`);
}
