import path from 'node:path';
import { usageError } from '../errors.js';
import type { LogFormat } from '../log.js';
import { ENGINES, type Engine, isValidToken, MAX_WORKERS, TOKEN_EXPECTED, type RunOverrides } from '../config.js';
import { expectNoArguments, parseCommandLine } from './args.js';

// The options of `rainbowd run`. Each can also come from the environment: flag > env >
// config file > default. `RAINBOWD_X` wins over the plain `X` (parachute/kamal-proxy style).
// --host has no plain variable: many shells and images set HOST to the machine's name;
// --workers neither: WORKERS is as likely to be meant for the app.
// The control token has no flag, only RAINBOWD_CONTROL_TOKEN: a flag would show it in `ps`.

export interface RunOption {
  flag: string;
  env: string[];
  value: string;
  help: string;
}

export const runOptions: RunOption[] = [
  { flag: 'config', env: ['RAINBOWD_CONFIG'], value: 'FILE', help: 'config file (default: searched in the working directory)' },
  { flag: 'http-port', env: ['RAINBOWD_HTTP_PORT', 'HTTP_PORT'], value: 'N', help: 'proxy listen port (default 7000)' },
  { flag: 'control-port', env: ['RAINBOWD_CONTROL_PORT', 'CONTROL_PORT'], value: 'N', help: 'control API port (default: proxy port + 1)' },
  { flag: 'host', env: ['RAINBOWD_HOST'], value: 'ADDR', help: 'proxy listen address (default 127.0.0.1)' },
  { flag: 'control-host', env: ['RAINBOWD_CONTROL_HOST'], value: 'ADDR', help: 'control API listen address (default 127.0.0.1)' },
  { flag: 'control-socket', env: ['RAINBOWD_CONTROL_SOCKET'], value: 'PATH', help: 'also serve the control API on this unix socket, mode 0600 (default: none)' },
  { flag: 'workers', env: ['RAINBOWD_WORKERS'], value: 'N', help: 'proxy worker processes; 0 = proxy in the daemon process (default: see README)' },
  { flag: 'engine', env: ['RAINBOWD_ENGINE'], value: 'node|haproxy', help: 'the data path: rainbowd\'s own proxy, or HAProxy driven by rainbowd (default node)' },
  { flag: 'pidfile', env: ['RAINBOWD_PIDFILE'], value: 'FILE', help: "write the daemon's pid to FILE, and the new one's at rainbowd upgrade (for systemd's PIDFile=; default: none)" },
  { flag: 'log-format', env: ['RAINBOWD_LOG_FORMAT', 'LOG_FORMAT'], value: 'text|json', help: 'log lines as text or JSON (default text)' },
];

export interface RunArguments {
  configFile: string | undefined;
  overrides: RunOverrides;
  pidfile: string | undefined;
}

export function parseRunArguments(args: string[], env: NodeJS.ProcessEnv): RunArguments {
  const { values, positionals } = parseCommandLine(
    'run',
    args,
    Object.fromEntries(runOptions.map((option) => [option.flag, { type: 'string' as const, ...(option.flag === 'config' ? { short: 'c' } : {}) }])),
  );
  expectNoArguments('run', positionals);
  const pick = (flag: string): { value: string; from: string } | undefined => {
    const option = runOptions.find((candidate) => candidate.flag === flag)!;
    const fromFlag = values[flag];
    if (typeof fromFlag === 'string') return { value: fromFlag, from: `--${flag}` };
    for (const name of option.env) {
      const fromEnv = env[name];
      if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, from: name };
    }
    return undefined;
  };
  const overrides: RunOverrides = {};
  const httpPort = pick('http-port');
  if (httpPort) overrides.port = parsePort(httpPort.value, httpPort.from);
  const controlPort = pick('control-port');
  if (controlPort) overrides.controlPort = parsePort(controlPort.value, controlPort.from);
  const host = pick('host');
  if (host) overrides.host = host.value;
  const controlHost = pick('control-host');
  if (controlHost) overrides.controlHost = controlHost.value;
  const controlSocket = pick('control-socket');
  if (controlSocket) overrides.controlSocket = path.resolve(controlSocket.value);
  const controlToken = controlTokenFromEnv(env);
  if (controlToken !== undefined) overrides.controlToken = controlToken;
  const workers = pick('workers');
  if (workers) {
    const count = Number(workers.value);
    if (!/^\d+$/.test(workers.value) || count > MAX_WORKERS) throw usageError(`${workers.from} must be a whole number from 0 to ${MAX_WORKERS}, got ${JSON.stringify(workers.value)}`);
    overrides.workers = count;
  }
  const engine = pick('engine');
  if (engine) {
    if (!ENGINES.includes(engine.value as Engine)) throw usageError(`${engine.from} must be ${ENGINES.map((name) => `"${name}"`).join(' or ')}, got ${JSON.stringify(engine.value)}`);
    overrides.engine = engine.value as Engine;
  }
  const logFormat = pick('log-format');
  if (logFormat) {
    if (logFormat.value !== 'text' && logFormat.value !== 'json') throw usageError(`${logFormat.from} must be "text" or "json", got ${JSON.stringify(logFormat.value)}`);
    overrides.logFormat = logFormat.value as LogFormat;
  }
  const pidfile = pick('pidfile');
  return { configFile: pick('config')?.value, overrides, pidfile: pidfile && path.resolve(pidfile.value) };
}

/** RAINBOWD_CONTROL_TOKEN, checked; not quoted back in an error, as it is a secret. */
export function controlTokenFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  const token = env.RAINBOWD_CONTROL_TOKEN;
  if (token === undefined || token === '') return undefined;
  if (!isValidToken(token)) throw usageError(`RAINBOWD_CONTROL_TOKEN must be ${TOKEN_EXPECTED}`);
  return token;
}

export function parsePort(text: string, from: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw usageError(`${from} must be a port number from 1 to 65535, got ${JSON.stringify(text)}`);
  return port;
}
