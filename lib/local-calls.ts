// In-process calls between services hosted by one process (`mlmesh up`). When the router
// calls features and inference in the same process, a loopback gRPC call would encode the
// request, cross two HTTP/2 stacks and decode it again on the same event loop — most of a
// Predict's CPU (bench/mesh-vs-fastapi.ts). Here a unary call goes straight to the callee's
// handler with the message object, through the callee's own observer: the same SERVER span
// under the caller's trace context, the same deadline, the same guard (credentials are the
// same metadata headers a network call would carry), the same RPC metrics and drain
// accounting. What is skipped is only the wire: encoding, framing, HTTP/2, decoding.
//
// Rules that keep this honest:
// - Only unary calls are local; streams keep the network path (uploads, long reads).
// - Messages are shared, not copied: callers never mutate a request after sending it, and
//   handlers never mutate a request they received (both hold in this codebase; the response
//   is a fresh object per call).
// - A server that starts draining unregisters first, so new calls go to its network port and
//   get the UNAVAILABLE any remote caller gets.
// - MLMESH_LOCAL_CALLS=off turns it off (every call over the network, as between processes).

import { create, fromBinary, isMessage, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, INVALID_SPAN_CONTEXT, trace, type Span } from "@opentelemetry/api";
import { LightHandlerContext } from "./light-handler-context.js";
import { isPreEncoded } from "./pre-encoded.js";
import { PRINCIPAL_VALUE } from "./principal.js";
import type { CallObserver, ObservedCall } from "./rpc-observe.js";

export interface LocalBinding {
  readonly service: DescService;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly impl: Record<string, (...args: any[]) => any>;
}

interface LocalTarget {
  readonly service: DescService;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly impl: Record<string, (...args: any[]) => any>;
  readonly observe: CallObserver;
  readonly shutdownSignal: AbortSignal;
  /** Calls running in it: the server's shutdown ends them (one listener per server, not per call). */
  readonly inflight: Set<LocalCall>;
}

const targets = new Map<string, LocalTarget>();
let enabled = true;

/** Turns in-process calls on or off for this process (config: MLMESH_LOCAL_CALLS). */
export function setLocalCallsEnabled(on: boolean): void {
  enabled = on;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "0.0.0.0", "[::1]", "[::]", "::1"]);

