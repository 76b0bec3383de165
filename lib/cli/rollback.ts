import { usageError } from '../errors.js';
import type { DeployResult } from '../api.js';
import { answerError, callDaemon, findDaemon, parseCommandArgs } from './client.js';
import { showProgress } from './progress.js';

export async function rollback(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs('rollback', args, {});
  const [name, ...extra] = positionals;
  if (!name || extra.length > 0) throw usageError('rollback takes one service name: rainbowd rollback NAME');
  const daemon = await findDaemon(values, process.env);
  const progress = showProgress(`rolling back ${name}`);
  const answer = await callDaemon<DeployResult>(daemon, 'POST', `/services/${encodeURIComponent(name)}/rollback`).finally(progress.stop);
  if (answer.status !== 200) throw answerError(answer);
  const { target, generation, port } = answer.body;
  process.stdout.write(`rolled back ${name} to ${target ?? `generation #${generation} on port ${port}`}\n`);
}
