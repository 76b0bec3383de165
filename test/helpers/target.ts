import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import getPort from 'get-port';
import { fixtureApp } from './paths.js';
import { waitFor } from './wait.js';

// An app that someone other than rainbowd runs: the fixture app on a free port, for
// external services (`target` in the config, `rainbowd deploy --target`).

export interface TargetOptions {
  // $RAINBOWD_SERVICE and $RAINBOWD_GENERATION: what the app reports in x-service and x-generation.
  service: string;
  label: string;
  marker: string;
  // Extra fixture arguments, e.g. ['--health', '500'].
  args?: string[];
  // A given port (to bring a target back where it was); default a free one.
  port?: number;
}

export interface Target {
  port: number;
  address: string;
  label: string;
  child: ChildProcess;
  output: string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
}

// Starts the app, waits until it listens, and kills it when the test ends.
export async function startTarget(t: TestContext, { service, label, marker, args = [], port }: TargetOptions): Promise<Target> {
  const chosen = port ?? (await getPort({ host: '127.0.0.1' }));
  const child = spawn(process.execPath, [fixtureApp, '--port', String(chosen), '--tag', marker, ...args], {
    env: { ...process.env, RAINBOWD_SERVICE: service, RAINBOWD_GENERATION: label },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      output.push(...lines.filter((line) => line !== ''));
    });
  }
  const exited = once(child, 'exit');
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await exited;
  };
  t.after(() => kill());
  await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`target ${label} exited: ${output.join(' | ')}`);
      return output.some((line) => line.includes('listening on'));
    },
    { timeout: 10_000, what: `target ${label} to listen on port ${chosen}` },
  );
  return { port: chosen, address: `127.0.0.1:${chosen}`, label, child, output, kill };
}
