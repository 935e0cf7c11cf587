// Domain errors and their one mapping to gRPC status codes. Domain code throws these and
// knows nothing of gRPC; the server interceptor turns them into ConnectErrors with a message
// a person can act on. Anything else becomes INTERNAL without internals leaking out.

import { Code, ConnectError } from "@connectrpc/connect";

/** Base class: `code` is the gRPC status the error maps to. */
export abstract class DomainError extends Error {
  abstract readonly code: Code;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** INVALID_ARGUMENT: the request is wrong; `field` names the offending field path. */
export class ValidationError extends DomainError {
  readonly code = Code.InvalidArgument;
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

/** NOT_FOUND: `what` is the resource kind, `id` its name. */
export class NotFoundError extends DomainError {
  readonly code = Code.NotFound;
  constructor(what: string, id: string, hint?: string) {
    super(`${what} ${JSON.stringify(id)} not found${hint ? `; ${hint}` : ""}`);
  }
}

/** ALREADY_EXISTS. */
export class ConflictError extends DomainError {
  readonly code = Code.AlreadyExists;
}

/** FAILED_PRECONDITION: the request is valid but the system is not in a state to accept it. */
export class PreconditionError extends DomainError {
  readonly code = Code.FailedPrecondition;
  constructor(
    message: string,
    /** Structured reasons (e.g. every failed promotion rule), also put in the message. */
    readonly violations: ReadonlyArray<{ subject: string; description: string }> = [],
  ) {
    super(
      violations.length === 0
        ? message
        : `${message}: ${violations.map((v) => `${v.subject}: ${v.description}`).join("; ")}`,
    );
  }
}

export class UnauthenticatedError extends DomainError {
  readonly code = Code.Unauthenticated;
}

export class PermissionDeniedError extends DomainError {
  readonly code = Code.PermissionDenied;
}

export class DeadlineExceededError extends DomainError {
  readonly code = Code.DeadlineExceeded;
}

/** UNAVAILABLE: a dependency is down; the caller may retry. */
export class UnavailableError extends DomainError {
  readonly code = Code.Unavailable;
}

/** ABORTED: a compare-and-set expectation no longer holds; re-read and retry. */
export class AbortedError extends DomainError {
  readonly code = Code.Aborted;
}

/** DATA_LOSS: stored bytes no longer match their digest. */
export class DataLossError extends DomainError {
  readonly code = Code.DataLoss;
}

/** OUT_OF_RANGE: e.g. an offset past the end of a file. */
export class OutOfRangeError extends DomainError {
  readonly code = Code.OutOfRange;
}

export class ResourceExhaustedError extends DomainError {
  readonly code = Code.ResourceExhausted;
}

/** UNIMPLEMENTED: an RPC whose behaviour lands with a later issue. */
export class UnimplementedError extends DomainError {
  readonly code = Code.Unimplemented;
}

/**
 * Map any thrown value to a ConnectError. Domain errors keep their code and message;
 * ConnectErrors pass through; an AbortError from a deadline becomes DEADLINE_EXCEEDED;
 * everything else is INTERNAL with a reference the operator can find in the logs.
 */
export function toConnectError(err: unknown, reference: string): ConnectError {
  if (err instanceof ConnectError) {
    // An UNKNOWN from a library is a bug on our side, not an answer for the client.
    if (err.code === Code.Unknown) return internal(reference);
    return err;
  }
  if (err instanceof DomainError) {
    return new ConnectError(err.message, err.code, undefined, undefined, err);
  }
  if (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError")) {
    return new ConnectError("deadline exceeded before the call completed", Code.DeadlineExceeded);
  }
  return internal(reference);
}

function internal(reference: string): ConnectError {
  return new ConnectError(`internal error; the server log has the details under trace ${reference}`, Code.Internal);
}

/** True for codes that mean "the server did its job": used to pick a log level. */
export function isClientFault(code: Code): boolean {
  return (
    code === Code.InvalidArgument ||
    code === Code.NotFound ||
    code === Code.AlreadyExists ||
    code === Code.FailedPrecondition ||
    code === Code.Unauthenticated ||
    code === Code.PermissionDenied ||
    code === Code.OutOfRange ||
    code === Code.Canceled ||
    code === Code.Unimplemented
  );
}

/** gRPC status names as they appear in metrics labels and span attributes. */
export function codeName(code: Code | 0): string {
  return code === 0 ? "OK" : (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
