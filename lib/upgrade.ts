import type { DaemonConfig } from './config.js';
import { DEFAULT_STOP_TIMEOUT_MS } from './config.js';
import type { ControlServer } from './control.js';
import { takeHandedOver } from './adoption.js';
import { RainbowError, messageOf } from './errors.js';
import { startSuccessor, type Handover, type Predecessor } from './handover.js';
import type { Logger } from './log.js';
import type { DataPath } from './route-table.js';
import type { Service } from './service.js';
import type { ServiceRegistry } from './service-registry.js';

// `rainbowd upgrade` as the daemon sees it, both sides: the running rainbowd starting its
// successor (handover.ts carries the sockets), and the new one taking over what it is given.

/** How long a new rainbowd may take to be ready, on top of the longest deployTimeout (its health checks). */
const UPGRADE_START_MARGIN_MS = 30_000;

/** The running rainbowd's part in an upgrade: serving, starting a successor, or handed over to it. */
type UpgradeState = 'serving' | 'starting-successor' | 'handed-over';

export interface UpgradeContext {
  config: () => DaemonConfig;
  registry: ServiceRegistry;
  control: ControlServer;
  dataPath: DataPath;
  log: Logger;
  shuttingDown: () => boolean;
  /** Writes our records (and HAProxy's config) again: a successor that failed may have written its own. */
  reclaimRecords: () => void;
}

export class Upgrader {
  private state: UpgradeState = 'serving';

  constructor(private readonly context: UpgradeContext) {}

  /** The apps are the successor's now: they must outlive this rainbowd. */
  get handedOver(): boolean {
    return this.state === 'handed-over';
  }

  /**
   * Starts the successor from the code installed now and hands everything over; resolves to
   * its pid once it serves. A successor that fails changes nothing: this one serves on.
   */
  async upgrade(reason: string): Promise<number> {
    const { config, registry, control, dataPath, log } = this.context;
    const refusal = this.refusal();
    if (refusal) throw new RainbowError('UPGRADE_REFUSED', refusal);
    this.state = 'starting-successor';
    log.event('upgrading', { reason: `${reason}: starting a new rainbowd from the installed code and handing over to it` });
    const { proxy, haproxyDir = null } = dataPath.handover!();
    const listeners = { ...(proxy ? { proxy } : {}), ...control.listeners };
    const timeoutMs = Math.max(...config().services.map((service) => service.deployTimeoutMs), 0) + UPGRADE_START_MARGIN_MS;
    try {
      const pid = await startSuccessor({ listeners, controlSocketFile: listeners.controlSocket === undefined ? null : config().controlSocket, haproxyDir, ...registry.handover() }, timeoutMs);
      this.state = 'handed-over';
      log.event('upgraded', { pid, reason: `rainbowd pid ${pid} serves now; this one (pid ${process.pid}) finishes its requests and exits, the apps go on` });
      return pid;
    } catch (error) {
      this.state = 'serving';
      log.event('upgrade-failed', { reason: messageOf(error) });
      this.context.reclaimRecords();
      throw error;
    }
  }

  private refusal(): string | null {
    const { config, registry, dataPath } = this.context;
    if (this.context.shuttingDown()) return 'rainbowd is shutting down';
    if (this.state !== 'serving') return 'an upgrade is already under way';
    if (!dataPath.handover) return `rainbowd upgrade cannot hand the ${config().engine} engine's data path over; restart rainbowd to upgrade it`;
    const deploying = registry.all().find((service) => service.deploying);
    if (deploying) return `a deploy of ${deploying.name} is under way; upgrade when it is over`;
    return null;
  }
}

/**
 * The new rainbowd's side: adopt the active generations handed over, health-check the
 * external targets, go on with pending crash restarts, and stop the rest once the
 * predecessor has exited. Returns the services that need no first deploy.
 */
export async function takeOver(handover: Handover, predecessor: Predecessor, registry: ServiceRegistry, runtimeDir: string, log: Logger): Promise<Set<Service>> {
  const reason = `handed over by rainbowd pid ${predecessor.pid}`;
  const { adoptable, stopLater } = takeHandedOver(handover, (name) => registry.canAdopt(name), runtimeDir, log);
  const adopted = await registry.adopt(adoptable, handover.lastGenerations, reason, predecessor.gone);
  const unhealthy = adoptable.filter(({ service }) => ![...adopted].some((taken) => taken.name === service));
  if (unhealthy.length > 0) {
    const names = unhealthy.map(({ service, generation }) => `${service}#${generation}`).join(', ');
    throw new RainbowError('UPGRADE_FAILED', `${names} did not pass the new rainbowd's health check (see the log); the running rainbowd keeps serving with it`);
  }
  // Health-checked before we accept: a refused target fails the upgrade, not requests.
  const externals = registry.all().filter((service) => handover.externals.includes(service.name));
  await Promise.all(externals.map((service) => service.redeploy(reason)));
  for (const service of externals) adopted.add(service);
  // A service that was waiting to restart a crashed app waits on here, with the same backoff.
  for (const service of registry.continueRestarts(handover.restarts, `rainbowd pid ${predecessor.pid}`)) adopted.add(service);
  void predecessor.gone.then(() =>
    Promise.all(
      stopLater.map(async ({ service, generation, app }) => {
        const outcome = await app.stop(DEFAULT_STOP_TIMEOUT_MS);
        log.event('stopped', { service, generation, pid: app.groupId, reason: `draining when rainbowd pid ${predecessor.pid} handed it over; stopped after that rainbowd exited (${outcome.how})` });
      }),
    ),
  );
  return adopted;
}
