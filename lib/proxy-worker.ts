import { IdleMemoryRelease } from './idle-memory.js';
import type { SocketHandle } from './listen.js';
import { Proxy } from './proxy.js';
import type { PrimaryMessage, WorkerMessage } from './proxy-workers.js';

// One proxy worker process (see proxy-workers.ts): the data path, driven by the supervisor.

const REPORT_INTERVAL_MS = 200;

function send(message: WorkerMessage): void {
  if (process.connected) process.send!(message);
}

process.title = 'rainbowd-proxy';
// Forking us, libuv set the stdout and stderr we share with the daemon to blocking mode (the
// flag belongs to the shared descriptor): a stalled log reader would then block the daemon's
// writes and with them everything it does. Opening ours sets them back to non-blocking.
void process.stdout;
void process.stderr;
// Ctrl-C and `kill` reach the whole process group; the supervisor decides when we stop,
// after the drains. If it dies, node:cluster ends this process.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1'] as const) process.on(signal, () => undefined);

const proxy = new Proxy({ event: (event, fields = {}) => send({ type: 'event', event, fields }) });

// In-flight counts for `rainbowd status`; drains do not use them, they ask.
let lastReport = '';
setInterval(() => {
  const counts = proxy.inFlightCounts();
  const report = JSON.stringify(counts);
  if (report === lastReport) return;
  lastReport = report;
  send({ type: 'in-flight', counts });
}, REPORT_INTERVAL_MS).unref();

const memoryRelease = new IdleMemoryRelease((fields) => send({ type: 'event', event: 'memory-released', fields }));

process.on('message', (message: PrimaryMessage, handle: SocketHandle | undefined) => {
  switch (message.type) {
    case 'listen':
      memoryRelease.every(message.releaseIdleMemoryAfterMs);
      proxy.update(message.table);
      // The supervisor's socket: every worker accepts on it, and a successor's workers too.
      proxy.listenOnHandedOver(handle!).then(
        () => send({ type: 'listening' }),
        (error: NodeJS.ErrnoException) => send({ type: 'listen-failed', code: error.code, message: error.message }),
      );
      break;
    case 'update':
      proxy.update(message.table);
      break;
    case 'release-idle-memory':
      memoryRelease.every(message.afterMs);
      break;
    case 'when-idle':
      void proxy.whenIdle(message.key).then(() => send({ type: 'answer', id: message.id, value: 0 }));
      break;
    case 'release':
      void proxy.release(message.key).then((cut) => send({ type: 'answer', id: message.id, value: cut }));
      break;
    case 'hand-over':
      void proxy.handOver(message.timeoutMs).then(() => send({ type: 'answer', id: message.id, value: 0 }));
      break;
    case 'close':
      proxy.close();
      break;
    case 'stop':
      void proxy.stop().then(() => process.exit(0));
      break;
  }
});
// Messages that arrive before the listener above exists are lost: the primary waits for this.
send({ type: 'ready' });
