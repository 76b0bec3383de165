// The apps the proxies are measured in front of (tiny programs in bench/apps/), and how each
// is started: directly on a port, or as rainbowd's `run` line.
import path from 'node:path';
import type { Tools } from './tools.js';

export type AppName = 'hello' | 'slow' | 'gunicorn';

export interface Command {
  file: string;
  args: string[];
}

export interface FixtureApp {
  name: AppName;
  title: string;
  /** Why it cannot run here, if it cannot. */
  missing?: string;
  /** The app listening on `port`, to put nginx and haproxy (and nothing) in front of. */
  command(port: number): Command;
  /** rainbowd's `run` line: `$1` is the port, `$2` the pidfile. */
  runLine: string;
}

export function fixtureApps(root: string, tools: Tools): Record<AppName, FixtureApp> {
  const appsDirectory = path.join(root, 'bench', 'apps');
  const nodeApp = (name: 'hello' | 'slow', title: string): FixtureApp => {
    const script = path.join(appsDirectory, `${name}.mjs`);
    return {
      name,
      title,
      command: (port) => ({ file: process.execPath, args: [script, '--port', String(port)] }),
      runLine: `${shellQuote(process.execPath)} ${shellQuote(script)} --port "$1" --pidfile "$2"`,
    };
  };
  const gunicorn = tools.gunicorn ?? 'gunicorn';
  // Two sync workers, which answer with `Connection: close`: every request is a new connection.
  const gunicornArgs = ['--workers', '2', '--worker-class', 'sync', '--pythonpath', appsDirectory];
  return {
    hello: nodeApp('hello', 'hello-world Node app'),
    slow: nodeApp('slow', 'Node app that answers after 20 ms'),
    gunicorn: {
      name: 'gunicorn',
      title: 'gunicorn, 2 sync workers (closes every connection)',
      missing: tools.gunicorn ? undefined : 'gunicorn is not available',
      command: (port) => ({ file: gunicorn, args: [...gunicornArgs, '--bind', `127.0.0.1:${port}`, 'hello_wsgi:app'] }),
      runLine: [gunicorn, ...gunicornArgs].map(shellQuote).join(' ') + ' --bind "127.0.0.1:$1" --pid "$2" hello_wsgi:app',
    },
  };
}

export function shellQuote(value: string): string {
  return /^[\w./:=@-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}
