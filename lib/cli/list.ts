import type { ServiceStatus } from '../api.js';
import { expectNoArguments } from './args.js';
import { answerError, callDaemon, findDaemon, parseCommandArgs } from './client.js';
import { lastDeployNotes, table } from './format.js';

export async function list(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs('list', args, { json: { type: 'boolean' } });
  expectNoArguments('list', positionals);
  const daemon = await findDaemon(values, process.env);
  const answer = await callDaemon<ServiceStatus[]>(daemon, 'GET', '/services');
  if (answer.status !== 200) throw answerError(answer);
  if (values.json) return void process.stdout.write(`${JSON.stringify(answer.body, null, 2)}\n`);
  const rows = [['SERVICE', 'HOSTS', 'PATH', 'TARGET', 'STATE']];
  for (const service of answer.body) {
    const active = service.generations.find((generation) => generation.id === service.activeGeneration);
    const target = service.kind === 'external' ? (service.target ?? '-') : active ? `#${active.id} on :${active.port}` : '-';
    const state = service.mode !== 'running' ? service.mode : active ? 'running' : service.deploying ? 'deploying' : 'down';
    rows.push([service.name, service.hosts.join(',') || '*', service.pathPrefix ?? '/', target, state]);
  }
  process.stdout.write(table(rows) + lastDeployNotes(answer.body));
}
