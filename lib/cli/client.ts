import http from 'node:http';
import path from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { findConfigFile, loadConfig } from '../config.js';
import { RainbowError, type ErrorCode } from '../errors.js';
import { parseCommandLine } from './args.js';
import { parsePort } from './run-options.js';

// The one client of the control API that every subcommand uses. It finds the daemon from
// --control-port / the environment, else from the config in the working directory.

export interface ControlAddress {
  host: string;
  port: number;
}

const clientOptions = {
  'control-port': { type: 'string' },
  config: { type: 'string', short: 'c' },
} as const satisfies ParseArgsConfig['options'];

export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(command: string, args: string[], options: T) {
  return parseCommandLine(command, args, { ...clientOptions, ...options });
}

export async function findDaemon(values: { 'control-port'?: string | boolean; config?: string | boolean }, env: NodeJS.ProcessEnv): Promise<ControlAddress> {
  const host = env.RAINBOWD_CONTROL_HOST || '127.0.0.1';
  if (typeof values['control-port'] === 'string') return { host, port: parsePort(values['control-port'], '--control-port') };
  for (const name of ['RAINBOWD_CONTROL_PORT', 'CONTROL_PORT']) {
    const value = env[name];
    if (value) return { host, port: parsePort(value, name) };
  }
  const file = typeof values.config === 'string' ? path.resolve(values.config) : (env.RAINBOWD_CONFIG ?? (await findConfigFile(process.cwd())));
  if (file) {
    const config = await loadConfig(file);
    return { host: config.controlHost, port: config.controlPort };
  }
  return { host, port: 7001 };
}

export interface ControlAnswer<T> {
  status: number;
  body: T;
}

export function callDaemon<T>(address: ControlAddress, method: string, pathname: string, body?: unknown): Promise<ControlAnswer<T>> {
  const payload = body === undefined ? '' : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
    const request = http.request({ host: address.host, port: address.port, method, path: pathname, headers }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => {
        try {
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as T });
        } catch {
          reject(new RainbowError('DAEMON_UNREACHABLE', `${address.host}:${address.port} answered, but not as rainbowd's control API (status ${response.statusCode})`));
        }
      });
    });
    request.on('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'ECONNREFUSED' ? 'nothing is listening there' : error.message;
      reject(new RainbowError('DAEMON_UNREACHABLE', `no rainbowd at ${address.host}:${address.port} (${why}); is it running? Pass --control-port or run this where its config is`));
    });
    request.end(payload);
  });
}

/** A non-2xx answer of the control API as the error the daemon described. */
export function answerError(answer: ControlAnswer<unknown>): RainbowError {
  const error = (answer.body as { error?: { code?: ErrorCode; message?: string } }).error;
  return new RainbowError(error?.code ?? 'DEPLOY_FAILED', error?.message ?? `the daemon answered ${answer.status}`);
}
