/**
 * Errors thrown by the SDK. Every one extends {@link Ai2inError}; errors answered by the node
 * extend {@link ApiError} and carry the HTTP `status` and the node's sentence as `message`.
 *
 * ```ts
 * try {
 *   await sbx.files.read("/missing");
 * } catch (e) {
 *   if (e instanceof NotFoundError) console.log(e.status, e.message);
 * }
 * ```
 *
 * @module
 */

/** The base of every error the SDK throws (an aborted call rethrows the signal's reason). */
export class Ai2inError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The node could not be reached, or the connection broke before the answer was complete. */
export class ConnectionError extends Ai2inError {}

/**
 * A wait took longer than the caller allowed, e.g. {@link Service.waitUntilRunning} past its
 * `timeoutMs` (the message names the service's last status).
 */
export class RequestTimeoutError extends Ai2inError {}

/** The node answered with an error status. `message` is its sentence, verbatim. */
export class ApiError extends Ai2inError {
  /** The HTTP status. */
  readonly status: number;
  /** A machine-readable code, when the node gives one. */
  readonly code: string | undefined;
  /** More detail, when the node gives it. */
  readonly details: unknown;

  constructor(status: number, message: string, code?: string, details?: unknown) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** 400: a malformed or invalid request (the message names the field). */
export class BadRequestError extends ApiError {}
/** 401: no API key, or one the node does not know. */
export class AuthenticationError extends ApiError {}
/** 403: the key lacks the scope this call needs. */
export class PermissionDeniedError extends ApiError {}
/** 404: no such sandbox (or not yours), file, context, command, terminal, image, volume or service. */
export class NotFoundError extends ApiError {}
/**
 * 409: the call conflicts with the current state, e.g. deleting an image a sandbox still
 * uses or a volume a sandbox mounts (`code` is then `in_use`). A paused sandbox throws the
 * subclass {@link SandboxPausedError}, a name already taken {@link AlreadyExistsError}.
 */
export class ConflictError extends ApiError {}
/** 409: the sandbox is paused; resume it first. */
export class SandboxPausedError extends ConflictError {}
/** 409: the name is taken, e.g. the tenant already has a volume or a service of that name. */
export class AlreadyExistsError extends ConflictError {}
/** 410: the sandbox has ended (expired or destroyed). */
export class SandboxEndedError extends ApiError {}
/** 413: a payload over a limit (`files.read`: 32 MiB of text; bytes have none). */
export class PayloadTooLargeError extends ApiError {}
/** 415: e.g. `files.read` of a file that is not UTF-8 text (use `readBytes`). */
export class UnsupportedMediaTypeError extends ApiError {}
/**
 * 422: a service's redeploy whose new instance never became ready (its port did not open,
 * or its health path did not answer, in time); the old instance keeps serving. The service's
 * logs say why.
 */
export class DeployFailedError extends ApiError {}
/** 429: a tenant quota is used up. */
export class QuotaExceededError extends ApiError {}
/**
 * 502: something the node relies on failed: a registry that cannot be reached, answers
 * garbage or sends content that does not match its digest, or a sandbox's agent.
 */
export class UpstreamError extends ApiError {}
/** 503: the node has no room for another sandbox (or, for a volume, cannot make disks). */
export class NodeAtCapacityError extends ApiError {}
/**
 * 507: a disk is full: the node's own, while it makes a volume or a snapshot, or the
 * sandbox's, while a file is written.
 */
export class InsufficientStorageError extends ApiError {}

const BY_STATUS: Record<number, typeof ApiError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  410: SandboxEndedError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  422: DeployFailedError,
  429: QuotaExceededError,
  502: UpstreamError,
  503: NodeAtCapacityError,
  507: InsufficientStorageError,
};

/** The error for an answer with `status` and body `text` (`{ error, code?, details? }`). */
export function apiError(status: number, text: string): ApiError {
  let message = text.trim() || `HTTP ${status}`;
  let code: string | undefined;
  let details: unknown;
  try {
    const body = JSON.parse(text) as { error?: unknown; code?: unknown; details?: unknown };
    if (typeof body.error === "string") message = body.error;
    if (typeof body.code === "string") code = body.code;
    details = body.details;
  } catch {
    // Not JSON (e.g. a proxy's error page): the text itself is the message.
  }
  return errorFor(status, message, code, details);
}

/** The error for `status` with the node's sentence `message`. */
export function errorFor(status: number, message: string, code?: string, details?: unknown): ApiError {
  // The body's `code` names the kind of a 409; a node older than the field says it in its
  // sentence: "sandbox sbx_… is paused; resume it first".
  const paused =
    status === 409 && (code === "sandbox_paused" || (code === undefined && message.includes(" is paused")));
  const Class = paused
    ? SandboxPausedError
    : status === 409 && code === "already_exists"
      ? AlreadyExistsError
      : (BY_STATUS[status] ?? ApiError);
  return new Class(status, message, code, details);
}
