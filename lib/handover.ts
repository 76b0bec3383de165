import { spawn } from 'node:child_process';
import net from 'node:net';
import { formatDuration } from './duration.js';
import { RainbowError } from './errors.js';
import type { RecordedGeneration } from './generation-record.js';
import { holdConnections, type Listener } from './listen.js';

// `rainbowd upgrade`, as tableflip and einhorn do it: the running rainbowd starts a new one
// from the code installed now and hands it, over an IPC channel, its listening sockets (both
// accept on them until the old one closes its copies: no connection is ever refused), the
// output pipes of its apps, which generation is what, and where the HAProxy that goes on serving
// keeps its runtime files (haproxy engine). The new one adopts the apps, says
// it is ready, and only then does the old one stop accepting, finish its requests and exit.
// Until then, a new rainbowd that fails changes nothing.

/** Set in the new rainbowd's environment: the pid of the one it takes over from. */
const PREDECESSOR_VARIABLE = 'RAINBOWD_UPGRADE_FROM';

type ListenerName = 'proxy' | 'control' | 'controlSocket';

/** Where a service's crash restarts stand: a successor goes on with the same backoff. */
export interface RestartState {
  /** Restarts so far (status shows them). */
  restarts: number;
  /** Crashes in a row: the next restart's delay doubles with each. */
  crashStreak: number;
  /** A restart scheduled this long from now; null: none. */
  restartInMs: number | null;
}

type ToSuccessor =
  | { type: 'listener'; name: ListenerName }
  | { type: 'output'; marker: string }
  | { type: 'generations'; controlSocketFile: string | null; haproxyDir: string | null; generations: RecordedGeneration[]; externals: string[]; lastGenerations: Array<[string, number]>; restarts: Array<[string, RestartState]> };

type ToPredecessor = { type: 'send' } | { type: 'ready'; pid: number } | { type: 'failed'; message: string };

/** A data path in rainbowd's processes: it hands its listener over, or takes one handed over. */
export interface HandsOver {
  listenOnHandedOver(handed: Listener): Promise<void>;
  /** A handed-over listener on an address the config no longer has. */
  declineHandedOver(handed: Listener): void;
}

/** What the running rainbowd hands over. */
export interface Handover {
  /** The proxy's is a bare handle when proxy workers accept on it. */
  listeners: { proxy?: Listener; control?: net.Server; controlSocket?: net.Server };
  /** The path of the `controlSocket` listener. */
  controlSocketFile: string | null;
  /** The runtime directory of the HAProxy the successor takes over (haproxy engine). */
  haproxyDir: string | null;
  /** Each live app's stdout and stderr, by its generation marker. */
  outputs: Map<string, net.Socket[]>;
  /** Every live app, as the generation record names them (the active ones marked). */
  generations: RecordedGeneration[];
  /** The services whose active generation is an external target. */
  externals: string[];
  /** The highest generation number made per service: numbering goes on from there. */
  lastGenerations: Map<string, number>;
  /** Each service's crash restarts, by name. */
  restarts: Map<string, RestartState>;
}

/**
 * Starts the new rainbowd (this node, its options, the installed bin, the same arguments)
 * and hands `handover` over when it asks. Resolves to its pid once it serves; rejects with an
 * UPGRADE_FAILED error (and kills it) if it exits, fails or is not ready within `timeoutMs`.
 */
