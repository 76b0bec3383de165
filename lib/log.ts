// One line per lifecycle event: time, service#generation, event, then port, pid and the
// reason, so `grep default#7` tells the whole story of one generation.

import type { Writable } from 'node:stream';

export type LogFormat = 'text' | 'json';

/**
 * What may wait to be written when the log's reader is slower than rainbowd (a paused
 * `rainbowd | less`, a hung journald): past it lines are dropped, not queued in memory.
 * Room for a burst of a few thousand lines, a few MB of RSS at most.
 */
export const MAX_QUEUED_LOG_BYTES = 4 * 1024 * 1024;

export interface EventFields {
  service?: string;
  generation?: number;
  port?: number;
  pid?: number | null;
  reason?: string;
  [key: string]: unknown;
}

export class Logger {
  private broken = false;
  /** Lines dropped since the reader fell behind; told once it has caught up. */
  private dropped = 0;

  constructor(
    private format: LogFormat,
    private readonly out: Writable = process.stdout,
  ) {
    // A log nobody reads any more (a closed pipe, a terminal gone after logout) must not take
    // the proxy down with an unhandled write error: lines are dropped from then on.
    out.on('error', () => {
      this.broken = true;
    });
  }

  private write(line: string): void {
    if (this.broken) return;
    if (this.out.writableLength <= MAX_QUEUED_LOG_BYTES) {
      this.out.write(line);
      return;
    }
    // Over the limit the last write was refused, so 'drain' comes once the queue is written.
    if (this.dropped++ === 0) this.out.once('drain', () => this.reportDropped());
  }

  private reportDropped(): void {
    const lines = this.dropped;
    this.dropped = 0;
    this.event('log-lines-dropped', { lines, reason: `the log's reader did not keep up: ${lines} lines were dropped rather than held in memory (more than ${MAX_QUEUED_LOG_BYTES / 1024 / 1024} MB waited to be written)` });
  }

  setFormat(format: LogFormat): void {
    this.format = format;
  }

  event(event: string, fields: EventFields = {}): void {
    const time = new Date().toISOString();
    if (this.format === 'json') {
      this.write(`${JSON.stringify({ time, event, ...fields })}\n`);
      return;
    }
    const { service, generation, reason, ...rest } = fields;
    const who = service === undefined ? 'rainbowd' : generation === undefined ? service : `${service}#${generation}`;
    const details = Object.entries(rest)
      .filter(([, value]) => value !== undefined && value !== null)
      .map(([key, value]) => `${key}=${formatValue(value)}`);
    if (reason !== undefined) details.push(`reason=${JSON.stringify(reason)}`);
    this.write(`${time} ${who} ${event}${details.length ? ` ${details.join(' ')}` : ''}\n`);
  }

  /** A line the app printed, prefixed with whose it is. */
  appOutput(service: string, generation: number, line: string): void {
    if (this.format === 'json') {
      this.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'output', service, generation, line })}\n`);
      return;
    }
    this.write(`[${service}#${generation}] ${line}\n`);
  }

  /** A line a program rainbowd runs for itself (HAProxy) printed, prefixed with its name. */
  programOutput(program: string, line: string): void {
    if (this.format === 'json') {
      this.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'output', program, line })}\n`);
      return;
    }
    this.write(`[${program}] ${line}\n`);
  }
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return /^[\w.:/@-]+$/.test(value) ? value : JSON.stringify(value);
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}
