import { spawn } from 'node:child_process';
import type { Logger } from './log.js';
import { readOutputLines } from './output-lines.js';
import { rmSync } from 'node:fs';
import { haproxyFiles } from './haproxy-record.js';
import { isAlive, signalGroup, waitFor } from './process-group.js';
import { parseProcesses, type Processes, runtimeCommand } from './haproxy-runtime.js';

// HAProxy as rainbowd runs it: master-worker in the foreground (`-W -db`), in its own process
// group, its output in rainbowd's log prefixed `[haproxy]`. A reload (SIGUSR2 to the master)
// hands the listeners to a new worker; the old one finishes what it had. When HAProxy dies,
// whoever owns it is told and restarts it from the current state. It outlives a rainbowd
// that is killed, and goes on serving: the next rainbowd attaches to it by its master
// socket (not its child then: its death is seen in /proc, and its output goes nowhere).

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5000;
const POLL_MS = 10;
/** How often an HAProxy another rainbowd started is looked at in /proc: it sends no exit event. */
const EXIT_POLL_MS = 200;
const OUTPUT_TAIL_LINES = 5;

/** HAProxy's startup alert when a listener cannot bind, as the errno Node would give. */
const BIND_FAILURES: Array<[RegExp, string]> = [
  [/cannot bind socket \(Address already in use\)/, 'EADDRINUSE'],
  [/cannot bind socket \(Permission denied\)/, 'EACCES'],
  [/cannot bind socket \(Cannot assign requested address\)/, 'EADDRNOTAVAIL'],
];

/**
 * HAProxy's output that repeats what rainbowd's own events say (a server added, ready,
 * draining, deleted; a reload's new worker), kept out of rainbowd's log: 3-4 lines a switch.
 * Its alerts, and warnings not listed here, still show (HAProxy's `-q` would drop its alerts too).
 */
const ROUTINE_OUTPUT = new RegExp(
  [
    String.raw`^\[NOTICE\]`,
    String.raw`^\[WARNING\] +\(\d+\) : (CLI : )?Server \S+ (is UP/READY|enters drain state|is going DOWN for maintenance)`,
    String.raw`^\[WARNING\] +\(\d+\) : (Proxy \S+ stopped|Stopping (frontend|backend|proxy) )`,
    String.raw`^\[WARNING\] +\(\d+\) : (Former worker \(\d+\) exited with code 0|Exiting Master process|All workers exited\. Exiting\.\.\. \(0\))`,
  ].join('|'),
);

export interface HaproxyProcessOptions {
  binary: string;
  configFile: string;
  masterSocket: string;
  adminSocket: string;
  log: Logger;
  /** HAProxy exited without being asked to. */
  onExit: (how: string) => void;
}

export class HaproxyProcess {
  /** The master's pid while it runs; also its process group. */
  private masterPid: number | null = null;
  private exited: Promise<void> = Promise.resolve();
  private stopping = false;
  private readonly tail: string[] = [];

  constructor(private readonly options: HaproxyProcessOptions) {}

  get pid(): number | null {
    return this.masterPid;
  }

