import type { ErrorCode } from './errors.js';

// The control API's contract: what the daemon answers, what the CLI and the tests read.
// Plain data only, so that each side imports it without importing the other.

/** A service's mode: running; paused (new requests wait); stopped (new requests get a 503 page). */
export type ServiceMode = 'running' | 'paused' | 'stopped';

export type GenerationState = 'starting' | 'healthy' | 'active' | 'draining' | 'stopping' | 'stopped' | 'failed';

/** Where a service was declared: in the config file, or deployed with `rainbowd deploy`. */
export type ServiceOrigin = 'config' | 'deploy';

/** The answer to a redeploy, a deploy and a rollback. */
export interface DeployResult {
  ok: true;
  service: string;
  generation: number;
  port: number;
  pid: number | null;
  reason: string;
  previous: number | null;
  /** The external target now serving, for external services. */
  target: string | null;
  timings: { healthyMs: number; switchedMs: number; drainedMs: number | null; stoppedMs: number | null };
}

export interface GenerationStatus {
  id: number;
  state: GenerationState;
  host: string;
  port: number;
  pid: number | null;
  inFlight: number;
  ageMs: number;
  /** While it starts: the last health check's outcome ("GET /health answered 500"), for progress. */
  lastCheck: string | null;
}

/**
 * How the last deploy of a service ended: `deployed` (its generation serves; `ok`), `failed`
 * (refused, nothing changed), or `rolled-back` (it switched, then a rollback took the previous
 * generation back before that had drained: the deploy answered ROLLED_BACK).
 */
export type DeployOutcome = 'deployed' | 'failed' | 'rolled-back';

export interface LastDeploy {
  at: string;
  /** The outcome is `deployed`. */
  ok: boolean;
  outcome: DeployOutcome;
  generation: number | null;
  /** Its reason when it was deployed, else what its answer said. */
  message: string;
}

export interface ServiceStatus {
  name: string;
  kind: 'supervised' | 'external';
  origin: ServiceOrigin;
  target: string | null;
  hosts: string[];
  pathPrefix: string | null;
  mode: ServiceMode;
  message: string | null;
  activeGeneration: number | null;
  deploying: boolean;
  /** A deploy waits for the one under way (triggers coalesce into it). */
  queued: boolean;
  restarts: number;
  nextRestartInMs: number | null;
  lastDeploy: LastDeploy | null;
  generations: GenerationStatus[];
}

/** `GET /status`. */
export interface DaemonStatus {
  pid: number;
  version: string;
  uptimeMs: number;
  config: string | null;
  proxy: { host: string; port: number; workers: number };
  control: { host: string; port: number; socket: string | null; token: boolean };
  services: ServiceStatus[];
}

/** `POST /services/NAME/pause|stop|resume|start`. */
export type ModeChange = { action: 'pause'; maxPauseMs?: number } | { action: 'stop'; message?: string | null } | { action: 'resume' } | { action: 'start' };

/** `POST /upgrade`: the new rainbowd serves; the old one (`previousPid`) finishes its requests and exits. */
export interface UpgradeResult {
  ok: true;
  pid: number;
  previousPid: number;
}

/** `DELETE /services/NAME`. */
export interface RemoveResult {
  ok: true;
  service: string;
}

/** The 202 of `?wait=0`: the operation goes on; its outcome is logged and shown in status. */
export interface Accepted {
  ok: true;
  accepted: true;
}

/** The answer to a change: `warning` says it is live but could not be saved in the state file. */
export type Saved<T> = T & { warning?: string };

/** Every error answer, with the status of its code (errors.ts). */
export interface ErrorBody {
  ok: false;
  error: { code: ErrorCode; message: string };
}
