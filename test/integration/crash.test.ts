import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startAppDaemon, writeFile } from '../helpers/daemon.js';
import { header, request } from '../helpers/http.js';
import { appProcesses, describeProcesses } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

test('an app killed with SIGKILL is restarted as a new generation, and clients get a quick 503 meanwhile', { timeout: 60_000 }, async (t) => {
  // The restarted app waits start-delay.txt ms before listening: a gap the test can see.
  const { daemon, marker } = await startAppDaemon(t, {
    name: 'crash',
    appArgs: '--start-delay "$(cat start-delay.txt)"',
    files: { 'start-delay.txt': '0' },
  });
  const crashed = await daemon.waitForActive();
  const apps = appProcesses(marker);
  assert.equal(apps.length, 1, describeProcesses(apps));
  writeFile(daemon, 'start-delay.txt', '1500');

  process.kill(apps[0]!.pid, 'SIGKILL');
  const killed = Date.now();

  // Request continuously until the restarted generation answers; each request is bounded.
  const answers: { status: number; generation: string | undefined; elapsedMs: number }[] = [];
  const errors: string[] = [];
  while (Date.now() - killed < 20_000) {
    try {
      const response = await request(daemon.proxyPort, '/', { timeout: 3000 });
      answers.push({ status: response.status, generation: header(response, 'x-generation'), elapsedMs: response.elapsedMs });
      if (response.status === 200 && Number(header(response, 'x-generation')) > crashed.id) break;
    } catch (error) {
      errors.push((error as Error).message);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const summary = `errors: ${JSON.stringify(errors)}; answers in order: ${runs(answers.map((answer) => `${answer.status} from #${answer.generation ?? '-'}`))}; slowest: ${Math.max(...answers.map((answer) => answer.elapsedMs))} ms`;

  assert.deepEqual(errors, [], `requests failed without an HTTP answer during the restart: ${summary}`);
  const last = answers.at(-1);
  assert.ok(last !== undefined && last.status === 200 && Number(last.generation) > crashed.id, `the app was not restarted within 20 s: ${summary}`);
  const gap = answers.slice(0, -1);
  assert.ok(gap.some((answer) => answer.status === 503), `no 503 while no generation was up: ${summary}`);
  assert.ok(
    gap.every((answer) => answer.status === 503),
    `answers during the gap other than 503 (a refused connection to the dead app is a 503 too): ${summary}`,
  );
  assert.ok(
    gap.every((answer) => answer.elapsedMs < 1000),
    `a request during the gap waited for an answer: ${summary}`,
  );

  const service = await daemon.service();
  assert.ok(service.restarts >= 1, `restarts is ${service.restarts}`);
  assert.ok((service.activeGeneration ?? 0) > crashed.id);
  await waitFor(() => appProcesses(marker).length === 1, { timeout: 5000, what: 'exactly one app process' });
});

// ['503', '503', '200'] -> '503 x2, 200 x1'
function runs(values: string[]): string {
  const counted: [string, number][] = [];
  for (const value of values) {
    const last = counted.at(-1);
    if (last?.[0] === value) last[1]++;
    else counted.push([value, 1]);
  }
  return counted.map(([value, count]) => `${value} x${count}`).join(', ');
}
