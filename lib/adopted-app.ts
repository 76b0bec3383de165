import type { Socket } from 'node:net';
import { AppGroup, type ExitInfo } from './app-group.js';
import { GENERATION_MARKER, isMarked } from './marked-processes.js';
import { isAlive } from './process-group.js';

// An app another rainbowd launched and this one took over (adoption.ts, handover.ts): not our
// child, so no exit event and no exit status. Its death is found by looking at its wrapper
// process (the group leader) in /proc, often enough that a crash is handled as fast as a
// child's. Its output is read only if it was handed over: a killed rainbowd's is gone.

const EXIT_POLL_MS = 200;

export class AdoptedApp extends AppGroup {
  exitInfo: ExitInfo | null = null;
  readonly exited: Promise<ExitInfo>;

  private readonly streams: Socket[];

  constructor(groupId: number, marker: string, pidfile: string, output?: { streams: Socket[]; onOutput: (line: string) => void }) {
    super(groupId, marker, pidfile);
    this.streams = output?.streams ?? [];
    for (const stream of this.streams) this.readOutput(stream, output!.onOutput);
    this.exited = new Promise((resolve) => {
      const timer = setInterval(() => {
        // The marker, not only the pid: a pid freed by the exit may be someone else's by now.
        if (isAlive(groupId) && isMarked(groupId, GENERATION_MARKER, marker)) return;
        clearInterval(timer);
        this.exitInfo = { code: null, signal: null };
        resolve(this.exitInfo);
      }, EXIT_POLL_MS);
      timer.unref();
    });
  }

  outputStreams(): Socket[] {
    return this.streams;
  }

  describeExit(): string {
    return this.exitInfo ? 'exited (its exit status is unknown: it was adopted from an earlier rainbowd)' : 'is running';
  }
}
