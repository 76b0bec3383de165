import type { ServiceMode } from './api.js';
import { formatDuration } from './duration.js';

// Pause and maintenance of one service. Paused: new requests wait (up to maxPause, then
// 503) while those in flight finish. Stopped: new requests get a 503 page with a message.

export const DEFAULT_MAX_PAUSE_MS = 30_000;

export class PauseController {
  mode: ServiceMode = 'running';
  message: string | null = null;
  maxPauseMs = DEFAULT_MAX_PAUSE_MS;
  private readonly waiting = new Set<(proceed: boolean) => void>();

  pause(maxPauseMs = DEFAULT_MAX_PAUSE_MS): void {
    this.mode = 'paused';
    this.maxPauseMs = maxPauseMs;
    this.message = null;
  }

  stop(message: string | null): void {
    this.mode = 'stopped';
    this.message = message;
    this.release(false);
  }

  resume(): void {
    this.mode = 'running';
    this.message = null;
    this.release(true);
  }

  /** Resolves true when the service runs again, false when it was stopped or the wait ran out. */
  wait(): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (proceed: boolean) => {
        clearTimeout(timer);
        this.waiting.delete(done);
        resolve(proceed);
      };
      const timer = setTimeout(() => done(false), this.maxPauseMs);
      this.waiting.add(done);
    });
  }

  describe(): string {
    if (this.mode === 'paused') return `paused (requests wait up to ${formatDuration(this.maxPauseMs)})`;
    if (this.mode === 'stopped') return `stopped${this.message ? `: ${this.message}` : ''}`;
    return 'running';
  }

  private release(proceed: boolean): void {
    for (const done of [...this.waiting]) done(proceed);
  }
}
