// Typed clients for calling mlmesh services (and any gRPC service) from inside the mesh, on
// @grpc/grpc-js channels (one per address, shared by every service client at that address).
// Every call carries what is left of the caller's deadline (or a default) and a CLIENT span
// whose context travels in the `traceparent` metadata, so the callee's SERVER span is its
// child. Errors surface as ConnectError with the gRPC code, as on the server side.
//
// Credentials: with TLS material the channel is mTLS (our certificate, only the mesh CA
// trusted). A call made while serving a request presents the service token and names the
// caller in x-mlmesh-on-behalf-of (so the callee's audit log names the user), or, with no
// service token configured, forwards the caller's own authorization; a call made outside a
// request (CLI, background jobs) presents the client token, else the service token.

import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { codeName } from "./errors.js";
import { encodePrincipalHeader, ON_BEHALF_OF_HEADER } from "./auth/guard.js";
import { currentPrincipal } from "./principal.js";
import { grpcChannelCredentials, type TlsMaterial } from "./tls.js";
import { ensureContextManager, getTracer, injectTraceContext, remainingMs } from "./telemetry.js";

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

const channels = new Map<string, grpc.Client>();
const tlsIds = new WeakMap<TlsMaterial, number>();
let nextTlsId = 1;

/** Channels are shared per (target, credentials): different certificates never share one. */
function tlsId(m: TlsMaterial): number {
  let id = tlsIds.get(m);
  if (id === undefined) tlsIds.set(m, (id = nextTlsId++));
  return id;
}

function channelFor(baseUrl: string, maxMessageBytes: number | undefined, tls: TlsMaterial | undefined): grpc.Client {
  const target = baseUrl.replace(/^https?:\/\//, "").replace(/\/+$/, "");
  const key = tls ? `tls${tlsId(tls)} ${target}` : target;
  let ch = channels.get(key);
  if (!ch) {
    ch = new grpc.Client(target, tls ? grpcChannelCredentials(tls) : grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": maxMessageBytes ?? 16 * 1024 * 1024,
      "grpc.max_send_message_length": maxMessageBytes ?? 16 * 1024 * 1024,
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.keepalive_permit_without_calls": 1,
      // Reconnect fast after a peer restarts: the mesh's services come and go.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 2_000,
    });
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
  if (err instanceof ConnectError) return err;
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e?.code === "number") {
    const ce = new ConnectError(e.details ?? e.message ?? "", e.code as number as Code);
    const bin = e.metadata?.get("grpc-status-details-bin")[0];
    if (bin instanceof Buffer) ce.details.push(...decodeStatusDetails(bin));
    return ce;
  }
  return ConnectError.from(err);
}

/** The `details` (google.protobuf.Any) of a serialized google.rpc.Status, as connect's incoming details. */
function decodeStatusDetails(bytes: Uint8Array): Array<{ type: string; value: Uint8Array }> {
  const out: Array<{ type: string; value: Uint8Array }> = [];
  try {
    const r = new BinaryReader(bytes);
    while (r.pos < r.len) {
      const [field, wire] = r.tag();
      if (field !== 3) {
        r.skip(wire);
        continue;
      }
      const any = new BinaryReader(r.bytes());
      let type = "";
      let value: Uint8Array = new Uint8Array();
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (f === 1) type = any.string().replace(/^.*\//, "");
        else if (f === 2) value = any.bytes();
        else any.skip(w);
      }
      out.push({ type, value });
    }
  } catch {
    // Malformed details never hide the status itself.
  }
  return out;
}

function serializer(schema: DescMessage) {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return (value: any) => Buffer.from(toBinary(schema, isMessage(value, schema) ? value : create(schema, value)));
}

function deserializer(schema: DescMessage) {
  return (bytes: Buffer) => fromBinary(schema, bytes);
}

/**
 * A typed gRPC client for `service` at `baseUrl` (http://host:port). Calls made while
 * serving a request inherit its remaining deadline; a call whose deadline has already
 * passed fails with DEADLINE_EXCEEDED without touching the network.
 */
