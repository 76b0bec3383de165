import { validateServiceDefinition } from '../config.js';
import { formatDuration } from '../duration.js';
import { usageError } from '../errors.js';
import type { DeployResult } from '../api.js';
import { answerError, callDaemon, findDaemon, parseCommandArgs } from './client.js';
import { deployProgress } from './deploy-progress.js';
import { showProgress } from './progress.js';

// kamal-proxy's deploy: point a named service at a host:port someone else runs. Returns
// once the previous target has drained, so the caller may remove it safely.

export async function deploy(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs('deploy', args, {
    target: { type: 'string' },
    host: { type: 'string', multiple: true },
    'path-prefix': { type: 'string' },
    'no-strip-path-prefix': { type: 'boolean' },
    'health-check-path': { type: 'string' },
    'health-check-interval': { type: 'string' },
    'health-check-timeout': { type: 'string' },
    'deploy-timeout': { type: 'string' },
    'drain-timeout': { type: 'string' },
  });
  const [name, ...extra] = positionals;
  if (!name || extra.length > 0) throw usageError('deploy takes one service name: rainbowd deploy NAME --target HOST:PORT');
  if (!values.target) throw usageError('deploy needs --target HOST:PORT');
  const healthCheck = {
    ...(values['health-check-path'] === undefined ? {} : { path: values['health-check-path'] }),
    ...(values['health-check-interval'] === undefined ? {} : { interval: values['health-check-interval'] }),
    ...(values['health-check-timeout'] === undefined ? {} : { timeout: values['health-check-timeout'] }),
  };
  const definition = {
    target: values.target,
    ...(values.host === undefined ? {} : { host: values.host }),
    ...(values['path-prefix'] === undefined ? {} : { pathPrefix: values['path-prefix'] }),
    ...(values['no-strip-path-prefix'] ? { stripPathPrefix: false } : {}),
    ...(Object.keys(healthCheck).length === 0 ? {} : { healthCheck }),
    ...(values['deploy-timeout'] === undefined ? {} : { deployTimeout: values['deploy-timeout'] }),
    ...(values['drain-timeout'] === undefined ? {} : { drainTimeout: values['drain-timeout'] }),
  };
  // The daemon would refuse a bad definition with the same message; say it without a round trip.
  validateServiceDefinition(definition, name, `deploy ${name}`, process.cwd());
  const daemon = await findDaemon(values, process.env);
  const progress = showProgress(`deploying ${name} to ${values.target}`, await deployProgress(daemon, name));
  const answer = await callDaemon<DeployResult>(daemon, 'PUT', `/services/${encodeURIComponent(name)}`, definition).finally(progress.stop);
  if (answer.status !== 200) throw answerError(answer);
  const { timings, previous } = answer.body;
  const drained = previous === null ? '' : `; the previous target drained by ${formatDuration(timings.drainedMs ?? 0)} and may be removed`;
  process.stdout.write(`deployed ${name} to ${values.target} (healthy after ${formatDuration(timings.healthyMs)}${drained})\n`);
}
