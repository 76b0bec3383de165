import { formatDuration } from '../duration.js';
import { usageError } from '../errors.js';
import type { DeployResult } from '../api.js';
import { answerError, callDaemon, findDaemon, parseCommandArgs } from './client.js';
import { deployProgress } from './deploy-progress.js';
import { showProgress } from './progress.js';

export async function redeploy(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs('redeploy', args, {});
  if (positionals.length > 1) throw usageError(`redeploy takes at most one service name, got ${positionals.length}`);
  const service = positionals[0];
  const daemon = await findDaemon(values, process.env);
  const pathname = service ? `/services/${encodeURIComponent(service)}/redeploy?reason=rainbowd+redeploy` : '/redeploy?reason=rainbowd+redeploy';
  const progress = showProgress(`deploying ${service ?? 'default'}`, await deployProgress(daemon, service ?? 'default'));
  const answer = await callDaemon<DeployResult>(daemon, 'POST', pathname).finally(progress.stop);
  if (answer.status !== 200) throw answerError(answer);
  const result = answer.body;
  const { timings } = result;
  const previous =
    result.previous === null ? '' : `; #${result.previous} drained${timings.drainedMs === null ? '' : ` by ${formatDuration(timings.drainedMs)}`} and stopped`;
  process.stdout.write(
    `deployed ${result.service}#${result.generation} on port ${result.port} (healthy after ${formatDuration(timings.healthyMs)}${previous})\n`,
  );
}
