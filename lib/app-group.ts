import { readFile, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { findMarked, GENERATION_MARKER, stopMarked } from './marked-processes.js';
import { readOutputLines } from './output-lines.js';
import { belongsTo, childrenOf, groupMembers, isAlive, killAll, signalGroup, signalProcess, waitFor } from './process-group.js';

// The processes of one generation's app, wherever they came from (launched by this rainbowd,
// or adopted from one that died or handed over): its process group, its marker, its pidfile,
// and how to stop all of it, including what left the group (see marked-processes.ts).

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

type GroupStopOutcome =
  | { how: 'already-exited' }
  | { how: 'SIGTERM'; signalled: string; leftoversKilled: number }
  | { how: 'SIGKILL'; signalled: string; afterMs: number };

/** `strays`: processes that had left the group (setsid, a double fork), stopped after it. */
export type StopOutcome = GroupStopOutcome & { strays: number };

// Enough for the error line above a Node stack trace (CommonJS: 17 lines from the end).
const OUTPUT_TAIL_LINES = 40;
// The tail is quoted in error messages: a line there is shortened to what a person reads.
const OUTPUT_TAIL_LINE_CHARS = 500;

export abstract class AppGroup {
  private readonly tail: string[] = [];
  /** Set once the app has exited. */
  abstract readonly exitInfo: ExitInfo | null;
  abstract readonly exited: Promise<ExitInfo>;

  constructor(
    /** The wrapper shell's pid, which is also the process group id. */
    readonly groupId: number,
    /** In the environment of every process of this app, wherever it goes. */
    readonly marker: string,
    readonly pidfile: string,
  ) {}

  /** The last lines the app printed, for error messages. */
  outputTail(): string[] {
    return [...this.tail];
  }

  /** Passes the app's output on line by line, keeping its tail. */
  protected readOutput(stream: Readable, onOutput: (line: string) => void): void {
    readOutputLines(stream, (line) => {
      this.tail.push(line.length > OUTPUT_TAIL_LINE_CHARS ? `${line.slice(0, OUTPUT_TAIL_LINE_CHARS)}…` : line);
      if (this.tail.length > OUTPUT_TAIL_LINES) this.tail.shift();
      onOutput(line);
    });
  }

  abstract describeExit(): string;

  /** Its stdout and stderr as they come from the app, for a successor to read (handover.ts). */
  abstract outputStreams(): Socket[];

  /** The pid the app wrote to its pidfile, if it is a live process of this app. */
  async mainPid(): Promise<{ pid: number } | { pid: null; why: string }> {
    let text: string;
    try {
      text = (await readFile(this.pidfile, 'utf8')).trim();
    } catch {
      return { pid: null, why: 'no pidfile was written' };
    }
    const pid = Number(text);
    // Never signal 0 (our own group), 1 (init), negatives (groups) or garbage.
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(pid) || pid <= 1 || pid === process.pid) {
      return { pid: null, why: `the pidfile holds ${JSON.stringify(text.slice(0, 20))}, not a pid` };
    }
    if (!isAlive(pid)) return { pid: null, why: `pid ${pid} from the pidfile is not running` };
    if (!belongsTo(pid, this.groupId)) return { pid: null, why: `pid ${pid} from the pidfile is not a process of this app` };
    return { pid };
  }

  /**
   * The pid to show in status: the app's own from its pidfile; else the wrapper shell's only
   * child (dash does not exec, and a person running ps looks for the app, not `sh -c`); else
   * the wrapper's.
   */
  async displayPid(): Promise<number> {
    const main = await this.mainPid();
    if (main.pid !== null) return main.pid;
    const children = childrenOf(this.groupId);
    return children.length === 1 ? children[0]! : this.groupId;
  }

  isRunning(): boolean {
    return groupMembers(this.groupId).length > 0;
  }

  /** SIGTERM to the whole group and its strays at once, without waiting or escalating: rainbowd is crashing. */
  terminateNow(): void {
    signalGroup(this.groupId, 'SIGTERM');
    for (const { pid } of findMarked(GENERATION_MARKER, this.marker)) signalProcess(pid, 'SIGTERM');
  }

  /**
   * SIGTERM to the app's main process (the pidfile's pid, else the whole group: dash does not
   * exec, so the wrapper's pid is not the app), then SIGKILL to everything after `timeoutMs`.
   * Workers left behind by a master that exited first are killed too, and then, the same way,
   * every process that left the group but still carries this app's marker.
   */
  async stop(timeoutMs: number): Promise<StopOutcome> {
    try {
      const outcome = await this.stopGroup(timeoutMs);
      // After the group, so that a master that stops its own daemonized workers may do so first.
      const strays = findMarked(GENERATION_MARKER, this.marker).map(({ pid }) => pid);
      if (strays.length > 0) await stopMarked(strays, GENERATION_MARKER, this.marker, timeoutMs);
      return { ...outcome, strays: strays.length };
    } finally {
      await rm(this.pidfile, { force: true });
    }
  }

  private async stopGroup(timeoutMs: number): Promise<GroupStopOutcome> {
    if (!this.isRunning()) return { how: 'already-exited' };
    const main = await this.mainPid();
    const started = Date.now();
    let signalled: string;
    let stopped: () => boolean;
    if (main.pid !== null) {
      const pid = main.pid;
      signalProcess(pid, 'SIGTERM');
      signalled = `pid ${pid} (from pidfile)`;
      stopped = () => !isAlive(pid);
    } else {
      signalGroup(this.groupId, 'SIGTERM');
      signalled = `process group ${this.groupId} (${main.why})`;
      stopped = () => !this.isRunning();
    }
    if (!(await waitFor(stopped, timeoutMs))) {
      await killAll(this.groupId, this.groupId);
      await waitFor(() => !this.isRunning(), 2000);
      return { how: 'SIGKILL', signalled, afterMs: Date.now() - started };
    }
    // The wrapper shell exits right after the app; anything still there after that is a
    // worker its master left behind.
    await waitFor(() => !this.isRunning(), 250);
    const leftovers = groupMembers(this.groupId);
    if (leftovers.length > 0) {
      await killAll(this.groupId, null);
      await waitFor(() => !this.isRunning(), 2000);
    }
    return { how: 'SIGTERM', signalled, leftoversKilled: leftovers.length };
  }
}