export function startSuccessor(handover: Handover, timeoutMs: number): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...process.argv.slice(2)], {
    cwd: process.cwd(),
    env: { ...process.env, [PREDECESSOR_VARIABLE]: String(process.pid) },
    // Its log goes where ours goes (the nohup file, the journal); it must outlive us: its own session.
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    detached: true,
  });
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      child.removeAllListeners();
      child.kill('SIGKILL');
      reject(new RainbowError('UPGRADE_FAILED', `the new rainbowd did not start: ${why}; this one serves on, nothing changed`));
    };
    const timer = setTimeout(() => fail(`not ready within ${formatDuration(timeoutMs)}`), timeoutMs);
    child.on('error', (error) => fail(error.message));
    child.on('exit', (code, signal) => fail(`it exited (${signal ?? `exit code ${code}`}) before it was ready; its output is in the log`));
    child.on('message', (message: ToPredecessor) => {
      if (message.type === 'send') send(child, handover);
      else if (message.type === 'failed') fail(message.message);
      else if (message.type === 'ready') {
        clearTimeout(timer);
        child.removeAllListeners();
        // The channel stays open: its end tells the new rainbowd that we have exited.
        child.unref();
        child.channel?.unref();
        resolve(message.pid);
      }
    });
  });
}

function send(child: ReturnType<typeof spawn>, handover: Handover): void {
  const post = (message: ToSuccessor, handle?: Listener | net.Socket) =>
    // keepOpen: we go on accepting, and reading output, until the new one is ready.
    child.send(message, handle as net.Server | net.Socket | undefined, { keepOpen: true }, () => undefined);
  for (const [name, server] of Object.entries(handover.listeners)) post({ type: 'listener', name: name as ListenerName }, server);
  for (const [marker, streams] of handover.outputs) for (const stream of streams) post({ type: 'output', marker }, stream);
  post({ type: 'generations', controlSocketFile: handover.controlSocketFile, haproxyDir: handover.haproxyDir, generations: handover.generations, externals: handover.externals, lastGenerations: [...handover.lastGenerations], restarts: [...handover.restarts] });
}

/** The rainbowd this one takes over from, when it was started by `rainbowd upgrade`. */
export class Predecessor {
  /** Resolves once it has exited (the channel closes): its requests in flight are over. */
  readonly gone: Promise<void>;

  private constructor(readonly pid: number) {
    this.gone = new Promise((resolve) => process.once('disconnect', () => resolve()));
  }

  static fromEnvironment(): Predecessor | null {
    const pid = Number(process.env[PREDECESSOR_VARIABLE]);
    delete process.env[PREDECESSOR_VARIABLE]; // not for the apps we launch
    return Number.isSafeInteger(pid) && pid > 1 && process.send !== undefined ? new Predecessor(pid) : null;
  }

  /** Asks for the handover and collects it. */
  receive(): Promise<Handover> {
    const handover: Handover = { listeners: {}, controlSocketFile: null, haproxyDir: null, outputs: new Map(), generations: [], externals: [], lastGenerations: new Map(), restarts: new Map() };
    return new Promise((resolve) => {
      const onMessage = (message: ToSuccessor, handle: Listener | net.Socket | undefined) => {
        if (message.type === 'listener' && handle) {
          // A bare handle accepts nothing until someone listens on it: it holds no connection.
          if (handle instanceof net.Server) holdConnections(handle);
          Object.assign(handover.listeners, { [message.name]: handle });
        }
        else if (message.type === 'output' && handle) handover.outputs.set(message.marker, [...(handover.outputs.get(message.marker) ?? []), handle as net.Socket]);
        else if (message.type === 'generations') {
          process.off('message', onMessage);
          handover.generations = message.generations;
          handover.externals = message.externals;
          handover.controlSocketFile = message.controlSocketFile;
          handover.haproxyDir = message.haproxyDir;
          handover.lastGenerations = new Map(message.lastGenerations);
          handover.restarts = new Map(message.restarts);
          resolve(handover);
        }
      };
      process.on('message', onMessage);
      process.send!({ type: 'send' } satisfies ToPredecessor);
    });
  }

  ready(): void {
    process.send!({ type: 'ready', pid: process.pid } satisfies ToPredecessor);
  }

  /** Resolves once the message is sent: the caller exits next. */
  failed(message: string): Promise<void> {
    return new Promise((resolve) => {
      if (!process.connected) return resolve();
      process.send!({ type: 'failed', message } satisfies ToPredecessor, undefined, {}, () => resolve());
    });
  }
}
