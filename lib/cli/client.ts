import http from 'node:http';
import path from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import type { ErrorBody } from '../api.js';
import { findConfigFile, loadConfig, type DaemonConfig } from '../config.js';
import { findRunningDaemon } from '../daemon-record.js';
import { RainbowError } from '../errors.js';
import { parseCommandLine } from './args.js';
import { controlTokenFromEnv, parsePort } from './run-options.js';

// The one client of the control API that every subcommand uses. It finds the daemon from
// --control-socket / --control-port / the environment, else from the record a running
// rainbowd keeps next to its config (rainbow.daemon.json), else from the config in the
// working directory (its controlSocket when it has one), and sends the control token when
// there is one (RAINBOWD_CONTROL_TOKEN, else the config's controlToken).

export type ControlEndpoint = { socket: string } | { host: string; port: number };

export interface ControlAddress {
  endpoint: ControlEndpoint;
  token: string | null;
}

const clientOptions = {
  'control-port': { type: 'string' },
  'control-socket': { type: 'string' },
  config: { type: 'string', short: 'c' },
} as const satisfies ParseArgsConfig['options'];

type ClientValues = { 'control-port'?: string | boolean; 'control-socket'?: string | boolean; config?: string | boolean };

export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(command: string, args: string[], options: T) {
  return parseCommandLine(command, args, { ...clientOptions, ...options });
}

export async function findDaemon(values: ClientValues, env: NodeJS.ProcessEnv): Promise<ControlAddress> {
  const given = givenEndpoint(values, env) ?? recordedEndpoint(values, env);
  // With the address known, the config is only where the token may be: one that cannot be
  // read is no reason to fail (the daemon says so if a token was needed).
  const config = given ? await findClientConfig(values, env).catch(() => null) : await findClientConfig(values, env);
  const token = controlTokenFromEnv(env) ?? config?.controlToken ?? null;
  if (given) return { endpoint: given, token };
  if (config) return { endpoint: config.controlSocket === null ? { host: config.controlHost, port: config.controlPort } : { socket: config.controlSocket }, token };
  return { endpoint: { host: env.RAINBOWD_CONTROL_HOST || '127.0.0.1', port: 7001 }, token };
}

/** Flags win over the environment; a socket over a port. */
function givenEndpoint(values: ClientValues, env: NodeJS.ProcessEnv): ControlEndpoint | null {
  const host = env.RAINBOWD_CONTROL_HOST || '127.0.0.1';
  if (typeof values['control-socket'] === 'string') return { socket: path.resolve(values['control-socket']) };
  if (typeof values['control-port'] === 'string') return { host, port: parsePort(values['control-port'], '--control-port') };
  if (env.RAINBOWD_CONTROL_SOCKET) return { socket: path.resolve(env.RAINBOWD_CONTROL_SOCKET) };
  for (const name of ['RAINBOWD_CONTROL_PORT', 'CONTROL_PORT']) {
    const value = env[name];
    if (value) return { host, port: parsePort(value, name) };
  }
  return null;
}

/** Where the rainbowd running on the config of this directory (or --config's) listens. */
function recordedEndpoint(values: ClientValues, env: NodeJS.ProcessEnv): ControlEndpoint | null {
  const config = typeof values.config === 'string' ? values.config : env.RAINBOWD_CONFIG;
  const record = findRunningDaemon(config === undefined ? process.cwd() : path.dirname(path.resolve(config)));
  if (record === null) return null;
  return record.controlSocket === null ? { host: record.controlHost, port: record.controlPort } : { socket: record.controlSocket };
}

async function findClientConfig(values: ClientValues, env: NodeJS.ProcessEnv): Promise<DaemonConfig | null> {
  const file = typeof values.config === 'string' ? path.resolve(values.config) : (env.RAINBOWD_CONFIG ?? (await findConfigFile(process.cwd())));
  return file ? loadConfig(file) : null;
}

function describeEndpoint(endpoint: ControlEndpoint): string {
  return 'socket' in endpoint ? endpoint.socket : `${endpoint.host}:${endpoint.port}`;
}

export interface ControlAnswer<T> {
  status: number;
  body: T;
}

export function callDaemon<T>(address: ControlAddress, method: string, pathname: string, body?: unknown): Promise<ControlAnswer<T>> {
  const payload = body === undefined ? '' : JSON.stringify(body);
  const where = describeEndpoint(address.endpoint);
  const to = 'socket' in address.endpoint ? { socketPath: address.endpoint.socket } : { host: address.endpoint.host, port: address.endpoint.port };
  return new Promise((resolve, reject) => {
    const headers = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(payload),
      ...(address.token === null ? {} : { authorization: `Bearer ${address.token}` }),
    };
    const request = http.request({ ...to, method, path: pathname, headers }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => {
        let parsed: T;
        try {
          parsed = JSON.parse(text) as T;
        } catch {
          return reject(new RainbowError('DAEMON_UNREACHABLE', `${where} answered, but not as rainbowd's control API (status ${response.statusCode})`));
        }
        const warning = (parsed as { warning?: unknown } | null)?.warning;
        if (typeof warning === 'string') process.stderr.write(`rainbowd: warning: ${warning}\n`);
        resolve({ status: response.statusCode ?? 0, body: parsed });
      });
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'ECONNREFUSED' || error.code === 'ENOENT' ? 'nothing is listening there' : error.message;
      reject(new RainbowError('DAEMON_UNREACHABLE', `no rainbowd at ${where} (${why}); is it running? Pass --control-port or run this where its config is`));
    });
    request.end(payload);
  });
}

/** A non-2xx answer of the control API as the error the daemon described. */
export function answerError(answer: ControlAnswer<unknown>): RainbowError {
  const error = (answer.body as Partial<ErrorBody> | null)?.error;
  return new RainbowError(error?.code ?? 'DEPLOY_FAILED', error?.message ?? `the daemon answered ${answer.status}`);
}
