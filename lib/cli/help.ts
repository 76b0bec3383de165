import { describeSearchPlaces } from '../config.js';
import { usageError } from '../errors.js';
import { didYouMean } from '../suggest.js';
import { runOptions } from './run-options.js';
import { version } from './version.js';

const general = `rainbowd ${version}: zero-downtime redeploys for web apps on one server

Usage: rainbowd [COMMAND] [OPTIONS]

Commands:
  run                 start the daemon (the default: \`nohup rainbowd &\` works)
  redeploy [SERVICE]  launch a new generation of a service, switch, drain the old one
  deploy NAME --target HOST:PORT [--host H]...
                      point a service at an app someone else runs (kamal-proxy style)
  remove NAME         drain a service, stop it and forget it
  list                services with hosts, path, target and state
  status [--json]     generations with state, port, pid, in-flight, age, restarts
  pause NAME / resume NAME
                      hold new requests (up to --max-pause, then 503) / let them through
  stop NAME [--message M] / start NAME
                      maintenance: answer 503 with a message / serve again
  rollback NAME       back to the previous target or still-draining generation
  upgrade             hand over to a new daemon from the installed rainbowd, without a gap
  help [COMMAND]      this text, or one command's (also: rainbowd COMMAND --help)
  --version           the installed version

The daemon reads its config from the working directory, the first found of:
  ${describeSearchPlaces()}
e.g. rainbow.conf.json: {"run": "node server.js --port $1", "healthCheckPath": "/health"}.
Its proxy listens on 127.0.0.1:7000 and its control API on 127.0.0.1:7001:
  curl -d '' localhost:7001/redeploy     the same as \`rainbowd redeploy\`
Signals: SIGUSR1 redeploys, SIGHUP reloads the config, SIGUSR2 upgrades, SIGTERM/SIGINT
drain and stop.
Exit codes: 0 ok, 1 the operation failed, 2 bad usage or config.
`;

function runHelp(): string {
  const width = Math.max(...runOptions.map((option) => `--${option.flag} ${option.value}`.length));
  const lines = runOptions.map((option) => `  ${`--${option.flag} ${option.value}`.padEnd(width)}  ${option.help}; env ${option.env.join(' or ')}`);
  return `Usage: rainbowd run [OPTIONS]

Starts the daemon: launches each service's app, health-checks it and proxies to it.
Options (flag > environment > config file > default; RAINBOWD_* wins over the plain name):
${lines.join('\n')}
Environment only: RAINBOWD_CONTROL_TOKEN, the bearer token every control request must carry
(as "controlToken" in the config; no flag, so that it does not show in ps).
`;
}

const clientFlags = `  --control-port N   the daemon's control port (env RAINBOWD_CONTROL_PORT or CONTROL_PORT;
                     default: from the config in the working directory, else 7001)
  --control-socket PATH
                     the daemon's control socket (env RAINBOWD_CONTROL_SOCKET; default:
                     "controlSocket" of the config in the working directory, if set)
  --config FILE      read the control port or socket, and token, from this config
The control token, when the daemon needs one: env RAINBOWD_CONTROL_TOKEN, else the config's.`;

const texts: Record<string, () => string> = {
  run: runHelp,
  redeploy: () => `Usage: rainbowd redeploy [SERVICE] [OPTIONS]

Launches a new generation, waits until it is healthy, switches traffic to it, drains the
old one and stops it. Exits 0 when the new generation serves; 1 with the reason when the
release was refused (the old generation keeps serving).
${clientFlags}
`,
  upgrade: () => `Usage: rainbowd upgrade [OPTIONS]

Replaces the running daemon with a new one started from the rainbowd installed now (after
npm install -g rainbowd, say), with the same arguments: the new one takes over the listening
proxy and control sockets and the running apps (not restarted: same pids, same output), then
the old one stops accepting, finishes its requests and exits. Port or address changes in the
config apply too. Exits 0 once the new daemon serves (its pid changes: rainbow.daemon.json
has the new one); 1 with the reason if it failed to start, and the old one serves on.
Also: POST /upgrade on the control API, or SIGUSR2 to the daemon.
Not yet with proxy workers ("workers" > 0): restart rainbowd instead.
${clientFlags}
`,
  status: () => `Usage: rainbowd status [--json] [OPTIONS]

Shows every live generation: state, port, pid, requests in flight, age, restarts.
  --json             the daemon's JSON as it is
${clientFlags}
`,
  deploy: () => `Usage: rainbowd deploy NAME --target HOST:PORT [OPTIONS]

Health-checks the target, routes the service's hosts to it, drains the previous target and
only then exits: exit 0 means the previous target may be removed safely. A target that does
not become healthy changes nothing (exit 1 with the reason). The service is saved in
rainbow.state.json next to the config and comes back when rainbowd restarts.
  --host H                    a host name routed to the service; repeat for more;
                              "*.example.com" wildcards; none = every host not claimed
  --path-prefix P             only requests under P (stripped before forwarding)
  --no-strip-path-prefix      forward the path as it came
  --health-check-path P       default /
  --health-check-interval D   default 50ms while deploying
  --health-check-timeout D    default 5s
  --deploy-timeout D          how long the target may take to become healthy (default 60s)
  --drain-timeout D           how long the previous target may finish requests (default 30s)
A host (and path) that another service owns is refused: "host is used by another service".
A target that is rainbowd's own proxy or control port on this machine is refused too.
${clientFlags}
`,
  remove: () => `Usage: rainbowd remove NAME

Stops routing to the service, waits for its requests in flight (drainTimeout), stops the
processes rainbowd launched for it and forgets it.
${clientFlags}
`,
  list: () => `Usage: rainbowd list [--json] [OPTIONS]

One line per service: name, hosts, path prefix, target (or active generation) and state.
  --json             every service's full status as JSON (GET /services), generations included
${clientFlags}
`,
  pause: () => `Usage: rainbowd pause NAME [--max-pause D]

New requests wait (up to --max-pause, default 30s, then 503) while those in flight finish.
\`rainbowd resume NAME\` lets the waiting requests through.
${clientFlags}
`,
  resume: () => `Usage: rainbowd resume NAME\n\nEnds a pause: waiting requests go through.\n${clientFlags}\n`,
  stop: () => `Usage: rainbowd stop NAME [--message M]

Maintenance: the service answers 503 with the message until \`rainbowd start NAME\`.
Its generations keep running, so start is instant.
${clientFlags}
`,
  start: () => `Usage: rainbowd start NAME\n\nEnds maintenance: the service serves again.\n${clientFlags}\n`,
  rollback: () => `Usage: rainbowd rollback NAME

An external service goes back to its previous target (health-checked first). A supervised
service goes back to its previous generation if that one is still alive (draining).
${clientFlags}
`,
  help: () => general,
};

export function helpText(command?: string): string {
  if (command === undefined) return general;
  const text = Object.hasOwn(texts, command) ? texts[command] : undefined;
  if (!text) throw usageError(`no help for unknown command "${command}"${didYouMean(command, Object.keys(texts))}`);
  return text();
}

export async function help(args: string[]): Promise<void> {
  process.stdout.write(helpText(args[0]));
}
