// Typed clients for calling mlmesh services (and any gRPC service) from inside the mesh, on
// the node:http2 transport of lib/h2-grpc-client.ts (one session per address, shared by every
// service client at that address).
// Every call carries what is left of the caller's deadline (or a default) and a CLIENT span
// whose context travels in the `traceparent` metadata, so the callee's SERVER span is its
// child. Errors surface as ConnectError with the gRPC code, as on the server side.
//
// Credentials: with TLS material the session is mTLS (our certificate, only the mesh CA
// trusted). A call made while serving a request presents the service token and names the
// caller in x-mlmesh-on-behalf-of (so the callee's audit log names the user), or, with no
// service token configured, forwards the caller's own authorization; a call made outside a
// request (CLI, background jobs) presents the client token, else the service token.

import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { codeName } from "./errors.js";
import { encodePrincipalHeader, ON_BEHALF_OF_HEADER } from "./auth/guard.js";
import { H2Channel, MessageQueue, sendOnly, startCall, type ActiveCall } from "./h2-grpc-client.js";
import { callLocal, localKey, localTarget } from "./local-calls.js";
import { currentPrincipal } from "./principal.js";
import type { TlsMaterial } from "./tls.js";
import { fastRequestEncoder } from "./fast-request-encoders.js";
import { isPreEncoded } from "./pre-encoded.js";
import { ensureContextManager, getTracer, injectTraceContext, remainingMs, spansRecorded } from "./telemetry.js";

export interface ClientOptions {
  /** Deadline for calls made outside any request (CLI, background jobs). Default 30 s. */
  readonly defaultTimeoutMs?: number;
  readonly maxMessageBytes?: number;
  /** Metadata added to every call. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** CA, certificate and key: connect with mTLS. */
  readonly tls?: TlsMaterial;
  /** Bearer credentials to present (see the header comment). */
  readonly auth?: ClientAuth;
}

/** Complete authorization header values ("Bearer ..."), built once. */
export interface ClientAuth {
  /** Presented outside a request: the CLI's MLMESH_TOKEN. */
  readonly client?: string;
  /** The mesh's service token: presented inside a request (on behalf of the caller) and by background work. */
  readonly service?: string;
}

export interface CallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  readonly headers?: Readonly<Record<string, string>>;
}

const channels = new Map<string, H2Channel>();
const tlsIds = new WeakMap<TlsMaterial, number>();
let nextTlsId = 1;

/** Channels are shared per (target, credentials): different certificates never share one. */
function tlsId(m: TlsMaterial): number {
  let id = tlsIds.get(m);
  if (id === undefined) tlsIds.set(m, (id = nextTlsId++));
  return id;
}

