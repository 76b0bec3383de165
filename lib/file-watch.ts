import { watch, type FSWatcher } from 'chokidar';
import type { ServiceConfig } from './config.js';
import type { Logger } from './log.js';

// The config file reloads itself when it changes; each service's `watch` paths redeploy it.
// Changes are debounced: an editor's save or a `git pull` is one trigger, not dozens.

const WATCH_DEBOUNCE_MS = 300;

/** A service as the watcher sees it. */
export interface Watched {
  name: string;
  config: Pick<ServiceConfig, 'watch'>;
  redeploy(reason: string): Promise<unknown>;
}

export class FileWatch {
  private watchers: FSWatcher[] = [];

  constructor(private readonly log: Pick<Logger, 'event'>) {}

  /** Replaces whatever was watched before. */
  watch(configFile: string | null, onConfigChange: () => void, services: Iterable<Watched>): void {
    void this.close();
    if (configFile) {
      const configWatcher = watch(configFile, { ignoreInitial: true });
      configWatcher.on('change', debounce(onConfigChange));
      this.watchers.push(configWatcher);
    }
    for (const service of services) {
      if (service.config.watch.length === 0) continue;
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
      this.watchers.push(watcher);
    }
  }

  close(): Promise<void> {
    const closing = this.watchers.map((watcher) => watcher.close());
    this.watchers = [];
    return Promise.all(closing).then(() => undefined);
  }
}

function debounce(action: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(action, WATCH_DEBOUNCE_MS);
  };
}
