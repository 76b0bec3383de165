// Every process the benchmark starts goes through `launch`, so that all of them are stopped
// on success, on failure and on Ctrl-C. Each one gets its own process group (nginx workers,
// gunicorn workers and wrk threads go with it) and a marker in its environment that its
// descendants inherit, so that a last sweep finds what escaped its group (the apps rainbowd
// launches run in process groups of their own).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, type WriteStream } from 'node:fs';
import { groupOf } from './proc.js';

export const MARKER_VARIABLE = 'RAINBOWD_BENCH_RUN';

export interface LaunchOptions {
  cwd: string;
  /** stdout and stderr, appended. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each line of stdout (the rainbowd log, wrk's report). */
  onLine?: (line: string) => void;
}

const TAIL_LINES = 20;

export class Launched {
  readonly child: ChildProcess;
  /** Resolves when the process has exited and its output has been read. */
  readonly exited: Promise<void>;
  private readonly tail: string[] = [];
  private readonly log: WriteStream;

  constructor(
    readonly name: string,
    file: string,
    args: readonly string[],
    options: LaunchOptions,
    private readonly marker: string,
  ) {
    this.log = createWriteStream(options.logFile, { flags: 'a' });
    // A log file that cannot be written must not take the benchmark down with it.
    this.log.on('error', (error) => this.remember(`${name}: log file: ${error.message}`));
    this.child = spawn(file, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env, [MARKER_VARIABLE]: marker },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const closed = new Promise<void>((resolve) => {
      this.child.once('close', () => resolve());
      // A program that cannot be started fails here, not with an unhandled error.
      this.child.once('error', (error) => {
        this.remember(`${name}: ${error.message}`);
        if (this.child.pid === undefined) resolve();
      });
    });
    this.readLines(this.child.stdout!, options.onLine);
    this.readLines(this.child.stderr!);
    this.exited = closed.then(() => void this.log.end());
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null || this.child.pid === undefined;
  }

  describeExit(): string {
    if (!this.hasExited) return `${this.name} is running`;
    const how = this.child.signalCode ? `was killed by ${this.child.signalCode}` : `exited with code ${this.child.exitCode}`;
    return `${this.name} ${how}`;
  }

  outputTail(): string {
    return this.tail.length ? this.tail.join('\n') : '(no output)';
  }

  /** Signals the whole process group. */
  signal(signal: NodeJS.Signals): void {
    if (this.hasExited || this.pid <= 1) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** `signal` to the group, then SIGKILL to it after `graceMs`. Never waits longer than graceMs + 2 s. */
  async stop(graceMs: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.hasExited) {
      this.signal(signal);
      if (!(await within(this.exited, graceMs))) {
        this.remember(`${this.name}: still running ${graceMs} ms after ${signal}; SIGKILL`);
        this.signal('SIGKILL');
      }
    }
    await within(this.exited, 2000);
    // Workers may outlive their group leader.
    if (this.pid > 1) killGroupLeftovers(this.pid, this.marker);
  }

  private readLines(stream: NodeJS.ReadableStream, onLine?: (line: string) => void): void {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.log.write(chunk);
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        this.remember(line);
        onLine?.(line);
      }
    });
    stream.on('end', () => {
      if (partial === '') return;
      this.remember(partial);
      onLine?.(partial);
    });
  }

  private remember(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }
}

/** The processes of one benchmark run. */
export class ProcessRegistry {
  private readonly launched = new Set<Launched>();
  private closed = false;

  constructor(readonly marker: string) {}

  launch(name: string, file: string, args: readonly string[], options: LaunchOptions): Launched {
    // Once the benchmark is stopping, whatever was about to start would escape the cleanup.
    if (this.closed) throw new Error(`not starting ${name}: the benchmark is stopping`);
    const launched = new Launched(name, file, args, options, this.marker);
    this.launched.add(launched);
    void launched.exited.then(() => this.launched.delete(launched));
    return launched;
  }

  /** Stops everything still running, newest first (proxies before the apps behind them). */
  async stopAll(graceMs: number): Promise<void> {
    this.closed = true;
    const running = [...this.launched].reverse();
    await Promise.all(running.map((launched) => launched.stop(graceMs)));
    this.sweep();
  }

  /** SIGKILL, at once, to everything started (for a second Ctrl-C). */
  killAllNow(): void {
    this.closed = true;
    for (const launched of this.launched) launched.signal('SIGKILL');
    this.sweep();
  }

  /** SIGKILLs every live process that carries this run's marker; returns how many. */
  sweep(): number {
    let killed = 0;
    for (const pid of processesWithEnvironment(`${MARKER_VARIABLE}=${this.marker}`)) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // already gone
      }
    }
    return killed;
  }
}

// By pid, and only processes of this run: once its leader is gone, a group id could in
// principle be someone else's.
function killGroupLeftovers(groupId: number, marker: string): void {
  for (const pid of processesWithEnvironment(`${MARKER_VARIABLE}=${marker}`, groupId)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function processesWithEnvironment(entry: string, groupId?: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (groupId !== undefined && groupOf(Number(name)) !== groupId) continue;
      if (readFileSync(`/proc/${name}/environ`, 'latin1').split('\0').includes(entry)) found.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** True when `promise` settles within `ms`. */
export function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    const settled = () => {
      clearTimeout(timer);
      resolve(true);
    };
    promise.then(settled, settled);
  });
}

/** Runs `work` (waiting for `launched` to be ready, say); stops `launched` if it fails. */
export async function stopIfFails<T>(launched: Launched, work: () => Promise<T>, graceMs = 10_000): Promise<T> {
  try {
    return await work();
  } catch (error) {
    await launched.stop(graceMs);
    throw error;
  }
}
