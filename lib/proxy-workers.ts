import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { RainbowError } from './errors.js';
import type { HandsOver } from './handover.js';
import { bindHandle, type Listener, type SocketHandle } from './listen.js';
import type { EventFields, Logger } from './log.js';
import type { DataPath, DataPathHandover, RouteTable } from './route-table.js';

// The data path in several processes (node:cluster) sharing the proxy's listener, so it
// can use more than one core. The supervisor stays here: it publishes the route table to
// every worker, and a drain asks each worker to say when it has nothing in flight to the
// old generation. A worker's messages arrive in the order they were sent, so a worker
// always has the switch before it is asked about the drain that follows it.
// The supervisor binds the listening socket and sends it to each worker, which accepts on
// it itself; the supervisor keeps its copy, not accepting, for `rainbowd upgrade` to hand
// over: the new rainbowd's workers accept on the same socket before ours stop.

export type PrimaryMessage =
  | { type: 'listen'; table: RouteTable; releaseIdleMemoryAfterMs: number }
  | { type: 'release-idle-memory'; afterMs: number }
  | { type: 'update'; table: RouteTable }
  | { type: 'when-idle'; id: number; key: number }
  | { type: 'release'; id: number; key: number }
  | { type: 'close' }
  | { type: 'hand-over'; id: number; timeoutMs: number }
  | { type: 'stop' };

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'listening' }
  | { type: 'listen-failed'; code: string | undefined; message: string }
  | { type: 'answer'; id: number; value: number }
  | { type: 'in-flight'; counts: Array<[number, number]> }
  | { type: 'event'; event: string; fields: EventFields };

const WORKER_SCRIPT = fileURLToPath(new URL('./proxy-worker.js', import.meta.url));
const RESTART_DELAY_MS = 1000;
const STOP_TIMEOUT_MS = 5000;
// Workers are killed with SIGKILL on the process, not worker.kill(): that one first waits for
// the worker to disconnect, which a hung worker never does, and they ignore SIGTERM.
// Releasing is immediate in a healthy worker; one that does not answer in this time is hung,
// and would otherwise hold up the end of every deploy from now on.
const RELEASE_ANSWER_MS = 5000;

interface WorkerState {
  /** It has its message listener: before that, what we send it is lost. */
  ready: boolean;
  listening: boolean;
  /** In-flight requests by upstream key, as of the worker's last report. */
  counts: Map<number, number>;
}

/** A question to every worker (is it idle? release it); the answer is the sum of theirs. */
interface Question {
  waiting: Set<Worker>;
  total: number;
  resolve: (total: number) => void;
}

export class ProxyWorkers implements DataPath, HandsOver {
  private readonly workers = new Map<Worker, WorkerState>();
  private readonly questions = new Map<number, Question>();
  private table: RouteTable = { services: [], trustedProxies: [], forwardedFields: [], via: '' };
  private handle: SocketHandle | null = null;
  private nextQuestion = 1;
  private closing = false;
  private stopping = false;
  private releaseIdleMemoryAfterMs = 0;

  constructor(
    private readonly count: number,
    private readonly log: Logger,
  ) {
    // Each worker accepts its own connections, on the socket we send it. Had the daemon
    // accepted them for the workers (node:cluster's round robin), a flood of them filled its
    // descriptor table, and the control API, health checks and spawns failed with EMFILE.
    cluster.setupPrimary({ exec: WORKER_SCRIPT, args: [], execArgv: [] });
  }

  async listen(port: number, host: string): Promise<void> {
    await this.listenOnHandedOver(await bindHandle(port, host));
  }

  /** The socket the workers accept on, for a successor's workers to accept on too (handover.ts). */
  handover(): DataPathHandover {
    return { proxy: this.handle! };
  }

