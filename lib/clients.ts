// Typed clients for calling mlmesh services (and any gRPC service) from inside the mesh.
// Every call carries what is left of the caller's deadline (or a default), and a CLIENT span
// whose context travels in the `traceparent` header, so the callee's SERVER span is its child.

import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { codeName } from "./errors.js";
import { getTracer, injectTraceContext, remainingMs } from "./telemetry.js";

export interface ClientOptions {
  /** Deadline for calls made outside any request (CLI, background jobs). Default 30 s. */
  readonly defaultTimeoutMs?: number;
  readonly maxMessageBytes?: number;
  /** Extra interceptors (auth headers, ...), run after tracing. */
  readonly interceptors?: readonly Interceptor[];
}

/** CLIENT span per call, following the OTel RPC conventions, with the context injected. */
export function createClientTracingInterceptor(): Interceptor {
  const tracer = getTracer("mlmesh.rpc");
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    const span = tracer.startSpan(`${service}/${method}`, {
      kind: SpanKind.CLIENT,
      attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method },
    });
    const ctx = trace.setSpan(context.active(), span);
    injectTraceContext(req.header, ctx);
    const end = (code: Code | 0) => {
      span.setAttribute("rpc.grpc.status_code", code);
      if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: codeName(code) });
      span.end();
    };
    try {
      const res = await next(req);
      if (!res.stream) end(0);
      else {
        const source = res.message;
        return {
          ...res,
          message: (async function* () {
            try {
              yield* source;
              end(0);
            } catch (err) {
              end(ConnectError.from(err).code);
              throw err;
            }
          })(),
        };
      }
      return res;
    } catch (err) {
      end(ConnectError.from(err).code);
      throw err;
    }
  };
}

/**
 * A typed gRPC client for `service` at `baseUrl` (http://host:port). Calls made while
 * serving a request inherit its remaining deadline; a call whose deadline has already
 * passed fails with DEADLINE_EXCEEDED without touching the network.
 */
export function createServiceClient<T extends DescService>(service: T, baseUrl: string, opts: ClientOptions = {}): Client<T> {
  const transport = createGrpcTransport({
    baseUrl,
    interceptors: [createClientTracingInterceptor(), ...(opts.interceptors ?? [])],
    readMaxBytes: opts.maxMessageBytes,
    writeMaxBytes: opts.maxMessageBytes,
    pingIntervalMs: 10_000,
  });
  const client = createClient(service, transport);
  const fallback = opts.defaultTimeoutMs ?? 30_000;
  // Wrap each method once (not per call) to fill in the deadline.
  const wrapped: Record<string, unknown> = {};
  for (const method of service.methods) {
    const call = (client as Record<string, (req: unknown, o?: { timeoutMs?: number }) => unknown>)[method.localName]!;
    wrapped[method.localName] = (req: unknown, callOpts: { timeoutMs?: number; signal?: AbortSignal } = {}) => {
      const left = remainingMs();
      let timeoutMs = callOpts.timeoutMs ?? left ?? fallback;
      if (left !== undefined) timeoutMs = Math.min(timeoutMs, left);
      if (timeoutMs <= 0) {
        const err = new ConnectError(
          `deadline exceeded before calling ${service.typeName}/${method.name}`,
          Code.DeadlineExceeded,
        );
        if (method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming") {
          return (async function* () {
            throw err;
          })();
        }
        return Promise.reject(err);
      }
      return call.call(client, req, { ...callOpts, timeoutMs });
    };
  }
  return wrapped as Client<T>;
}
