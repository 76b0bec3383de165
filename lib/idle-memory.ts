import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { formatDuration } from './duration.js';
import type { EventFields } from './log.js';

// Under load V8 grows a process's young generation to its ceiling (two 16 MB semi-spaces on
// Node 20) and keeps it while the process is idle: nothing allocates, so no collection runs
// that could shrink it, and a daemon that took a burst an hour ago still holds ~30 MB it does
// not use (RSS ~100 MB instead of ~70 MB). Once the event loop has been almost idle for a whole
// period, one young-generation collection lets V8 see the low allocation rate and give the
// space back. A scavenge takes a few milliseconds and keeps compiled code and old objects: a
// full collection was tried and cost the next burst much more (p99 15 → 90 ms, hello app).

/** Busy for less than this share of the period: idle. An idle daemon measured under 0.1 %. */
const IDLE_UTILIZATION = 0.01;
/** The young generation's size after a release is 1 MB; below this there is little to give back. */
const WORTH_RELEASING_BYTES = 4 * 1024 * 1024;

/** The check of one process (the daemon, or a proxy worker); `released` hears what each release gave back. */
export class IdleMemoryRelease {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly released: (fields: EventFields) => void) {}

  /**
   * From now on, every `periodMs` (0: never; it replaces the previous period): if the event
   * loop was idle for the whole period and the young generation is large, collects it.
   */
  every(periodMs: number): void {
    this.stop();
    if (periodMs === 0) return;
    let before = performance.eventLoopUtilization();
    this.timer = setInterval(() => {
      const now = performance.eventLoopUtilization();
      const idle = performance.eventLoopUtilization(now, before).utilization < IDLE_UTILIZATION;
      before = now;
      const young = youngGenerationBytes();
      if (!idle || young < WORTH_RELEASING_BYTES) return;
      collectYoungGeneration();
      // V8 shrinks only once its measure of the allocation rate has decayed, which can take
      // more than one quiet period after a burst: then the next period tries again.
      const youngAfter = youngGenerationBytes();
      if (youngAfter >= young) return;
      this.released({ youngGeneration: `${megabytes(young)} → ${megabytes(youngAfter)} MB`, reason: `idle for ${formatDuration(periodMs)}: V8's unused young generation goes back to the system` });
    }, periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

function youngGenerationBytes(): number {
  return v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
}

let gc: ((options: { type: 'minor' }) => void) | null = null;

/**
 * A scavenge, with V8's `gc` function obtained without starting Node with `--expose-gc`
 * (rainbowd is started by users and service managers, with whatever flags they give): the
 * flag set now applies to contexts created afterwards, such as this one.
 */
function collectYoungGeneration(): void {
  if (gc === null) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as (options: { type: 'minor' }) => void;
  }
  gc({ type: 'minor' });
}

function megabytes(bytes: number): number {
  return Math.round(bytes / 1024 / 1024);
}
