import { RainbowError } from './errors.js';

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

// Node's timers hold a signed 32-bit count of milliseconds: a longer delay silently becomes
// 1 ms, so a "1000h" drainTimeout would cut every request at once. Longer is refused.
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Parses `"30s"`, `"500ms"`, `"2m"`, `"1.5s"` or a number of milliseconds. The error's message
 * says what was expected, for the caller to put after the name of the setting.
 */
export function parseDuration(value: unknown): number {
  let ms: number | undefined;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) ms = value;
  if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
    if (match) ms = Math.round(Number(match[1]) * units[match[2] ?? 'ms']!);
  }
  if (ms === undefined) throw new RainbowError('BAD_REQUEST', 'a duration like "30s", "500ms", "2m" or a number of milliseconds');
  if (ms > MAX_DURATION_MS) {
    throw new RainbowError('BAD_REQUEST', `a duration of at most ${formatDuration(MAX_DURATION_MS)} (${MAX_DURATION_MS} ms, about 24.8 days: the longest timer Node.js can set)`);
  }
  return ms;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m${Math.floor((ms % 60_000) / 1000)}s`;
  return `${Math.floor(ms / 3_600_000)}h${Math.floor((ms % 3_600_000) / 60_000)}m`;
}