  /** Starts HAProxy on the config file as it is now; resolves once its worker answers on the admin socket. */
  async start(): Promise<void> {
    const { binary, configFile, masterSocket, log } = this.options;
    this.tail.length = 0;
    const child = spawn(binary, ['-W', '-db', '-f', configFile, '-S', `${masterSocket},mode,600`], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.masterPid = child.pid ?? null;
    for (const stream of [child.stdout, child.stderr]) {
      readOutputLines(stream!, (line) => {
        this.tail.push(line);
        if (this.tail.length > OUTPUT_TAIL_LINES) this.tail.shift();
        if (!ROUTINE_OUTPUT.test(line)) log.programOutput('haproxy', line);
      });
    }
    let gone = false;
    let ready = false;
    this.exited = new Promise((resolve) => {
      child.once('error', () => undefined); // spawn failures end in 'exit' (or 'close') too
      child.once('close', (code, signal) => {
        gone = true;
        // Workers it left behind, and old workers still finishing, go with it.
        if (child.pid) signalGroup(child.pid, 'SIGKILL');
        if (this.masterPid === child.pid) this.masterPid = null;
        if (!this.stopping && ready) this.options.onExit(signal ? `was killed by ${signal}` : `exited with code ${code}`);
        resolve();
      });
    });
    const started = Date.now();
    while (!(await this.answers())) {
      if (gone) throw this.startFailure();
      if (Date.now() - started > READY_TIMEOUT_MS) {
        await this.stop();
        throw new Error(`HAProxy did not open its admin socket within ${READY_TIMEOUT_MS / 1000} s`);
      }
      await sleep(POLL_MS);
    }
    ready = true;
  }

  /**
   * Takes over the HAProxy whose master answers on the master socket (one a rainbowd that was
   * killed, or upgraded, left running); resolves to its pid, or null when none answers.
   */
  async attach(): Promise<number | null> {
    const master = await masterOf(this.options.masterSocket);
    if (master === null) return null;
    this.masterPid = master;
    this.exited = new Promise((resolve) => {
      const timer = setInterval(() => {
        if (isAlive(master)) return;
        clearInterval(timer);
        // Workers it left behind go with it, as with our own child.
        signalGroup(master, 'SIGKILL');
        if (this.masterPid === master) this.masterPid = null;
        if (!this.stopping) this.options.onExit('exited (its exit status is unknown: it was started by an earlier rainbowd)');
        resolve();
      }, EXIT_POLL_MS);
      timer.unref();
    });
    return master;
  }

  /** Leaves HAProxy running for a successor (`rainbowd upgrade`): its end is no longer ours to see. */
  letGo(): void {
    this.stopping = true;
  }

  /** A new worker on the config file as it is now; resolves once it serves, rejects if HAProxy refused the config. */
  async reload(): Promise<void> {
    const before = await this.processes();
    if (this.masterPid === null) throw new Error('HAProxy is not running');
    process.kill(this.masterPid, 'SIGUSR2');
    const started = Date.now();
    const overdue = (what: string) => {
      if (Date.now() - started > READY_TIMEOUT_MS) throw new Error(`HAProxy's ${what} within ${READY_TIMEOUT_MS / 1000} s`);
    };
    let after: Processes | null = null;
    while (after === null || after.reloads === before.reloads) {
      overdue('master did not reload');
      await sleep(POLL_MS);
      after = await this.processes().catch(() => null); // the master re-executes itself meanwhile
    }
    if (after.failedReloads > before.failedReloads) throw new Error('HAProxy refused the new config (see its lines above); the previous one goes on serving');
    while ((await this.workerPid()) !== after.workers[0]) {
      overdue('new worker did not open its admin socket');
      await sleep(POLL_MS);
    }
  }

  /** The worker that answers the admin socket, and the old ones still finishing their requests. */
  processes(): Promise<Processes> {
    return runtimeCommand(this.options.masterSocket, 'show proc').then(parseProcesses);
  }

  /** A command to an old worker, through the master. */
  oldWorkerCommand(pid: number, command: string): Promise<string> {
    return runtimeCommand(this.options.masterSocket, `@!${pid} ${command}`);
  }

  /** Ends HAProxy at once (every drain is over by now): SIGTERM to the master, SIGKILL to its group if it lingers. */
  async stop(): Promise<void> {
    this.stopping = true;
    const pid = this.masterPid;
    if (pid === null) return;
    signalGroup(pid, 'SIGTERM');
    const exited = await Promise.race([this.exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]);
    if (!exited) {
      signalGroup(pid, 'SIGKILL');
      await this.exited;
    }
  }

  /** Both the worker (admin socket) and the master (its CLI, which reloads go through) answer. */
  private async answers(): Promise<boolean> {
    if ((await this.workerPid()) === null) return false;
    return this.processes().then(
      () => true,
      () => false,
    );
  }

  private async workerPid(): Promise<number | null> {
    try {
      const info = await runtimeCommand(this.options.adminSocket, 'show info');
      const pid = /^Pid: (\d+)$/m.exec(info)?.[1];
      return pid === undefined ? null : Number(pid);
    } catch {
      return null;
    }
  }

  private startFailure(): Error {
    const output = this.tail.join(' | ');
    const failure = BIND_FAILURES.find(([pattern]) => pattern.test(output));
    const error: NodeJS.ErrnoException = new Error(`HAProxy exited at start: ${output || 'it printed nothing'}`);
    if (failure) error.code = failure[1];
    return error;
  }
}

/**
 * Stops the HAProxy a killed rainbowd left in `dir` (this one runs the node engine, which
 * needs its port), and removes its runtime files.
 */
export async function stopLeftHaproxy(dir: string, log: Logger): Promise<void> {
  const master = await masterOf(haproxyFiles(dir).masterSocket);
  if (master !== null) {
    signalGroup(master, 'SIGTERM');
    if (!(await waitFor(() => !isAlive(master), STOP_TIMEOUT_MS))) signalGroup(master, 'SIGKILL');
    log.event('haproxy-stopped', { pid: master, reason: 'left serving by a rainbowd that exited without stopping it; this one runs the node engine, which needs the port (requests are refused until it listens)' });
  }
  rmSync(dir, { recursive: true, force: true });
}

/** The pid of the HAProxy master that answers on `masterSocket`, or null when none does. */
async function masterOf(masterSocket: string): Promise<number | null> {
  const master = await runtimeCommand(masterSocket, 'show proc').then(
    (answer) => parseProcesses(answer).master,
    () => null,
  );
  return master !== null && isAlive(master) ? master : null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
