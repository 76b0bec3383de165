// Every error a user can meet, in one place: a stable code, the HTTP status the control
// API answers with, and a message written for the person reading it. Anything else that
// escapes is a bug and is reported as such.

export type ErrorCode =
  | 'CONFIG_NOT_FOUND'
  | 'CONFIG_INVALID'
  | 'USAGE'
  | 'DEPLOY_FAILED'
  | 'SERVICE_NOT_FOUND'
  | 'SHUTTING_DOWN'
  | 'DAEMON_UNREACHABLE'
  | 'PORT_IN_USE'
  | 'LISTEN_FAILED'
  | 'ENGINE_UNAVAILABLE'
  | 'HOST_IN_USE'
  | 'TARGET_LOOP'
  | 'SERVICE_EXISTS'
  | 'NO_ROLLBACK'
  | 'ROLLED_BACK'
  | 'BAD_REQUEST'
  | 'NOT_FOUND'
  | 'CROSS_SITE_REQUEST'
  | 'MISDIRECTED_REQUEST'
  | 'UNAUTHORIZED'
  | 'BODY_TOO_LARGE'
  | 'UNFORWARDABLE'
  | 'INTERNAL'
  | 'UPGRADE_REFUSED'
  | 'UPGRADE_FAILED';

const httpStatusByCode: Record<ErrorCode, number> = {
  CONFIG_NOT_FOUND: 400,
  CONFIG_INVALID: 400,
  USAGE: 400,
  DEPLOY_FAILED: 500,
  SERVICE_NOT_FOUND: 404,
  SHUTTING_DOWN: 503,
  DAEMON_UNREACHABLE: 503,
  PORT_IN_USE: 500,
  // Not in use, but refused all the same: the port needs privileges, the address is not this machine's.
  LISTEN_FAILED: 500,
  // The data path the config asks for cannot run here (HAProxy missing or too old).
  ENGINE_UNAVAILABLE: 500,
  HOST_IN_USE: 409,
  TARGET_LOOP: 409,
  SERVICE_EXISTS: 409,
  NO_ROLLBACK: 409,
  // The deploy (or rollback) switched, then a rollback undid it while it was draining.
  ROLLED_BACK: 409,
  BAD_REQUEST: 400,
  // No such endpoint of the control API.
  NOT_FOUND: 404,
  CROSS_SITE_REQUEST: 403,
  MISDIRECTED_REQUEST: 421,
  UNAUTHORIZED: 401,
  BODY_TOO_LARGE: 413,
  // A request the proxy cannot send on to the app as the client wrote it (`OPTIONS *`): the
  // client's 400, answered by the data path, never by the control API.
  UNFORWARDABLE: 400,
  // A bug in rainbowd, not something the user did.
  INTERNAL: 500,
  // An upgrade under way, a deploy under way, or proxy workers: nothing was changed.
  UPGRADE_REFUSED: 409,
  // The new rainbowd did not start; the old one serves on.
  UPGRADE_FAILED: 500,
};

// Exit codes of the CLI: 1 = the operation failed (a deploy was refused, the daemon is not
// there), 2 = the input was wrong (usage, config).
const exitCodeByCode: Partial<Record<ErrorCode, number>> = {
  CONFIG_NOT_FOUND: 2,
  CONFIG_INVALID: 2,
  ENGINE_UNAVAILABLE: 2,
  USAGE: 2,
  BAD_REQUEST: 2,
  NOT_FOUND: 2,
};

export class RainbowError extends Error {
  override readonly name = 'RainbowError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get httpStatus(): number {
    return httpStatusByCode[this.code];
  }

  get exitCode(): number {
    return exitCodeByCode[this.code] ?? 1;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isRainbowError(error: unknown): error is RainbowError {
  return error instanceof RainbowError;
}

export function configError(file: string, key: string, expected: string, got?: unknown): RainbowError {
  const found = got === undefined ? '' : `, got ${describeValue(got)}`;
  return new RainbowError('CONFIG_INVALID', `${file}: "${key}" must be ${expected}${found}`);
}

export function usageError(message: string): RainbowError {
  return new RainbowError('USAGE', `${message} (see rainbowd help)`);
}

export function deployFailed(message: string, cause?: unknown): RainbowError {
  return new RainbowError('DEPLOY_FAILED', message, { cause });
}

export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