  /** A bare handle, from `listen` or a predecessor (handover.ts). */
  async listenOnHandedOver(handed: Listener): Promise<void> {
    this.handle = bare(handed);
    try {
      await Promise.all(Array.from({ length: this.count }, () => this.fork()));
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  update(table: RouteTable): void {
    this.table = table;
    this.broadcast({ type: 'update', table });
  }

  async whenRouted(): Promise<void> {}

  /** How long a worker waits idle before it gives back its unused memory (idle-memory.ts): set before `listen`, and at a reload. */
  releaseIdleMemoryAfter(ms: number): void {
    if (ms === this.releaseIdleMemoryAfterMs) return;
    this.releaseIdleMemoryAfterMs = ms;
    this.broadcast({ type: 'release-idle-memory', afterMs: ms });
  }

  async whenIdle(key: number): Promise<void> {
    await this.ask((id) => ({ type: 'when-idle', id, key }));
  }

  release(key: number): Promise<number> {
    return this.ask((id) => ({ type: 'release', id, key }), RELEASE_ANSWER_MS);
  }

  declineHandedOver(handed: Listener): void {
    bare(handed).close();
  }

  /** Every worker stops accepting and tells kept-alive clients to close; resolves once they have no connection left. */
  async handOver(timeoutMs: number): Promise<void> {
    this.closing = true;
    await this.ask((id) => ({ type: 'hand-over', id, timeoutMs }));
  }

  inFlight(key: number): number {
    let total = 0;
    for (const state of this.workers.values()) total += state.counts.get(key) ?? 0;
    return total;
  }

  close(): void {
    this.closing = true;
    this.broadcast({ type: 'close' });
    // Our copy of the socket would keep it listening: the kernel would queue new connections
    // that no worker accepts any more, instead of refusing them.
    this.handle?.close();
    this.handle = null;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.handle?.close();
    this.handle = null;
    await Promise.all(
      [...this.workers].map(([worker, state]) => {
        const exited = new Promise((resolve) => worker.once('exit', resolve));
        const timer = setTimeout(() => worker.process.kill('SIGKILL'), STOP_TIMEOUT_MS);
        // One not ready yet would miss the message; it has no connection to finish anyway.
        if (state.ready) send(worker, { type: 'stop' });
        else worker.process.kill('SIGKILL');
        return exited.finally(() => clearTimeout(timer));
      }),
    );
  }

  /** Starts one worker; resolves once it listens, rejects with the listen error (its `code` kept). */
  private fork(): Promise<void> {
    const worker = cluster.fork();
    const state: WorkerState = { ready: false, listening: false, counts: new Map() };
    this.workers.set(worker, state);
    return new Promise((resolve, reject) => {
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'ready') {
          state.ready = true;
          // Started just as rainbowd began to shut down: there is nothing for it to do.
          if (this.closing || this.stopping) return void worker.process.kill('SIGKILL');
          send(worker, { type: 'listen', table: this.table, releaseIdleMemoryAfterMs: this.releaseIdleMemoryAfterMs }, this.handle!);
        } else if (message.type === 'listening') {
          state.listening = true;
          resolve();
        } else if (message.type === 'listen-failed') {
          reject(Object.assign(new Error(message.message), { code: message.code }));
        } else if (message.type === 'answer') {
          this.answered(worker, message.id, message.value);
        } else if (message.type === 'in-flight') {
          state.counts = new Map(message.counts);
        } else {
          this.log.event(message.event, { ...message.fields, worker: worker.process.pid });
        }
      });
      worker.on('exit', (code, signal) => {
        this.workers.delete(worker);
        // What it had in flight is gone with it: it no longer holds up a drain.
        for (const id of [...this.questions.keys()]) this.answered(worker, id, 0);
        if (!state.listening) return reject(new Error(`the proxy worker exited before it listened (${signal ?? `exit code ${code}`})`));
        if (this.closing || this.stopping) return;
        this.log.event('proxy-worker-exited', { pid: worker.process.pid, reason: `${signal ?? `exit code ${code}`}; starting another in ${RESTART_DELAY_MS} ms` });
        setTimeout(() => this.replace(), RESTART_DELAY_MS);
      });
    });
  }

  private replace(): void {
    if (this.closing || this.stopping) return;
    this.fork().catch(
      (error: unknown) => this.log.event('proxy-worker-failed', { reason: `${(error as Error).message}; ${this.workers.size} worker(s) left` }),
    );
  }

  /** With `deadlineMs`, a worker that has not answered by then is killed (and replaced): its exit answers for it. */
  private ask(message: (id: number) => PrimaryMessage, deadlineMs?: number): Promise<number> {
    const id = this.nextQuestion++;
    const workers = this.readyWorkers();
    if (workers.length === 0) return Promise.resolve(0);
    if (deadlineMs !== undefined) setTimeout(() => this.killUnanswered(id, deadlineMs), deadlineMs);
    return new Promise((resolve) => {
      this.questions.set(id, { waiting: new Set(workers), total: 0, resolve });
      for (const worker of workers) send(worker, message(id));
    });
  }

  private killUnanswered(id: number, waitedMs: number): void {
    for (const worker of this.questions.get(id)?.waiting ?? []) {
      this.log.event('proxy-worker-unresponsive', { pid: worker.process.pid, reason: `no answer in ${waitedMs} ms; killing it` });
      worker.process.kill('SIGKILL');
    }
  }

  private answered(worker: Worker, id: number, value: number): void {
    const question = this.questions.get(id);
    if (!question?.waiting.delete(worker)) return;
    question.total += value;
    if (question.waiting.size > 0) return;
    this.questions.delete(id);
    question.resolve(question.total);
  }

  /** A worker not ready yet gets the table with its `listen`, and has nothing in flight. */
  private broadcast(message: PrimaryMessage): void {
    for (const worker of this.readyWorkers()) send(worker, message);
  }

  private readyWorkers(): Worker[] {
    return [...this.workers].filter(([, state]) => state.ready).map(([worker]) => worker);
  }
}

/**
 * A rainbowd from before proxy workers could be handed over sends a server, which accepts in
 * our process as it arrives: the workers could not take its connections from here.
 */
function bare(handed: Listener): SocketHandle {
  if (!(handed instanceof net.Server)) return handed;
  throw new RainbowError('UPGRADE_FAILED', 'the running rainbowd is of a version that cannot hand its proxy over to proxy workers: upgrade with "workers": 0 first, or restart rainbowd');
}

function send(worker: Worker, message: PrimaryMessage, handle?: SocketHandle): void {
  // keepOpen: the handle is ours to send to the next worker, and to hand over.
  if (worker.isConnected()) worker.send(message, handle as unknown as net.Server, { keepOpen: true });
}
