import type { UpgradeResult } from '../api.js';
import { expectNoArguments } from './args.js';
import { answerError, callDaemon, findDaemon, parseCommandArgs } from './client.js';

export async function upgrade(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs('upgrade', args, {});
  expectNoArguments('upgrade', positionals);
  const daemon = await findDaemon(values, process.env);
  const answer = await callDaemon<UpgradeResult>(daemon, 'POST', '/upgrade?reason=rainbowd+upgrade');
  if (answer.status !== 200) throw answerError(answer);
  const { pid, previousPid } = answer.body;
  process.stdout.write(`upgraded: rainbowd pid ${pid} serves now; pid ${previousPid} finishes its requests and exits (the apps were not restarted)\n`);
}
