import { watch as watchPath } from 'node:fs';
import type { ServiceConfig } from './config.js';
import type { Logger } from './log.js';

// The config file reloads itself when it changes; each service's `watch` paths redeploy it.
// Changes are debounced: an editor's save or a `git pull` is one trigger, not dozens.
// chokidar, which `watch` paths need (directories, editors' saves, files not there yet), is
// loaded only when a service has some: it is 2 MB of RSS that most daemons never use.

const WATCH_DEBOUNCE_MS = 300;

/** A service as the watcher sees it. */
export interface Watched {
  name: string;
  config: Pick<ServiceConfig, 'watch'>;
  redeploy(reason: string): Promise<unknown>;
}

type Close = () => Promise<void> | void;

export class FileWatch {
  private closers: Close[] = [];
  /** Counts the calls of watch and close: chokidar's watchers for an earlier call, still loading, are not set up. */
  private calls = 0;

  constructor(private readonly log: Pick<Logger, 'event'>) {}

  /** Replaces whatever was watched before. */
  watch(configFile: string | null, onConfigChange: () => void, services: Iterable<Watched>): void {
    void this.close();
    const call = this.calls;
    if (configFile) this.closers.push(watchConfigFile(configFile, onConfigChange));
    const watching = [...services].filter((service) => service.config.watch.length > 0);
    if (watching.length === 0) return;
    void import('chokidar').then(({ watch }) => {
      if (call !== this.calls) return;
      for (const service of watching) {
        let changed: string[] = [];
        const trigger = debounce(() => {
          const reason = `changed: ${changed.slice(0, 3).join(', ')}${changed.length > 3 ? ` and ${changed.length - 3} more` : ''}`;
          changed = [];
          service.redeploy(reason).catch(() => undefined);
        });
        const watcher = watch(service.config.watch, { ignoreInitial: true });
        watcher.on('all', (_event, file) => {
          if (!changed.includes(file)) changed.push(file);
          trigger();
        });
        // Said once chokidar has read the paths: a change before this line may go unseen.
        watcher.on('ready', () => this.log.event('watching', { service: service.name, paths: service.config.watch.join(', '), reason: 'a change redeploys' }));
        this.closers.push(() => watcher.close());
      }
    });
  }

  close(): Promise<void> {
    this.calls++;
    const closing = this.closers.map((close) => close());
    this.closers = [];
    return Promise.all(closing).then(() => undefined);
  }
}

/**
 * One file, with node:fs. An editor that saves by renaming a new file over it leaves the
 * watch on the old one, so the watch is set again on the path once the change has settled.
 * A file that is gone then is watched again at the next reload (SIGHUP).
 */
function watchConfigFile(file: string, onChange: () => void): Close {
  let watcher: ReturnType<typeof watchPath> | null = null;
  let closed = false;
  const watchAgain = (): void => {
    watcher?.close();
    watcher = null;
    if (closed) return;
    try {
      watcher = watchPath(file, changed);
      watcher.on('error', () => watcher?.close());
    } catch {
      // gone, or not readable: nothing to watch
    }
  };
  const changed = debounce(() => {
    if (closed) return;
    watchAgain();
    onChange();
  });
  watchAgain();
  return () => {
    closed = true;
    watcher?.close();
  };
}

function debounce(action: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(action, WATCH_DEBOUNCE_MS);
  };
}
