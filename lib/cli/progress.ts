import { formatDuration } from '../duration.js';

/** A line on stderr that shows a long operation is alive, on a terminal only. */
export function showProgress(what: string): { stop: () => void } {
  if (!process.stderr.isTTY) return { stop: () => undefined };
  const frames = ['|', '/', '-', '\\'];
  const started = Date.now();
  let frame = 0;
  const draw = () => process.stderr.write(`\r${frames[frame++ % frames.length]} ${what}... ${formatDuration(Date.now() - started)}\x1b[K`);
  draw();
  const timer = setInterval(draw, 100);
  return {
    stop: () => {
      clearInterval(timer);
      process.stderr.write('\r\x1b[K');
    },
  };
}
