import { setTimeout as sleep } from 'node:timers/promises';

// Thrown by a probe when waiting longer is pointless (the daemon died): ends the wait at once.
export class StopWaiting extends Error {}

export interface WaitOptions {
  timeout: number;
  interval?: number;
  what: string;
}

// Polls `probe` until it returns a truthy value (returned) or `timeout` ms pass (throws,
// quoting the last value or error seen, so a failure says what the world looked like).
export async function waitFor<T>(probe: () => T | Promise<T>, { timeout, interval = 50, what }: WaitOptions): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeout;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (error) {
      if (error instanceof StopWaiting) throw error;
      last = error;
    }
    if (Date.now() >= deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last seen: ${seen})`);
    }
    await sleep(interval);
  }
}
