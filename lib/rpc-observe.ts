// What every RPC passes through, whichever server received it (grpc-js for gRPC on h2c,
// connect-node for Connect/gRPC-Web on HTTP/1.1): the SERVER span (OTel RPC conventions)
// under the caller's trace context, the deadline the handler and its outgoing calls inherit,
// the mapping of thrown errors to gRPC codes, the RPC metrics and failure logs — and the
// security guard (authentication, the method's role, the rate limit), so a refused call is
// counted, traced and answered the same way on both ports without reaching its handler.

import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import type { CallGuard } from "./auth/guard.js";
import { codeName, isClientFault, toConnectError } from "./errors.js";
import type { Logger } from "./logger.js";
import type { RpcMetrics } from "./metrics.js";
import { PRINCIPAL_VALUE, withPrincipal, type Principal } from "./principal.js";
import { extractTraceContext, getTracer, withDeadline } from "./telemetry.js";
import { CounterChild, HistogramChild } from "./metric-children.js";
import { LINKED_ROOT } from "./linked-context.js";
import { traceIdOf } from "./trace-ids-only.js";

export interface ObserveOptions {
  readonly logger: Logger;
  readonly metrics: RpcMetrics;
  /** Deadline applied to calls that carry none, and the cap on those that do. */
  readonly maxDeadlineMs: number;
  /** Called when a call starts and ends, for graceful drain accounting. */
  readonly onStart?: () => void;
  readonly onEnd?: () => void;
  /** Authentication, authorization and rate limit; absent when all are off. */
  readonly guard?: CallGuard;
}

/** One observed call: run the handler inside `ctx`, then `finish` exactly once. */
export interface ObservedCall {
  readonly ctx: Context;
  readonly traceId: string;
  /** The authenticated caller (undefined with authentication off or a public method). */
  readonly principal: Principal | undefined;
  /** Set when the guard refused the call: finish with it instead of running the handler. */
  readonly rejected: ConnectError | undefined;
  /** Record the outcome; returns the error to send (mapped to a gRPC code) when there is one. */
  finish(err?: unknown): ConnectError | undefined;
}

/**
 * `parent`: the caller's span, given by an in-process caller (lib/local-calls.ts) instead of
 * a `traceparent` header; absent for a call that came over the network.
 */
export type CallObserver = (
  service: string,
  method: string,
  header: { get(key: string): string | null | undefined },
  timeoutMs: number | undefined,
  parent?: Span,
) => ObservedCall;

const GRPC_TIMEOUT_UNITS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The timeout a caller asked for, from gRPC's `grpc-timeout` or Connect's `connect-timeout-ms`. */
export function requestTimeoutMs(header: { get(key: string): string | null | undefined }): number | undefined {
  const grpc = header.get("grpc-timeout");
  if (grpc) {
    const unit = GRPC_TIMEOUT_UNITS[grpc.slice(-1)];
    const value = Number(grpc.slice(0, -1));
    if (unit !== undefined && Number.isFinite(value)) return value * unit;
  }
  const connect = header.get("connect-timeout-ms");
  if (connect) {
    const value = Number(connect);
    if (Number.isFinite(value)) return value;
  }
  return undefined;
}

