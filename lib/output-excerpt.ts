// What to quote from an app's output when it dies: the line that says what went wrong, as a
// person reading the output would pick it. The last lines alone are useless for most
// runtimes: Node ends with stack frames and its version, gunicorn with "Worker exiting".

// `Error: …`, `TypeError: …`, `Error [ERR_MODULE_NOT_FOUND]: …` (Node); `KeyError: …`,
// `django.core.exceptions.ImproperlyConfigured: …` (Python); `panic: …` (Go);
// `app.rb:1:in '<main>': … (RuntimeError)` (Ruby).
const ERROR_LINE = [
  /^(?:[A-Za-z_$][\w$]*\.)*[A-Za-z_$]*(?:Error|Exception)(?: \[[\w-]+\])?: \S/,
  /^(?:panic|fatal error|fatal|FATAL|ERROR): \S/,
  /\((?:[\w:]*(?:Error|Exception))\)$/,
];

// Lines after the error line that belong to its message (`Require stack:`, `- /app/index.js`),
// until something that does not: a stack frame, a log line, Node's closing lines.
const NOT_MESSAGE = [/^\s*$/, /^\s+at /, /^\s*File "/, /^\[/, /^Node\.js v/, /^\s*[{}]/, /^\s+\w+: /, /^goroutine /];
const MESSAGE_LINES_AFTER = 2;
const LAST_LINES = 5;

export function describeOutput(lines: readonly string[]): string {
  if (lines.length === 0) return 'it printed nothing';
  const at = lines.findLastIndex((line) => ERROR_LINE.some((pattern) => pattern.test(line)));
  if (at === -1) return `last output: ${lines.slice(-LAST_LINES).join(' | ')}`;
  const excerpt = [lines[at]!];
  for (const line of lines.slice(at + 1, at + 1 + MESSAGE_LINES_AFTER)) {
    if (NOT_MESSAGE.some((pattern) => pattern.test(line))) break;
    excerpt.push(line);
  }
  return `error: ${excerpt.map((line) => line.trim()).join(' | ')}`;
}

