import { usageError } from '../errors.js';
import { answerError, callDaemon, findDaemon, parseCommandArgs } from './client.js';
import { showProgress } from './progress.js';

export async function remove(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs('remove', args, {});
  const [name, ...extra] = positionals;
  if (!name || extra.length > 0) throw usageError('remove takes one service name: rainbowd remove NAME');
  const daemon = await findDaemon(values, process.env);
  const progress = showProgress(`draining and removing ${name}`);
  const answer = await callDaemon(daemon, 'DELETE', `/services/${encodeURIComponent(name)}`).finally(progress.stop);
  if (answer.status !== 200) throw answerError(answer);
  process.stdout.write(`removed ${name}\n`);
}