export function createServiceClient<T extends DescService>(service: T, baseUrl: string, opts: ClientOptions = {}): Client<T> {
  ensureContextManager();
  const channel = channelFor(baseUrl, opts.maxMessageBytes, opts.tls);
  const auth = opts.auth;
  const tracer = getTracer("mlmesh.rpc");
  const fallback = opts.defaultTimeoutMs ?? 30_000;
  const out: Record<string, unknown> = {};

  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const serialize = serializer(method.input);
    const deserialize = deserializer(method.output);

    // Shared set-up of one call: deadline, span, metadata. Throws DEADLINE_EXCEEDED early.
    const begin = (callOpts: CallOptions = {}) => {
      const left = remainingMs();
      let timeoutMs = callOpts.timeoutMs ?? left ?? fallback;
      if (left !== undefined) timeoutMs = Math.min(timeoutMs, left);
      if (timeoutMs <= 0) throw new ConnectError(`deadline exceeded before calling ${service.typeName}/${method.name}`, Code.DeadlineExceeded);
      const span = tracer.startSpan(path.slice(1), {
        kind: SpanKind.CLIENT,
        attributes: { "rpc.system": "grpc", "rpc.service": service.typeName, "rpc.method": method.name },
      });
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
      if (auth) setAuthorization(md, auth);
      for (const [k, v] of Object.entries(callOpts.headers ?? {})) md.set(k, v);
      injectTraceContext({ get: (k) => md.get(k)[0] as string | undefined, set: (k, v) => md.set(k, v) }, trace.setSpan(context.active(), span));
      return { span, md, options: { deadline: Date.now() + timeoutMs } as grpc.CallOptions };
    };
    const end = (span: Span, err?: unknown): ConnectError | undefined => {
      const ce = err === undefined ? undefined : toConnectError(err);
      const code = ce?.code ?? 0;
      span.setAttribute("rpc.grpc.status_code", code);
      if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: codeName(code) });
      span.end();
      return ce;
    };
    const onAbort = (signal: AbortSignal | undefined, call: { cancel(): void }) => {
      if (signal) signal.addEventListener("abort", () => call.cancel(), { once: true });
    };

    out[method.localName] = callFor(method, {
      unary: (req: unknown, callOpts?: CallOptions) =>
        new Promise((resolve, reject) => {
          let b;
          try {
            b = begin(callOpts);
          } catch (err) {
            return reject(err);
          }
          const { span, md, options } = b;
          const call = channel.makeUnaryRequest(path, serialize, deserialize, req, md, options, (err, res) => {
            const ce = end(span, err ?? undefined);
            if (ce) reject(ce);
            else resolve(res);
          });
          onAbort(callOpts?.signal, call);
        }),
      serverStream: (req: unknown, callOpts?: CallOptions) =>
        (async function* () {
          const { span, md, options } = begin(callOpts);
          const call = channel.makeServerStreamRequest(path, serialize, deserialize, req, md, options);
          onAbort(callOpts?.signal, call);
          try {
            for await (const msg of call) yield msg;
            end(span);
          } catch (err) {
            throw end(span, err);
          }
        })(),
      clientStream: (reqs: AsyncIterable<unknown>, callOpts?: CallOptions) =>
        new Promise((resolve, reject) => {
          let b;
          try {
            b = begin(callOpts);
          } catch (err) {
            return reject(err);
          }
          const { span, md, options } = b;
          const call = channel.makeClientStreamRequest(path, serialize, deserialize, md, options, (err, res) => {
            const ce = end(span, err ?? undefined);
            if (ce) reject(ce);
            else resolve(res);
          });
          onAbort(callOpts?.signal, call);
          void (async () => {
            try {
              for await (const r of reqs) {
                if (callOpts?.signal?.aborted) return;
                if (!call.write(r)) await new Promise((ok) => call.once("drain", ok));
              }
              // Never half-close a cancelled call: the server would see a complete upload.
              if (!callOpts?.signal?.aborted) call.end();
            } catch (err) {
              call.cancel();
              reject(toConnectError(err));
            }
          })();
        }),
      bidiStream: (reqs: AsyncIterable<unknown>, callOpts?: CallOptions) =>
        (async function* () {
          const { span, md, options } = begin(callOpts);
          const call = channel.makeBidiStreamRequest(path, serialize, deserialize, md, options);
          onAbort(callOpts?.signal, call);
          void (async () => {
            for await (const r of reqs) {
              if (!call.write(r)) await new Promise((ok) => call.once("drain", ok));
            }
            call.end();
          })().catch(() => call.cancel());
          try {
            for await (const msg of call) yield msg;
            end(span);
          } catch (err) {
            throw end(span, err);
          }
        })(),
    });
  }
  return out as Client<T>;
}

function setAuthorization(md: grpc.Metadata, auth: ClientAuth): void {
  const caller = currentPrincipal();
  if (caller && caller.authorization !== undefined) {
    if (auth.service) {
      md.set("authorization", auth.service);
      md.set(ON_BEHALF_OF_HEADER, encodePrincipalHeader(caller.name));
    } else {
      md.set("authorization", caller.authorization);
    }
    return;
  }
  const header = auth.client ?? auth.service;
  if (header) md.set("authorization", header);
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
