// gRPC over h2c is served by @grpc/grpc-js: measured in bench/rpc-overhead.ts, its server
// answers a unary call in about a fifth of connect-node's time on HTTP/2. This adapter runs
// the same connect-style handler maps (ServiceImpl) on it, with the same observer (span,
// deadline, metrics, error mapping) as the HTTP/1.1 side, so both ports behave alike.

import { once } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { encodeStatusDetails } from "./status-details.js";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import { context } from "@opentelemetry/api";
import { observeStream, type CallObserver, type ObservedCall } from "./rpc-observe.js";
import { PRINCIPAL_VALUE } from "./principal.js";
import { ValidationError } from "./errors.js";
import { isPreEncoded } from "./pre-encoded.js";

/** A registered service: its descriptor and the (complete) handler map. */
export interface GrpcServiceBinding {
  readonly service: DescService;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly impl: Record<string, (...args: any[]) => any>;
}

const identity = (b: Buffer) => b;

/** How long the end of a client stream waits for a trailing cancellation (see requests()). */
const CANCEL_GRACE_MS = 100;

/** HandlerContext for a grpc-js call; request headers are materialised only when read. */
class GrpcJsHandlerContext implements HandlerContext {
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  readonly responseHeader = new Headers();
  readonly responseTrailer = new Headers();
  readonly values: ContextValues = createContextValues();
  private headers: Headers | undefined;

  constructor(
    readonly service: DescService,
    readonly method: DescMethod,
    readonly signal: AbortSignal,
    private readonly deadline: number | undefined,
    private readonly metadata: grpc.Metadata,
    readonly url: string,
  ) {}

  timeoutMs(): number | undefined {
    return this.deadline === undefined ? undefined : this.deadline - Date.now();
  }

  get requestHeader(): Headers {
    if (!this.headers) {
      this.headers = new Headers();
      for (const [k, v] of Object.entries(this.metadata.getMap())) {
        if (typeof v === "string") this.headers.set(k, v);
      }
    }
    return this.headers;
  }
}

function metadataGetter(md: grpc.Metadata): { get(key: string): string | undefined } {
  return {
    get(key) {
      const v = md.get(key)[0];
      return typeof v === "string" ? v : undefined;
    },
  };
}

function deadlineOf(call: { getDeadline(): grpc.Deadline }): number | undefined {
  const d = call.getDeadline();
  if (d === Infinity) return undefined;
  return d instanceof Date ? d.getTime() : Number(d);
}