/** "http://localhost:7001/" and "127.0.0.1:7001" name the same in-process server. */
function authorityKey(url: string): string {
  const bare = url.replace(/^https?:\/\//, "").replace(/\/+$/, "");
  const colon = bare.lastIndexOf(":");
  const host = colon > 0 ? bare.slice(0, colon) : bare;
  const port = colon > 0 ? bare.slice(colon + 1) : "";
  return `${LOOPBACK.has(host) ? "127.0.0.1" : host}:${port}`;
}

/**
 * Makes a started server's services callable in-process at `grpcUrl`. Returns the function
 * that withdraws them (called when the server starts draining).
 */
export function registerLocalServices(grpcUrl: string, bindings: readonly LocalBinding[], observe: CallObserver, shutdownSignal: AbortSignal): () => void {
  const authority = authorityKey(grpcUrl);
  const keys: string[] = [];
  const inflight = new Set<LocalCall>();
  shutdownSignal.addEventListener(
    "abort",
    () => {
      for (const c of [...inflight]) c.settle(new ConnectError("server is shutting down", Code.Unavailable));
    },
    { once: true },
  );
  for (const b of bindings) {
    const key = `${authority}/${b.service.typeName}`;
    targets.set(key, { service: b.service, impl: b.impl, observe, shutdownSignal, inflight });
    keys.push(key);
  }
  return () => {
    for (const k of keys) targets.delete(k);
  };
}

/** The key a client computes once for `service` at `baseUrl`. */
export function localKey(baseUrl: string, service: DescService): string {
  return `${authorityKey(baseUrl)}/${service.typeName}`;
}

/** The in-process server behind `key`, if this process hosts it (and local calls are on). */
export function localTarget(key: string): LocalTarget | undefined {
  if (!enabled || targets.size === 0) return undefined;
  return targets.get(key);
}

/** The parent of an in-process call made outside any trace: the callee starts a root. */
const NO_PARENT = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * One unary call to an in-process handler. `headers` are the metadata a network call would
 * carry (authorization, ...) except trace context: `parent` is the caller's span itself
 * (its CLIENT span, or its active span when nothing is recorded). `deadline` is epoch ms.
 * Resolves with a complete message of the method's output type.
 */
export function callLocal(target: LocalTarget, method: DescMethod, request: unknown, headers: Record<string, string>, deadline: number, parent: Span | undefined): Promise<unknown> {
  const handler = target.impl[method.localName];
  const timeoutMs = deadline - Date.now();
  const call = target.observe(target.service.typeName, method.name, { get: (k) => headers[k] }, timeoutMs, parent ?? NO_PARENT);
  if (call.rejected) return Promise.reject(call.finish(call.rejected));
  if (!handler) return Promise.reject(call.finish(new ConnectError(`${target.service.typeName}/${method.name} is not implemented`, Code.Unimplemented)));
  // Protocol "local": handlers then answer with messages, never pre-encoded bytes.
  const hctx = new LightHandlerContext(target.service, method, "local", () => Object.entries(headers), deadline);
  if (call.principal) hctx.values.set(PRINCIPAL_VALUE, call.principal);
  const input = method.input as DescMessage;
  let req: unknown;
  try {
    req = isMessage(request, input) ? request : isPreEncoded(request) ? fromBinary(input, request.bytes) : create(input, request as never);
  } catch (err) {
    return Promise.reject(call.finish(new ConnectError(`cannot decode the ${input.typeName} request: ${(err as Error).message}`, Code.InvalidArgument)));
  }
  return new Promise((resolve, reject) => {
    const lc = new LocalCall(target, method, call, hctx, timeoutMs, resolve, reject);
    if (target.shutdownSignal.aborted) return lc.settle(new ConnectError("server is shutting down", Code.Unavailable));
    context.with(call.ctx, () => {
      try {
        Promise.resolve(handler(req, hctx)).then(
          (res) => lc.answered(res),
          (err) => lc.settle(err),
        );
      } catch (err) {
        lc.settle(err);
      }
    });
  });
}

/**
 * One in-process call until it settles: answered, failed, past its deadline or ended by the
 * server's shutdown, whichever comes first. A class, not closures: nothing is allocated per
 * call for the timer and shutdown paths (and tsx's keepNames wraps every named closure).
 */
class LocalCall {
  private settled = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly target: LocalTarget,
    private readonly method: DescMethod,
    private readonly call: ObservedCall,
    private readonly hctx: LightHandlerContext,
    readonly timeoutMs: number,
    private readonly resolve: (v: unknown) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    this.timer = setTimeout(localCallTimedOut, Math.max(0, timeoutMs), this);
    target.inflight.add(this);
  }

  answered(res: unknown): void {
    if (isPreEncoded(res)) return this.settle(new ConnectError("handler answered pre-encoded bytes to a local call", Code.Internal));
    const output = this.method.output as DescMessage;
    this.settle(undefined, isMessage(res, output) ? res : create(output, res as never));
  }

  settle(err: unknown, res?: unknown): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.target.inflight.delete(this);
    if (err !== undefined) {
      const mapped = this.call.finish(err) ?? err;
      this.hctx.abort(mapped);
      this.reject(mapped);
      return;
    }
    this.call.finish();
    this.resolve(res);
  }

  timedOut(): void {
    this.settle(new ConnectError(`deadline exceeded after ${Math.round(this.timeoutMs)} ms (${this.hctx.url.slice(1)})`, Code.DeadlineExceeded));
  }
}

function localCallTimedOut(lc: LocalCall): void {
  lc.timedOut();
}
