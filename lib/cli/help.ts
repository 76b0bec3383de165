import { usageError } from '../errors.js';
import { runOptions } from './run-options.js';
import { version } from './version.js';

const general = `rainbowd ${version}: zero-downtime redeploys for web apps on one server

Usage: rainbowd [COMMAND] [OPTIONS]

Commands:
  run                 start the daemon (the default: \`nohup rainbowd &\` works)
  redeploy [SERVICE]  deploy a new generation and wait for the result
  status [--json]     generations with state, port, pid, in-flight, age, restarts
  help [COMMAND]      this text, or one command's

The daemon reads rainbow.conf.json (or .rainbowrc, rainbow.config.js, package.json "rainbow")
from the working directory, e.g. {"run": "node server.js --port $1", "healthCheckPath": "/health"}.
Its proxy listens on 127.0.0.1:7000 and its control API on 127.0.0.1:7001:
  curl -d '' localhost:7001/redeploy     the same as \`rainbowd redeploy\`
Signals: SIGUSR1 redeploys, SIGHUP reloads the config, SIGTERM/SIGINT drain and stop.
Exit codes: 0 ok, 1 the operation failed, 2 bad usage or config.
`;

function runHelp(): string {
  const width = Math.max(...runOptions.map((option) => `--${option.flag} ${option.value}`.length));
  const lines = runOptions.map((option) => `  ${`--${option.flag} ${option.value}`.padEnd(width)}  ${option.help}; env ${option.env.join(' or ')}`);
  return `Usage: rainbowd run [OPTIONS]

Starts the daemon: launches each service's app, health-checks it and proxies to it.
Options (flag > environment > config file > default; RAINBOWD_* wins over the plain name):
${lines.join('\n')}
`;
}

const clientFlags = `  --control-port N   the daemon's control port (env RAINBOWD_CONTROL_PORT or CONTROL_PORT;
                     default: from the config in the working directory, else 7001)
  --config FILE      read the control port from this config`;

const texts: Record<string, () => string> = {
  run: runHelp,
  redeploy: () => `Usage: rainbowd redeploy [SERVICE] [OPTIONS]

Launches a new generation, waits until it is healthy, switches traffic to it, drains the
old one and stops it. Exits 0 when the new generation serves; 1 with the reason when the
release was refused (the old generation keeps serving).
${clientFlags}
`,
  status: () => `Usage: rainbowd status [--json] [OPTIONS]

Shows every live generation: state, port, pid, requests in flight, age, restarts.
  --json             the daemon's JSON as it is
${clientFlags}
`,
  help: () => general,
};

export function helpText(command?: string): string {
  if (command === undefined) return general;
  const text = texts[command];
  if (!text) throw usageError(`no help for unknown command "${command}"`);
  return text();
}

export async function help(args: string[]): Promise<void> {
  process.stdout.write(helpText(args[0]));
}
