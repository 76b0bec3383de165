import type { ServiceMode } from './api.js';
import { DEFAULT_MAX_PAUSE_MS } from './service-mode.js';

// Pause and maintenance of one service in the data path. Paused: new requests wait (up to
// maxPause, then 503) while those in flight finish. Stopped: new requests get a 503 page
// with a message. The supervisor's side is a plain record (service-mode.ts).

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

  private release(proceed: boolean): void {
    for (const done of [...this.waiting]) done(proceed);
  }
}