export function createCallObserver(opts: ObserveOptions): CallObserver {
  const tracer = getTracer("mlmesh.rpc");
  const { metrics, logger } = opts;
  // prom-client label lookups hash their arguments; children bound per (method, code)
  // (lib/metric-children.ts) keep the hot path free of that work.
  const children = new Map<string, { counter: CounterChild; histogram: HistogramChild }>();
  const record = (service: string, method: string, code: string, seconds: number) => {
    const key = `${service}/${method}/${code}`;
    let child = children.get(key);
    if (!child) {
      const labels = { service, method, code };
      child = { counter: new CounterChild(metrics.requests, labels), histogram: new HistogramChild(metrics.duration, labels) };
      children.set(key, child);
    }
    child.counter.inc();
    child.histogram.observe(seconds);
  };

  return (service, method, header, askedTimeoutMs, parentSpan) => {
    const started = performance.now();
    const parent = parentSpan ? trace.setSpan(LINKED_ROOT, parentSpan) : extractTraceContext(header, LINKED_ROOT);
    const span = tracer.startSpan(
      `${service}/${method}`,
      { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } },
      parent,
    );
    const timeout = askedTimeoutMs === undefined ? opts.maxDeadlineMs : Math.min(askedTimeoutMs, opts.maxDeadlineMs);
    let ctx = withDeadline(trace.setSpan(parent, span), Date.now() + timeout);
    let principal: Principal | undefined;
    let rejected: ConnectError | undefined;
    if (opts.guard) {
      try {
        principal = opts.guard(service, method, header);
      } catch (err) {
        rejected = err instanceof ConnectError ? err : new ConnectError(String(err), Code.Internal);
      }
      if (principal) {
        ctx = withPrincipal(ctx, principal);
        span.setAttribute("enduser.id", principal.name);
      }
    }
    const traceId = traceIdOf(span);
    opts.onStart?.();
    let done = false;
    return {
      ctx,
      traceId,
      principal,
      rejected,
      finish(err) {
        if (done) return undefined;
        done = true;
        const mapped = err === undefined ? undefined : toConnectError(err, traceId);
        const code = mapped?.code ?? 0;
        const name = codeName(code);
        span.setAttribute("rpc.grpc.status_code", code);
        if (code !== 0 && !isClientFault(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: name });
        span.end();
        record(service, method, name, (performance.now() - started) / 1000);
        if (err !== undefined) logFailure(logger, ctx, span, `${service}/${method}`, code, err, principal);
        opts.onEnd?.();
        return mapped;
      },
    };
  };
}

/** The observer as a connect interceptor (the HTTP/1.1 side). */
export function createObserveInterceptor(observe: CallObserver): Interceptor {
  return (next) => async (req) => {
    const call = observe(req.service.typeName, req.method.name, req.header, requestTimeoutMs(req.header));
    if (call.rejected) throw call.finish(call.rejected);
    if (call.principal) req.contextValues.set(PRINCIPAL_VALUE, call.principal);
    try {
      const res = await context.with(call.ctx, () => next(req));
      if (!res.stream) {
        call.finish();
        return res as UnaryResponse;
      }
      return { ...res, message: observeStream(res.message, call) } as StreamResponse;
    } catch (err) {
      throw call.finish(err);
    }
  };
}

/** Re-enter the call's context on every step of a response stream, and finish at its end. */
export async function* observeStream<T>(source: AsyncIterable<T>, call: ObservedCall): AsyncIterable<T> {
  const it = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      const step = await context.with(call.ctx, () => it.next());
      if (step.done) break;
      yield step.value;
    }
    call.finish();
  } catch (err) {
    throw call.finish(err) ?? err;
  } finally {
    // The client went away mid-stream: the call ends as CANCELLED.
    call.finish(new ConnectError("client cancelled the stream", Code.Canceled));
    await it.return?.();
  }
}

function logFailure(logger: Logger, ctx: Context, span: Span, rpc: string, code: Code | 0, err: unknown, principal: Principal | undefined): void {
  context.with(ctx, () => {
    // Who made a refused or failed call matters for security review; the name only, never the credential.
    const fields = principal ? { rpc, code: codeName(code), principal: principal.name, ...(principal.via ? { via: principal.via } : {}) } : { rpc, code: codeName(code) };
    if (code === Code.Internal || code === Code.Unknown || code === Code.DataLoss) {
      span.recordException(err instanceof Error ? err : new Error(String(err)));
      logger.error({ ...fields, err }, "rpc failed with an internal error");
    } else if (code === Code.Unauthenticated || code === Code.PermissionDenied) {
      // Refused credentials are a security signal: kept at info, where production logs look.
      logger.info({ ...fields, msg_detail: messageOf(err) }, "rpc refused");
    } else if (code === Code.Unavailable || code === Code.DeadlineExceeded || code === Code.ResourceExhausted) {
      logger.warn({ ...fields, msg_detail: messageOf(err) }, "rpc failed");
    } else {
      logger.debug({ ...fields, msg_detail: messageOf(err) }, "rpc rejected");
    }
  });
}

function messageOf(err: unknown): string {
  return err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err);
}