function decode(schema: DescMessage, bytes: Buffer) {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ValidationError("request", `is not a valid ${schema.typeName} message (${(err as Error).message})`);
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function encode(schema: DescMessage, value: any): Buffer {
  if (isPreEncoded(value)) return Buffer.from(value.bytes.buffer, value.bytes.byteOffset, value.bytes.byteLength);
  const message = isMessage(value, schema) ? value : create(schema, value);
  return Buffer.from(toBinary(schema, message));
}

/**
 * The grpc-js status for an error. Structured details (e.g. PromotionRejected) travel as
 * `grpc-status-details-bin`, a serialized google.rpc.Status, as gRPC's richer error model
 * specifies, so grpcio's rpc_status and connect clients can read them.
 */
function toStatus(err: ConnectError): Partial<grpc.StatusObject> {
  const status: Partial<grpc.StatusObject> = { code: err.code as number as grpc.status, details: err.rawMessage };
  // Error metadata (retry-after on RESOURCE_EXHAUSTED, ...) travels as trailers.
  let trailers: grpc.Metadata | undefined;
  err.metadata.forEach((v, k) => {
    trailers ??= new grpc.Metadata();
    trailers.set(k, v);
  });
  if (trailers) status.metadata = trailers;
  const details = encodeStatusDetails(err);
  if (details) {
    const md = trailers ?? new grpc.Metadata();
    md.set("grpc-status-details-bin", Buffer.from(details));
    status.metadata = md;
  }
  return status;
}

export function createGrpcJsServer(opts: {
  bindings: readonly GrpcServiceBinding[];
  observe: CallObserver;
  maxMessageBytes: number;
  shutdownSignal: AbortSignal;
}): grpc.Server {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.maxMessageBytes,
    "grpc.max_send_message_length": opts.maxMessageBytes,
    "grpc.keepalive_permit_without_calls": 1,
  });
  for (const { service, impl } of opts.bindings) {
    const definition: grpc.ServiceDefinition = {};
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const path = `/${service.typeName}/${method.name}`;
      const clientStreams = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
      const serverStreams = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
      (definition as Record<string, grpc.MethodDefinition<Buffer, Buffer>>)[method.name] = {
        path,
        requestStream: clientStreams,
        responseStream: serverStreams,
        // Bytes in, bytes out: decoding happens in the handler, so a malformed message
        // becomes INVALID_ARGUMENT rather than grpc-js's INTERNAL.
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      };
      const fn = impl[method.localName]!;
      const start = (call: grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerReadableStream<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>): { obs: ObservedCall; ctx: GrpcJsHandlerContext } => {
        const deadline = deadlineOf(call);
        const obs = opts.observe(service.typeName, method.name, metadataGetter(call.metadata), deadline === undefined ? undefined : deadline - Date.now());
        const abort = new AbortController();
        (call as NodeJS.EventEmitter).once("cancelled", () => abort.abort(new ConnectError("the client cancelled the call", Code.Canceled)));
        const signal = AbortSignal.any([abort.signal, opts.shutdownSignal]);
        const ctx = new GrpcJsHandlerContext(service, method, signal, deadline, call.metadata, path);
        if (obs.principal) ctx.values.set(PRINCIPAL_VALUE, obs.principal);
        return { obs, ctx };
      };
      const requests = (call: grpc.ServerReadableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>) =>
        (async function* () {
          for await (const chunk of call as AsyncIterable<Buffer>) yield decode(method.input, chunk);
          // A client that cancels (RST_STREAM) also ends the request stream, and grpc-js
          // reports the cancellation only afterwards: a handler must not mistake that for
          // the end of the upload and commit it.
          // grpc-js's client cancel half-closes first and resets after, so the reset can
          // trail the end of the stream: give it a moment to land before the handler commits.
          if (!requestStreamAborted(call)) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(done, CANCEL_GRACE_MS);
              function done() {
                clearTimeout(timer);
                (call as NodeJS.EventEmitter).off("cancelled", done);
                resolve();
              }
              (call as NodeJS.EventEmitter).once("cancelled", done);
            });
          }
          if (requestStreamAborted(call)) throw new ConnectError("the client cancelled the call", Code.Canceled);
        })();

      if (!clientStreams && !serverStreams) {
        handlers[method.name] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          const { obs, ctx } = start(call);
          if (obs.rejected) return callback(toStatus(obs.finish(obs.rejected)!));
          context
            .with(obs.ctx, async () => encode(method.output, await fn(decode(method.input, call.request), ctx)))
            .then(
              (bytes) => {
                obs.finish();
                callback(null, bytes);
              },
              (err) => callback(toStatus(obs.finish(err)!)),
            );
        };
      } else if (clientStreams && !serverStreams) {
        handlers[method.name] = (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          const { obs, ctx } = start(call);
          if (obs.rejected) return callback(toStatus(obs.finish(obs.rejected)!));
          context
            .with(obs.ctx, async () => encode(method.output, await fn(requests(call), ctx)))
            .then(
              (bytes) => {
                obs.finish();
                callback(null, bytes);
              },
              (err) => callback(toStatus(obs.finish(err)!)),
            );
        };
      } else {
        handlers[method.name] = (call: grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>) => {
          const { obs, ctx } = start(call);
          if (obs.rejected) {
            call.emit("error", toStatus(obs.finish(obs.rejected)!));
            return;
          }
          const source = context.with(obs.ctx, () =>
            fn(clientStreams ? requests(call as grpc.ServerDuplexStream<Buffer, Buffer>) : decode(method.input, (call as grpc.ServerWritableStream<Buffer, Buffer>).request), ctx),
          );
          void (async () => {
            try {
              for await (const msg of observeStream(source as AsyncIterable<unknown>, obs)) {
                if (!call.write(encode(method.output, msg))) await once(call, "drain");
              }
              call.end();
            } catch (err) {
              const mapped = err instanceof ConnectError ? err : new ConnectError(String(err), Code.Internal);
              call.emit("error", toStatus(mapped));
            }
          })();
        };
      }
    }
    server.addService(definition, handlers);
  }
  return server;
}

/**
 * Whether the HTTP/2 stream under a grpc-js call was reset by the client. grpc-js does not
 * expose it, so this walks its (stable since 1.10) call chain to the Node stream and reads
 * Node's public Http2Stream state; `cancelled` covers the case where grpc-js already knows.
 */
function requestStreamAborted(call: unknown): boolean {
  const c = call as { cancelled?: boolean; call?: unknown };
  if (c.cancelled) return true;
  let node = c.call as { stream?: { aborted?: boolean; destroyed?: boolean; rstCode?: number }; nextCall?: unknown } | undefined;
  for (let depth = 0; node && depth < 8; depth++) {
    if (node.stream) return Boolean(node.stream.aborted || node.stream.destroyed || (node.stream.rstCode ?? 0) !== 0);
    node = node.nextCall as typeof node;
  }
  return false;
}

/** Bind to host:port; with `credentials` (lib/tls.ts) the port speaks TLS, else h2c. */
export function bindGrpcServer(server: grpc.Server, host: string, port: number, credentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, credentials, (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
}
