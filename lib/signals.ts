import { isRainbowError, messageOf } from './errors.js';
import type { Logger } from './log.js';

// What each signal asks of the daemon, as nginx and Unicorn use them: USR1 redeploys, HUP
// re-reads the config, USR2 upgrades rainbowd itself, TERM and INT drain and stop.

export interface SignalActions {
  /** Throws when the config has no default service. */
  redeployDefault: (why: string) => Promise<unknown>;
  reload: (why: string) => Promise<void>;
  upgrade: (why: string) => Promise<unknown>;
  /** False when a shutdown is already under way. */
  shutdown: (signal: string) => boolean;
  log: Logger;
}

export function handleSignals({ redeployDefault, reload, upgrade, shutdown, log }: SignalActions): void {
  process.on('SIGUSR1', () => {
    let deploying: Promise<unknown>;
    try {
      deploying = redeployDefault('SIGUSR1');
    } catch (error) {
      // A config of named services only has no default one: a signal's mistake, not a crash.
      log.event('signal-ignored', { reason: `SIGUSR1 redeploys the default service: ${messageOf(error)}; use rainbowd redeploy NAME` });
      return;
    }
    deploying.catch(() => undefined); // logged by the deploy
  });
  process.on('SIGHUP', () => void reload('SIGHUP'));
  process.on('SIGUSR2', () => {
    upgrade('SIGUSR2').catch((error: unknown) => {
      // A failure is logged by the upgrade; a refusal is said here.
      if (isRainbowError(error) && error.code === 'UPGRADE_REFUSED') log.event('signal-ignored', { reason: `SIGUSR2 upgrades rainbowd: ${error.message}` });
    });
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (!shutdown(signal)) log.event('shutting-down', { reason: `${signal} again: still draining, please wait` });
    });
  }
}
