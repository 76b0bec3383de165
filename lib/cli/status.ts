import type { DaemonStatus } from '../api.js';
import { formatDuration } from '../duration.js';
import { expectNoArguments } from './args.js';
import { answerError, callDaemon, findDaemon, parseCommandArgs } from './client.js';
import { lastDeployNotes, table } from './format.js';

export async function status(args: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs('status', args, { json: { type: 'boolean' } });
  expectNoArguments('status', positionals);
  const daemon = await findDaemon(values, process.env);
  const answer = await callDaemon<DaemonStatus>(daemon, 'GET', '/status');
  if (answer.status !== 200) throw answerError(answer);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(answer.body, null, 2)}\n`);
    return;
  }
  const body = answer.body;
  process.stdout.write(
    `rainbowd ${body.version}, pid ${body.pid}, up ${formatDuration(body.uptimeMs)}; proxy ${body.proxy.host}:${body.proxy.port}${body.proxy.workers > 0 ? ` (${body.proxy.workers} workers)` : ''}, control ${body.control.host}:${body.control.port}${body.control.socket === null ? '' : ` and ${body.control.socket}`}\n\n`,
  );
  const rows = [['SERVICE', 'GEN', 'STATE', 'PORT', 'PID', 'IN-FLIGHT', 'AGE', 'RESTARTS']];
  for (const service of body.services) {
    if (service.generations.length === 0) {
      const why = service.nextRestartInMs === null ? '' : ` (restart in ${formatDuration(service.nextRestartInMs)})`;
      rows.push([service.name, '-', `down${why}`, '-', '-', '-', '-', String(service.restarts)]);
    }
    for (const generation of service.generations) {
      rows.push([
        service.name,
        `#${generation.id}`,
        generation.state,
        String(generation.port),
        String(generation.pid ?? '-'),
        String(generation.inFlight),
        formatDuration(generation.ageMs),
        String(service.restarts),
      ]);
    }
  }
  process.stdout.write(table(rows));
  process.stdout.write(lastDeployNotes(body.services));
}
