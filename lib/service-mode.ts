import type { ModeChange, ServiceMode } from './api.js';
import { formatDuration } from './duration.js';

// Pause and maintenance of one service, as the supervisor keeps it: a plain record that it
// saves, shows and publishes in the route table. Holding the requests that wait is the data
// path's (pause-controller.ts).

export const DEFAULT_MAX_PAUSE_MS = 30_000;

export interface ModeRecord {
  mode: ServiceMode;
  /** The stopped page's message. */
  message: string | null;
  /** How long a request waits on a paused service before its 503. */
  maxPauseMs: number;
}

export const RUNNING: ModeRecord = { mode: 'running', message: null, maxPauseMs: DEFAULT_MAX_PAUSE_MS };

export function changeMode(current: ModeRecord, change: ModeChange): ModeRecord {
  switch (change.action) {
    case 'pause':
      return { mode: 'paused', message: null, maxPauseMs: change.maxPauseMs ?? DEFAULT_MAX_PAUSE_MS };
    case 'stop':
      return { ...current, mode: 'stopped', message: change.message ?? null };
    default:
      return { ...current, mode: 'running', message: null };
  }
}

export function describeMode({ mode, message, maxPauseMs }: ModeRecord): string {
  if (mode === 'paused') return `paused (requests wait up to ${formatDuration(maxPauseMs)})`;
  if (mode === 'stopped') return `stopped${message ? `: ${message}` : ''}`;
  return 'running';
}
