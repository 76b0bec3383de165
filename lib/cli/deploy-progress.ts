import type { DaemonStatus, ServiceStatus } from '../api.js';
import { callDaemon, type ControlAddress } from './client.js';
import type { ProgressDetail } from './progress.js';

// What a deploy the CLI waits for is doing, from the daemon's status: queued behind another
// deploy, waiting for the new generation's health check (and what it last answered), draining
// the old one. The git pusher sees why a push takes a minute, not a silent terminal.

async function serviceStatus(daemon: ControlAddress, name: string): Promise<ServiceStatus | undefined> {
  const answer = await callDaemon<DaemonStatus>(daemon, 'GET', '/status');
  return answer.status === 200 ? answer.body.services.find((service) => service.name === name) : undefined;
}

/** Call before sending the deploy: a generation already starting then is one this deploy waits behind. */
export async function deployProgress(daemon: ControlAddress, name: string): Promise<ProgressDetail> {
  const before = await serviceStatus(daemon, name).catch(() => undefined);
  const aheadOfUs = before?.generations.find((generation) => generation.state === 'starting')?.id ?? null;
  return async () => {
    const service = await serviceStatus(daemon, name);
    if (!service) return null;
    const starting = service.generations.filter((generation) => generation.state === 'starting').at(-1);
    const draining = service.generations.find((generation) => generation.state === 'draining');
    if (starting) {
      const check = starting.lastCheck === null ? 'no health check answered yet' : `last check: ${starting.lastCheck}`;
      const queued = starting.id === aheadOfUs ? `queued behind ${name}#${starting.id}, which is starting` : `waiting for ${name}#${starting.id} to become healthy`;
      return `${queued} (${check})`;
    }
    if (draining) return `${name}#${draining.id} is draining (${draining.inFlight} request(s) in flight)`;
    return null;
  };
}
