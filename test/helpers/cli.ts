import { execFile } from 'node:child_process';
import { daemonBin } from './paths.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  // When the test saw the command exit (Date.now()), and how long it ran.
  exitedAt: number;
  elapsedMs: number;
}

export interface CliOptions {
  cwd?: string;
  // The command is killed after this long, so a hanging CLI never hangs a test.
  timeout?: number;
  // Variables on top of the test runner's (whose RAINBOWD_* are removed).
  env?: NodeJS.ProcessEnv;
}

// Runs `rainbowd ARGS...` as a user would and never rejects: the exit code is the result.
export function runCli(args: string[], { cwd, timeout = 60_000, env = {} }: CliOptions = {}): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [daemonBin, ...args], { cwd, timeout, env: { ...cliEnvironment(), ...env } }, (error, stdout, stderr) => {
      const exitedAt = Date.now();
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr, exitedAt, elapsedMs: exitedAt - started });
    });
  });
}

// `rainbowd ARGS... --control-port N`: talks to the daemon of a test.
export function cli(daemon: { controlPort: number; dir: string }, args: string[], options: CliOptions = {}): Promise<CliResult> {
  return runCli([...args, '--control-port', String(daemon.controlPort)], { cwd: daemon.dir, ...options });
}

export function describeCli(result: CliResult): string {
  return `exit ${result.code} after ${result.elapsedMs} ms\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

// The CLI must find the daemon from its flag, not from variables the test runner happens to have.
function cliEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith('RAINBOWD_') || name === 'CONTROL_PORT' || name === 'HTTP_PORT') delete env[name];
  }
  return env;
}
