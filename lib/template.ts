// How the `run` line becomes a process: `sh -c RUN rainbowd PORT PIDFILE`, so `$1` and `$2`
// are the shell's own positional parameters and quoting inside RUN works as users expect.

export interface LaunchValues {
  port: number;
  pidfile: string;
  generation: number;
}

export interface LaunchCommand {
  file: string;
  args: string[];
}

export function launchCommand(run: string, values: LaunchValues): LaunchCommand {
  return { file: 'sh', args: ['-c', expandRun(run, values), 'rainbowd', String(values.port), values.pidfile] };
}

export function expandRun(run: string, values: LaunchValues): string {
  return (
    run
      // rainbowd.js appended the port and pidfile after a lone `--` that configs end with;
      // passed on, it makes gunicorn exit with "unrecognized arguments: --".
      .replace(/(^|\s)--\s*$/, '')
      .replaceAll('{port}', String(values.port))
      .replaceAll('{pidfile}', shellQuote(values.pidfile))
      .replaceAll('{generation}', String(values.generation))
  );
}

function shellQuote(text: string): string {
  return /^[\w./@:+-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}