function channelFor(baseUrl: string, maxMessageBytes: number | undefined, tls: TlsMaterial | undefined): H2Channel {
  const target = baseUrl.replace(/^https?:\/\//, "").replace(/\/+$/, "");
  const max = maxMessageBytes ?? 16 * 1024 * 1024;
  const key = `${tls ? `tls${tlsId(tls)} ` : ""}${target} ${max}`;
  let ch = channels.get(key);
  if (!ch) {
    ch = new H2Channel(target, { tls, maxReceiveBytes: max, maxSendBytes: max });
    channels.set(key, ch);
  }
  return ch;
}

/** Close every channel (process shutdown, tests). */
export function closeAllClients(): void {
  for (const ch of channels.values()) ch.close();
  channels.clear();
}

function toConnectError(err: unknown): ConnectError {
  return err instanceof ConnectError ? err : ConnectError.from(err);
}

function serializer(schema: DescMessage) {
  // A request made with preEncoded() (lib/pre-encoded.ts) by a hand-written batch encoder
  // (e.g. encodeLogOutcomesRequest) is sent as it is; a few bulk requests have a hand-written
  // encoder of their own (lib/fast-request-encoders.ts).
  const fast = fastRequestEncoder(schema.typeName);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return (value: any): Uint8Array => {
    if (isPreEncoded(value)) return value.bytes;
    return fast?.(value) ?? toBinary(schema, isMessage(value, schema) ? value : create(schema, value));
  };
}

function deserializer(schema: DescMessage) {
  return (bytes: Uint8Array) => {
    try {
      return fromBinary(schema, bytes);
    } catch (err) {
      throw new ConnectError(`cannot decode the ${schema.typeName} response: ${(err as Error).message}`, Code.Internal);
    }
  };
}

export function createServiceClient<T extends DescService>(service: T, baseUrl: string, opts: ClientOptions = {}): Client<T> {
  ensureContextManager();
  const channel = channelFor(baseUrl, opts.maxMessageBytes, opts.tls);
  const auth = opts.auth;
  const tracer = getTracer("mlmesh.rpc");
  const fallback = opts.defaultTimeoutMs ?? 30_000;
  const fixed: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.metadata ?? {})) fixed[k.toLowerCase()] = v;
  const out: Record<string, unknown> = {};
  const localAt = localKey(baseUrl, service);

  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const spanName = path.slice(1);
    const spanAttributes = { "rpc.system": "grpc", "rpc.service": service.typeName, "rpc.method": method.name };
    const serialize = serializer(method.input);
    const deserialize = deserializer(method.output);

    // Shared set-up of one call: deadline, span, metadata. Throws DEADLINE_EXCEEDED early.
    const begin = (callOpts: CallOptions | undefined) => {
      const { md, deadline } = metadata(callOpts);
      const span = tracer.startSpan(spanName, { kind: SpanKind.CLIENT, attributes: spanAttributes });
      injectTraceContext({ get: (k) => md[k], set: (k, v) => (md[k] = v) }, trace.setSpan(context.active(), span));
      return { span, md, deadline };
    };
    const metadata = (callOpts: CallOptions | undefined) => {
      const left = remainingMs();
      let timeoutMs = callOpts?.timeoutMs ?? left ?? fallback;
      if (left !== undefined) timeoutMs = Math.min(timeoutMs, left);
      if (timeoutMs <= 0) throw new ConnectError(`deadline exceeded before calling ${spanName}`, Code.DeadlineExceeded);
      const md: Record<string, string> = {};
      for (const k in fixed) md[k] = fixed[k]!;
      if (auth) setAuthorization(md, auth);
      const extra = callOpts?.headers;
      if (extra) for (const k in extra) md[k.toLowerCase()] = extra[k]!;
      return { md, deadline: Date.now() + timeoutMs };
    };
    /**
     * An in-process call hands the callee its parent span as an object: no traceparent to
     * format and parse. With nothing recorded (ids-only tracing) there is no CLIENT span
     * either, as nobody would ever see it: the callee's SERVER span is the caller's child.
     */
    const beginLocal = (callOpts: CallOptions | undefined) => {
      const { md, deadline } = metadata(callOpts);
      const active = context.active();
      const span = spansRecorded() ? tracer.startSpan(spanName, { kind: SpanKind.CLIENT, attributes: spanAttributes }, active) : undefined;
      return { span, parent: span ?? trace.getSpan(active), md, deadline };
    };
    const end = (span: Span | undefined, err?: unknown): ConnectError | undefined => {
      const ce = err === undefined ? undefined : toConnectError(err);
      if (span === undefined) return ce;
      const code = ce?.code ?? 0;
      span.setAttribute("rpc.grpc.status_code", code);
      if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: codeName(code) });
      span.end();
      return ce;
    };
    const onAbort = (signal: AbortSignal | undefined, call: ActiveCall) => {
      if (!signal) return;
      if (signal.aborted) call.cancel();
      else signal.addEventListener("abort", () => call.cancel(), { once: true });
    };
    /** Starts a call whose response is exactly one message (unary, client-streaming). */
    const singleResponse = (callOpts: CallOptions | undefined, resolve: (v: unknown) => void, reject: (e: unknown) => void): ActiveCall | undefined => {
      let b;
      try {
        b = begin(callOpts);
      } catch (err) {
        reject(err);
        return undefined;
      }
      const { span, md, deadline } = b;
      let response: Uint8Array | undefined;
      let extra = false;
      const call = startCall(channel, path, md, deadline, {
        onMessage(bytes) {
          if (response) extra = true;
          response = bytes;
        },
        onEnd(err) {
          if (!err && (response === undefined || extra)) {
            err = new ConnectError(`${spanName} answered OK with ${extra ? "more than one message" : "no message"}`, response === undefined ? Code.Unimplemented : Code.Internal);
          }
          if (err) return reject(end(span, err));
          try {
            const msg = deserialize(response!);
            end(span);
            resolve(msg);
          } catch (e) {
            reject(end(span, e));
          }
        },
      });
      onAbort(callOpts?.signal, call);
      return call;
    };
    /** Starts a call whose responses are a stream (server-streaming, bidi). */
    const streamResponse = (callOpts: CallOptions | undefined) => {
      const { span, md, deadline } = begin(callOpts);
      const queue = new MessageQueue(deserialize);
      let failure: ConnectError | undefined;
      const call = startCall(channel, path, md, deadline, {
        onMessage: (bytes) => {
          try {
            queue.onMessage(bytes);
          } catch (e) {
            failure = toConnectError(e);
            call.cancel(failure.code, failure.rawMessage);
          }
        },
        onEnd: (err) => queue.onEnd(failure ?? err),
      });
      queue.call = call;
      onAbort(callOpts?.signal, call);
      const messages = (async function* () {
        try {
          yield* queue.drain();
          end(span);
        } catch (err) {
          throw end(span, err);
        }
      })();
      return { call, messages };
    };
    /** Feeds requests from `reqs` with backpressure; half-closes at their end unless cancelled. */
    const pump = (call: ActiveCall, reqs: AsyncIterable<unknown>, signal: AbortSignal | undefined, fail: (e: unknown) => void) => {
      void (async () => {
        try {
          for await (const r of reqs) {
            if (signal?.aborted) return;
            await call.write(serialize(r));
          }
          // Never half-close a cancelled call: the server would see a complete upload.
          if (!signal?.aborted) call.end();
        } catch (err) {
          const ce = toConnectError(err);
          call.cancel(ce.code === Code.Unknown ? Code.Canceled : ce.code, `request stream failed: ${ce.rawMessage}`);
          fail(ce);
        }
      })();
    };

    out[method.localName] = callFor(method, {
      unary: (req: unknown, callOpts?: CallOptions) => {
        // A service hosted by this process is called in-process (lib/local-calls.ts).
        const local = localTarget(localAt);
        if (local) {
          let b;
          try {
            b = beginLocal(callOpts);
          } catch (err) {
            return Promise.reject(err);
          }
          const { span, parent, md, deadline } = b;
          return callLocal(local, method, req, md, deadline, parent).then(
            (res) => {
              end(span);
              return res;
            },
            (err) => {
              throw end(span, err);
            },
          );
        }
        return new Promise((resolve, reject) => {
          let bytes: Uint8Array;
          try {
            bytes = serialize(req);
          } catch (err) {
            return reject(new ConnectError(`cannot encode the ${method.input.typeName} request: ${(err as Error).message}`, Code.InvalidArgument));
          }
          const call = singleResponse(callOpts, resolve, reject);
          if (call) sendOnly(call, bytes);
        });
      },
      // Streaming calls start on the first read, as a generator does (an expired deadline
      // surfaces there, not at the call site).
      serverStream: (req: unknown, callOpts?: CallOptions) =>
        (async function* () {
          const { call, messages } = streamResponse(callOpts);
          sendOnly(call, serialize(req));
          yield* messages;
        })(),
      clientStream: (reqs: AsyncIterable<unknown>, callOpts?: CallOptions) =>
        new Promise((resolve, reject) => {
          const call = singleResponse(callOpts, resolve, reject);
          if (call) pump(call, reqs, callOpts?.signal, reject);
        }),
      bidiStream: (reqs: AsyncIterable<unknown>, callOpts?: CallOptions) =>
        (async function* () {
          const { call, messages } = streamResponse(callOpts);
          pump(call, reqs, callOpts?.signal, () => undefined);
          yield* messages;
        })(),
    });
  }
  return out as Client<T>;
}

function setAuthorization(md: Record<string, string>, auth: ClientAuth): void {
  const caller = currentPrincipal();
  if (caller && caller.authorization !== undefined) {
    if (auth.service) {
      md.authorization = auth.service;
      md[ON_BEHALF_OF_HEADER] = encodePrincipalHeader(caller.name);
    } else {
      md.authorization = caller.authorization;
    }
    return;
  }
  const header = auth.client ?? auth.service;
  if (header) md.authorization = header;
}

function callFor(
  method: DescMethod,
  kinds: {
    unary: (req: unknown, o?: CallOptions) => unknown;
    serverStream: (req: unknown, o?: CallOptions) => unknown;
    clientStream: (reqs: AsyncIterable<unknown>, o?: CallOptions) => unknown;
    bidiStream: (reqs: AsyncIterable<unknown>, o?: CallOptions) => unknown;
  },
) {
  switch (method.methodKind) {
    case "unary":
      return kinds.unary;
    case "server_streaming":
      return kinds.serverStream;
    case "client_streaming":
      return kinds.clientStream;
    case "bidi_streaming":
      return kinds.bidiStream;
  }
}
