import { formatDuration } from '../duration.js';

/** What a long operation waits for right now ("default#3 to become healthy …"), or null. */
export type ProgressDetail = () => Promise<string | null>;

// Off a terminal (a git hook, a CI log) a spinner is noise, but a minute of silence reads as
// a hang: there, a line every few seconds once the operation has taken that long.
const LINE_EVERY_MS = 5000;
const DETAIL_EVERY_MS = 1000;

/** Shows on stderr that a long operation is alive: a spinner on a terminal, else a line every 5 s. */
export function showProgress(what: string, detail: ProgressDetail = async () => null): { stop: () => void } {
  const started = Date.now();
  let stopped = false;
  const describe = (text: string | null) => `${what}, ${formatDuration(Date.now() - started)}${text ? `: ${text}` : ''}`;
  // The answer to the operation itself says what went wrong; a failed look at progress says nothing.
  const ask = () => detail().catch(() => null);
  const timers: NodeJS.Timeout[] = [];
  if (process.stderr.isTTY) {
    const frames = ['|', '/', '-', '\\'];
    let frame = 0;
    let latest: string | null = null;
    const draw = () => process.stderr.write(`\r${frames[frame++ % frames.length]} ${describe(latest)}\x1b[K`);
    const refresh = () => void ask().then((text) => (latest = text));
    draw();
    refresh();
    timers.push(setInterval(draw, 100), setInterval(refresh, DETAIL_EVERY_MS));
  } else {
    const line = () => void ask().then((text) => stopped || process.stderr.write(`rainbowd: ${describe(text)}\n`));
    timers.push(setInterval(line, LINE_EVERY_MS));
  }
  return {
    stop: () => {
      stopped = true;
      for (const timer of timers) clearInterval(timer);
      if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    },
  };
}
