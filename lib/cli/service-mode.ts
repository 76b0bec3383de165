import { usageError } from '../errors.js';
import type { ServiceStatus } from '../api.js';
import { answerError, callDaemon, findDaemon, parseCommandArgs } from './client.js';

// pause / resume / stop / start: the same call with a different action.

type Action = 'pause' | 'resume' | 'stop' | 'start';

function modeCommand(action: Action) {
  return async (args: string[]): Promise<void> => {
    const { values, positionals } = parseCommandArgs(action, args, {
      ...(action === 'pause' ? { 'max-pause': { type: 'string' as const } } : {}),
      ...(action === 'stop' ? { message: { type: 'string' as const } } : {}),
    });
    const [name, ...extra] = positionals;
    if (!name || extra.length > 0) throw usageError(`${action} takes one service name: rainbowd ${action} NAME`);
    const maxPause = values['max-pause'];
    const query = typeof maxPause === 'string' ? `?maxPause=${encodeURIComponent(maxPause)}` : '';
    const body = action === 'stop' && typeof values.message === 'string' ? { message: values.message } : undefined;
    const daemon = await findDaemon(values, process.env);
    const answer = await callDaemon<ServiceStatus>(daemon, 'POST', `/services/${encodeURIComponent(name)}/${action}${query}`, body);
    if (answer.status !== 200) throw answerError(answer);
    process.stdout.write(`${name}: ${describe(answer.body)}\n`);
  };
}

function describe(service: ServiceStatus): string {
  if (service.mode === 'stopped') return `stopped, answering 503${service.message ? ` with "${service.message}"` : ''}`;
  return service.mode;
}

export const pause = modeCommand('pause');
export const resume = modeCommand('resume');
export const stop = modeCommand('stop');
export const start = modeCommand('start');
