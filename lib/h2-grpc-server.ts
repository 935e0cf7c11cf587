// gRPC served on node:http2 directly, without @grpc/grpc-js. bench/rpc-overhead.ts showed a
// bare node:http2 exchange of the same frames answering a unary call in a fraction of
// grpc-js's server time; this file keeps that floor while implementing what the mesh needs
// of the protocol: the four method kinds from the same connect-style handler maps
// (ServiceImpl) and the same observer (lib/rpc-observe.ts: span, deadline, metrics, error
// mapping, guard) as lib/grpc-server.ts, length-prefixed framing across DATA chunks,
// grpc-timeout, status trailers (percent-encoded message, details-bin), message size limits,
// identity encoding only, client cancellation, TLS/mTLS and a graceful drain.
//
// Hot path: one Call object per RPC holds all per-call state; the stream's listeners are
// shared module functions that find their Call through a symbol on the stream (no
// closures per call), the response header and OK trailer objects are shared constants, and
// Buffer.concat runs only when a message spans DATA chunks.

import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { encodeStatusDetails } from "./status-details.js";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import { context } from "@opentelemetry/api";
import { ValidationError } from "./errors.js";
import type { GrpcServiceBinding } from "./grpc-server.js";
import { isPreEncoded, wantsRawRequests } from "./pre-encoded.js";
import { PRINCIPAL_VALUE } from "./principal.js";
import { observeStream, requestTimeoutMs, type CallObserver, type ObservedCall } from "./rpc-observe.js";
import type { TlsMaterial } from "./tls.js";

export interface H2GrpcServerOptions {
  readonly bindings: readonly GrpcServiceBinding[];
  readonly observe: CallObserver;
  readonly maxMessageBytes: number;
  readonly shutdownSignal: AbortSignal;
  /** Serve TLS and require a client certificate signed by the CA (mTLS), as grpcServerCredentials does. */
  readonly tls?: TlsMaterial;
}

/** What lib/server.ts drives: bind, drain, stop. */
export interface H2GrpcServer {
  /** Listen on host:port (0: any free port); resolves with the bound port. */
  listen(host: string, port: number): Promise<number>;
  /** GOAWAY to every connection, no new connections; `done` once every call in flight has ended and the connections closed. */
  tryShutdown(done: () => void): void;
  /** Destroy every connection now (calls still running are reset). */
  forceShutdown(): void;
}

const enum Kind {
  Unary,
  ServerStreaming,
  ClientStreaming,
  Bidi,
}

interface MethodEntry {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly kind: Kind;
  readonly path: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly fn: (...args: any[]) => any;
  /** Unary or client-streaming handler marked by rawRequests (lib/pre-encoded.ts): gets request bytes, undecoded. */
  readonly raw: boolean;
}

const CALL = Symbol("mlmesh.h2grpc.call");
type CallStream = http2.ServerHttp2Stream & { [CALL]?: Call };

// Shared, never mutated: node copies header objects before handing them to nghttp2.
const RESPONSE_HEADERS: http2.OutgoingHttpHeaders = Object.freeze({ ":status": 200, "content-type": "application/grpc" });
const OK_TRAILERS: http2.OutgoingHttpHeaders = Object.freeze({ "grpc-status": "0" });
const TRAILERS_ONLY_OK: http2.OutgoingHttpHeaders = Object.freeze({ ":status": 200, "content-type": "application/grpc", "grpc-status": "0" });
const WAIT_FOR_TRAILERS: http2.ServerStreamResponseOptions = Object.freeze({ waitForTrailers: true });
const END_STREAM: http2.ServerStreamResponseOptions = Object.freeze({ endStream: true });

/** How many decoded-but-unread request messages a client stream buffers before pausing the socket read (HTTP/2 flow control then holds the client). */
const QUEUE_HIGH_WATER = 16;

/** Per-message header: compressed flag (1 byte) + length (4 bytes, big-endian). */
const FRAME_HEADER = 5;

/** One RPC: the stream, its observed call, the parser state and the handler context. */
class Call implements HandlerContext {
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  readonly values: ContextValues = createContextValues();
  readonly service: DescService;
  readonly method: DescMethod;
  readonly url: string;
  obs!: ObservedCall;
  /** Set once a status was sent (or the stream is gone): nothing more is written. */
  done = false;
  /** The client reset the stream (or the connection died) before the call ended. */
  cancelled = false;
  /** Trailers to send at wantTrailers; OK_TRAILERS unless an error ended a started response. */
  trailers: http2.OutgoingHttpHeaders = OK_TRAILERS;
  /** Unary and server-streaming: the one request message. */
  request: Buffer | undefined;
  requestCount = 0;
  queue: RequestQueue | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Absolute deadline (ms since epoch) from grpc-timeout, if the client sent one. */
  deadline: number | undefined;
  // Partial-frame state: the bytes of a message still arriving, and how many it needs.
  private parts: Buffer[] | undefined;
  private partBytes = 0;
  private need = 0;
  private controller: AbortController | undefined;
  private reqHeaders: Headers | undefined;
  private resHeader: Headers | undefined;
  private resTrailer: Headers | undefined;

  constructor(
    readonly server: ServerState,
    readonly entry: MethodEntry,
    readonly stream: CallStream,
    readonly headers: http2.IncomingHttpHeaders,
  ) {
    this.service = entry.service;
    this.method = entry.method;
    this.url = entry.path;
  }

  /** The header getter the observer and guard read. */
  get(key: string): string | undefined {
    const v = this.headers[key];
    return typeof v === "string" ? v : v?.[0];
  }

  timeoutMs(): number | undefined {
    return this.deadline === undefined ? undefined : this.deadline - Date.now();
  }

  // Materialised only when a handler asks: most never do.
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.server.shutdownSignal.aborted) this.controller.abort(this.server.shutdownSignal.reason);
      else if (this.cancelled) this.controller.abort(new ConnectError("the client cancelled the call", Code.Canceled));
    }
    return this.controller.signal;
  }

  abort(reason: ConnectError): void {
    if (this.controller) {
      if (!this.controller.signal.aborted) this.controller.abort(reason);
    } else {
      this.controller = new AbortController();
      this.controller.abort(reason);
    }
  }

  get requestHeader(): Headers {
    if (!this.reqHeaders) {
      this.reqHeaders = new Headers();
      for (const [k, v] of Object.entries(this.headers)) {
        if (k.charCodeAt(0) === 58 /* ":" */ || v === undefined) continue;
        this.reqHeaders.set(k, Array.isArray(v) ? v.join(", ") : v);
      }
    }
    return this.reqHeaders;
  }

  get responseHeader(): Headers {
    return (this.resHeader ??= new Headers());
  }

  get responseTrailer(): Headers {
    return (this.resTrailer ??= new Headers());
  }

  /** Split DATA chunks into gRPC messages; a message spanning chunks is concatenated once. */
  onData(chunk: Buffer): void {
    if (this.done) return;
    let data = chunk;
    if (this.parts) {
      this.parts.push(chunk);
      this.partBytes += chunk.length;
      if (this.partBytes < this.need) return;
      data = Buffer.concat(this.parts, this.partBytes);
      this.parts = undefined;
      this.partBytes = 0;
    }
    let off = 0;
    const max = this.server.maxMessageBytes;
    while (data.length - off >= FRAME_HEADER) {
      const flag = data[off]!;
      const len = data.readUInt32BE(off + 1);
      if (flag !== 0) {
        // The request carried no grpc-encoding (others were refused up front), so no message may be compressed.
        this.fail(new ConnectError(flag === 1 ? "compressed message received but the request declared no grpc-encoding" : `invalid message flag ${flag}`, Code.Internal));
        return;
      }
      if (len > max) {
        this.fail(new ConnectError(`received message larger than max (${len} vs. ${max})`, Code.ResourceExhausted));
        return;
      }
      if (data.length - off - FRAME_HEADER < len) break;
      this.message(data.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len));
      if (this.done) return;
      off += FRAME_HEADER + len;
    }
    if (off < data.length) {
      const rest = off === 0 ? data : data.subarray(off);
      this.parts = [rest];
      this.partBytes = rest.length;
      this.need = rest.length >= FRAME_HEADER ? FRAME_HEADER + rest.readUInt32BE(1) : FRAME_HEADER;
    }
  }

  private message(bytes: Buffer): void {
    this.requestCount++;
    if (this.queue) {
      this.queue.push(bytes);
      return;
    }
    if (this.requestCount > 1) {
      this.fail(new ConnectError(`received a second request message for ${this.entry.kind === Kind.Unary ? "unary" : "server-streaming"} method ${this.url}`, Code.Internal));
      return;
    }
    this.request = bytes;
  }

  /** End of the request stream (the client's END_STREAM). */
  onEnd(): void {
    if (this.done) return;
    if (this.parts) {
      this.fail(new ConnectError(`the request stream ended inside a message (${this.partBytes} bytes of a ${this.need}-byte frame)`, Code.Internal));
      return;
    }
    if (this.queue) {
      this.queue.end();
      return;
    }
    if (this.request === undefined) {
      this.fail(new ConnectError(`no request message for method ${this.url}`, Code.Internal));
      return;
    }
    if (this.entry.kind === Kind.Unary) void runUnary(this);
    else void runResponseStream(this);
  }

  /** The stream closed: before our status went out, that is a client cancel (RST_STREAM) or a lost connection. */
  onClose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.server.active.delete(this);
    if (this.done) return;
    this.done = true;
    this.cancelled = true;
    const reason = new ConnectError("the client cancelled the call", Code.Canceled);
    if (this.controller) this.abort(reason);
    this.queue?.fail(reason);
    // Recorded now, not when the handler notices: a stream handler blocked on its source
    // would otherwise hold the drain until the grace ends. Later finishes are no-ops.
    this.obs.finish(reason);
  }

  /** The handler was invoked (the observer's finish is then owed by its completion). */
  started = false;

  /** Refuse the call with `err` (not through a handler): record it and send the status. */
  fail(err: ConnectError): void {
    if (this.done) return;
    this.queue?.fail(err);
    // A handler already running: its outcome is moot, the status goes out now.
    if (this.started) this.abort(err);
    this.sendStatus(this.obs.finish(err) ?? err);
  }

  /** Send a final status (trailers-only when no response header went out yet). */
  sendStatus(err: ConnectError): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    const trailers = errorTrailers(err);
    if (!stream.headersSent) {
      trailers[":status"] = 200;
      trailers["content-type"] = "application/grpc";
      stream.respond(trailers, END_STREAM);
    } else {
      this.trailers = trailers;
      stream.end();
    }
  }
}

/** The request stream of a client-streaming or bidi call, as the handler's AsyncIterable; raw bytes are decoded as they are read, so a bad message fails the handler with INVALID_ARGUMENT. */
class RequestQueue implements AsyncIterableIterator<unknown> {
  private readonly items: Buffer[] = [];
  private head = 0;
  private ended = false;
  private error: ConnectError | undefined;
  private waiter: { resolve: (r: IteratorResult<unknown>) => void; reject: (e: unknown) => void } | undefined;
  private paused = false;

  constructor(private readonly call: Call) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<unknown> {
    return this;
  }

  push(bytes: Buffer): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      this.deliver(bytes, w.resolve, w.reject);
      return;
    }
    this.items.push(bytes);
    if (this.items.length - this.head >= QUEUE_HIGH_WATER && !this.paused) {
      this.paused = true;
      this.call.stream.pause();
    }
  }

  end(): void {
    // Node's client (and so grpc-js's) cancels with END_STREAM immediately followed by
    // RST_STREAM, and 'end' is emitted before the reset is read. The end of an upload is
    // therefore believed only after a short grace in which no reset arrived (uploads only:
    // unary calls never wait).
    setTimeout(endAfterGrace, END_GRACE_MS, this);
  }

  endNow(): void {
    this.ended = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      this.settleEnd(w.resolve, w.reject);
    }
  }

  fail(err: ConnectError): void {
    if (this.error) return;
    this.error = err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    }
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.error) return Promise.reject(this.error);
    if (this.head < this.items.length) {
      const bytes = this.items[this.head]!;
      this.items[this.head++] = EMPTY;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      }
      if (this.paused && this.items.length - this.head < QUEUE_HIGH_WATER / 2) {
        this.paused = false;
        this.call.stream.resume();
      }
      try {
        return Promise.resolve({ value: this.call.entry.raw ? bytes : decode(this.call.method.input, bytes), done: false });
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (this.ended) {
      return new Promise((resolve, reject) => this.settleEnd(resolve, reject));
    }
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  return(): Promise<IteratorResult<unknown>> {
    // The handler stopped reading: drop what is buffered and keep the socket flowing.
    this.items.length = 0;
    this.head = 0;
    if (this.paused) {
      this.paused = false;
      this.call.stream.resume();
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  private deliver(bytes: Buffer, resolve: (r: IteratorResult<unknown>) => void, reject: (e: unknown) => void): void {
    try {
      resolve({ value: this.call.entry.raw ? bytes : decode(this.call.method.input, bytes), done: false });
    } catch (err) {
      reject(err);
    }
  }

  private settleEnd(resolve: (r: IteratorResult<unknown>) => void, reject: (e: unknown) => void): void {
    // An END_STREAM followed at once by a reset (how grpc-js's client cancels) must not
    // read as a complete upload: a stream already reset says so here.
    const s = this.call.stream;
    if (this.error || this.call.cancelled || s.aborted || (s.rstCode !== undefined && s.rstCode !== 0)) {
      reject(this.error ?? new ConnectError("the client cancelled the call", Code.Canceled));
      return;
    }
    resolve({ value: undefined, done: true });
  }
}

const EMPTY = Buffer.alloc(0);

/** How long the end of a request stream waits for a trailing reset (see RequestQueue.end). */
const END_GRACE_MS = 20;

function endAfterGrace(queue: RequestQueue): void {
  queue.endNow();
}

interface ServerState {
  readonly maxMessageBytes: number;
  readonly shutdownSignal: AbortSignal;
  readonly active: Set<Call>;
}

function decode(schema: DescMessage, bytes: Uint8Array) {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ValidationError("request", `is not a valid ${schema.typeName} message (${(err as Error).message})`);
  }
}

/** One length-prefixed response message; RESOURCE_EXHAUSTED past the size limit. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function frame(call: Call, value: any): Buffer {
  const schema = call.method.output;
  const bytes = isPreEncoded(value) ? value.bytes : toBinary(schema, isMessage(value, schema) ? value : create(schema, value));
  if (bytes.length > call.server.maxMessageBytes) {
    throw new ConnectError(`response message larger than max (${bytes.length} vs. ${call.server.maxMessageBytes})`, Code.ResourceExhausted);
  }
  const out = Buffer.allocUnsafe(FRAME_HEADER + bytes.length);
  out[0] = 0;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, FRAME_HEADER);
  return out;
}

/** grpc-message: percent-encode everything outside printable ASCII, and '%' itself (gRPC over HTTP/2 spec). */
export function encodeGrpcMessage(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = "";
  for (const b of Buffer.from(message, "utf8")) {
    out += b < 0x20 || b > 0x7e || b === 0x25 ? `%${b < 16 ? "0" : ""}${b.toString(16).toUpperCase()}` : String.fromCharCode(b);
  }
  return out;
}

/** The status trailers of an error: code, message, its metadata, and google.rpc.Status details. */
function errorTrailers(err: ConnectError): http2.OutgoingHttpHeaders {
  const t: http2.OutgoingHttpHeaders = { "grpc-status": String(err.code as number) };
  if (err.rawMessage) t["grpc-message"] = encodeGrpcMessage(err.rawMessage);
  // Error metadata (retry-after on RESOURCE_EXHAUSTED, ...) travels as trailers.
  err.metadata.forEach((v, k) => {
    if (k.charCodeAt(0) !== 58 && !k.startsWith("grpc-") && k !== "content-type") t[k] = v;
  });
  const details = encodeStatusDetails(err);
  // Binary metadata travels base64-encoded; unpadded, as gRPC implementations send it.
  if (details) t["grpc-status-details-bin"] = Buffer.from(details).toString("base64").replace(/=+$/, "");
  return t;
}

function asConnectError(err: unknown): ConnectError {
  return err instanceof ConnectError ? err : new ConnectError(String(err), Code.Internal);
}

function invokeWithRequest(call: Call): unknown {
  return call.entry.fn(call.entry.raw ? call.request! : decode(call.method.input, call.request!), call);
}

function invokeWithQueue(call: Call): unknown {
  return call.entry.fn(call.queue, call);
}

async function runUnary(call: Call): Promise<void> {
  call.started = true;
  let body: Buffer;
  try {
    const res = await context.with(call.obs.ctx, call.entry.kind === Kind.Unary ? invokeWithRequest : invokeWithQueue, undefined, call);
    body = frame(call, res);
  } catch (err) {
    if (call.done) {
      call.obs.finish(call.cancelled ? new ConnectError("the client cancelled the call", Code.Canceled) : err);
      return;
    }
    call.sendStatus(call.obs.finish(err) ?? asConnectError(err));
    return;
  }
  if (call.done) {
    // Cancelled (or timed out, already recorded) while the handler ran.
    call.obs.finish(new ConnectError("the client cancelled the call", Code.Canceled));
    return;
  }
  call.obs.finish();
  call.done = true;
  if (call.timer) clearTimeout(call.timer);
  const stream = call.stream;
  if (stream.destroyed || stream.closed) return;
  stream.respond(RESPONSE_HEADERS, WAIT_FOR_TRAILERS);
  stream.end(body);
}

function waitDrain(stream: http2.ServerHttp2Stream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

/** Server-streaming and bidi: write each message the handler yields, then the status. */
async function runResponseStream(call: Call): Promise<void> {
  call.started = true;
  const stream = call.stream;
  let source: AsyncIterable<unknown>;
  try {
    source = context.with(call.obs.ctx, call.entry.kind === Kind.ServerStreaming ? invokeWithRequest : invokeWithQueue, undefined, call) as AsyncIterable<unknown>;
  } catch (err) {
    // A request that does not decode fails here, before any generator runs.
    if (!call.done) call.sendStatus(call.obs.finish(err) ?? asConnectError(err));
    else call.obs.finish(err);
    return;
  }
  try {
    for await (const msg of observeStream(source, call.obs)) {
      if (call.done) break;
      const out = frame(call, msg);
      if (!stream.headersSent) stream.respond(RESPONSE_HEADERS, WAIT_FOR_TRAILERS);
      if (!stream.write(out)) await waitDrain(stream);
    }
    if (call.done) return;
    call.done = true;
    if (call.timer) clearTimeout(call.timer);
    if (stream.destroyed || stream.closed) return;
    if (!stream.headersSent) stream.respond(TRAILERS_ONLY_OK, END_STREAM);
    else stream.end();
  } catch (err) {
    // observeStream has finished the observed call and thrown the mapped error.
    if (!call.done) call.sendStatus(asConnectError(err));
  }
}

// Shared stream listeners: `this` is the stream; its Call hangs off CALL.
function onStreamData(this: CallStream, chunk: Buffer): void {
  this[CALL]!.onData(chunk);
}
function onStreamEnd(this: CallStream): void {
  this[CALL]!.onEnd();
}
function onStreamClose(this: CallStream): void {
  this[CALL]!.onClose();
}
function onWantTrailers(this: CallStream): void {
  this.sendTrailers(this[CALL]!.trailers);
}
function ignoreError(): void {
  // Stream errors (resets, write after close) surface as 'close'; onClose handles them.
}
function onDeadline(call: Call): void {
  call.timer = undefined;
  if (call.done) return;
  const err = new ConnectError("deadline exceeded", Code.DeadlineExceeded);
  call.abort(err);
  call.fail(err);
}

function refuse(stream: http2.ServerHttp2Stream, code: Code, message: string, httpStatus = 200): void {
  stream.on("error", ignoreError);
  const t = errorTrailers(new ConnectError(message, code));
  t[":status"] = httpStatus;
  t["content-type"] = "application/grpc";
  if (code === Code.Unimplemented) t["grpc-accept-encoding"] = "identity";
  stream.respond(t, END_STREAM);
  stream.resume();
}

export function createH2GrpcServer(opts: H2GrpcServerOptions): H2GrpcServer {
  const methods = new Map<string, MethodEntry>();
  for (const { service, impl } of opts.bindings) {
    for (const method of service.methods) {
      const path = `/${service.typeName}/${method.name}`;
      const kind =
        method.methodKind === "unary" ? Kind.Unary : method.methodKind === "server_streaming" ? Kind.ServerStreaming : method.methodKind === "client_streaming" ? Kind.ClientStreaming : Kind.Bidi;
      const fn = impl[method.localName]!;
      methods.set(path, { service, method, kind, path, fn, raw: (kind === Kind.Unary || kind === Kind.ClientStreaming) && wantsRawRequests(fn) });
    }
  }
  const state: ServerState = { maxMessageBytes: opts.maxMessageBytes, shutdownSignal: opts.shutdownSignal, active: new Set() };
  opts.shutdownSignal.addEventListener(
    "abort",
    () => {
      for (const call of state.active) call.abort(opts.shutdownSignal.reason as ConnectError);
    },
    { once: true },
  );

  const settings: http2.Settings = {
    // Bounded so one connection cannot hold unbounded calls; far above the mesh's fan-in.
    maxConcurrentStreams: 1000,
    // Room for a large message per round trip instead of 64 KiB windows.
    initialWindowSize: 1 << 20,
    maxHeaderListSize: 64 << 10,
  };
  const serverOptions: http2.ServerOptions & { noDelay: boolean } = {
    settings,
    // Small frames (a response then its trailers) must not wait on Nagle for the client's delayed ACK.
    noDelay: true,
    // Messages up to maxMessageBytes may be buffered per stream: nghttp2's default 10 MB session cap would refuse streams under load.
    maxSessionMemory: Math.max(64, Math.ceil((opts.maxMessageBytes * 4) / (1 << 20))),
  };
  const h2 = opts.tls
    ? http2.createSecureServer({
        ...serverOptions,
        ca: opts.tls.ca,
        cert: opts.tls.cert,
        key: opts.tls.key,
        // mTLS at the handshake, as grpc-js's createSsl(..., true) did.
        requestCert: true,
        rejectUnauthorized: true,
        ALPNProtocols: ["h2"],
      })
    : http2.createServer(serverOptions);

  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.on("error", ignoreError);
    session.once("close", () => sessions.delete(session));
    // Connection-level window as large as the per-stream one times a few streams.
    try {
      session.setLocalWindowSize(8 << 20);
    } catch {
      // Not yet connected on some paths; the default window then applies.
    }
  });
  h2.on("sessionError", ignoreError);
  h2.on("stream", (stream: CallStream, headers: http2.IncomingHttpHeaders) => {
    const path = headers[":path"];
    const entry = path === undefined ? undefined : methods.get(path);
    if (headers[":method"] !== "POST") return refuse(stream, Code.Internal, `method ${headers[":method"]} is not POST`, 405);
    const ct = headers["content-type"];
    if (typeof ct !== "string" || !ct.startsWith("application/grpc") || (ct.length > 16 && ct.charCodeAt(16) !== 43 /* + */ && ct.charCodeAt(16) !== 59 /* ; */)) {
      return refuse(stream, Code.Unknown, `content-type ${ct ?? "(none)"} is not application/grpc`, 415);
    }
    if (!entry) return refuse(stream, Code.Unimplemented, `method ${path} is not implemented by this server`);
    const enc = headers["grpc-encoding"];
    if (enc !== undefined && enc !== "identity") return refuse(stream, Code.Unimplemented, `grpc-encoding ${String(enc)} is not supported (identity only)`);

    const call = new Call(state, entry, stream, headers);
    // The Call is the header getter: no object built per call to read grpc-timeout.
    const askedMs = headers["grpc-timeout"] === undefined ? undefined : requestTimeoutMs(call);
    if (askedMs !== undefined) call.deadline = Date.now() + askedMs;
    stream[CALL] = call;
    stream.on("error", ignoreError);
    stream.on("close", onStreamClose);
    stream.on("wantTrailers", onWantTrailers);
    state.active.add(call);
    call.obs = opts.observe(entry.service.typeName, entry.method.name, call, askedMs);
    if (call.obs.principal) call.values.set(PRINCIPAL_VALUE, call.obs.principal);
    if (call.obs.rejected) {
      call.sendStatus(call.obs.finish(call.obs.rejected) ?? call.obs.rejected);
      stream.resume();
      return;
    }
    if (askedMs !== undefined) call.timer = setTimeout(onDeadline, Math.max(0, askedMs), call);
    if (entry.kind === Kind.ClientStreaming || entry.kind === Kind.Bidi) {
      call.queue = new RequestQueue(call);
      if (entry.kind === Kind.ClientStreaming) void runUnary(call);
      else void runResponseStream(call);
    }
    stream.on("data", onStreamData);
    stream.on("end", onStreamEnd);
  });

  let closing = false;
  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        h2.once("error", onError);
        h2.listen(port, host, () => {
          h2.off("error", onError);
          resolve((h2.address() as AddressInfo).port);
        });
      });
    },
    tryShutdown(done) {
      closing = true;
      // server.close's callback fires once every connection is gone; session.close sends
      // GOAWAY and lets the streams in flight finish before the connection closes.
      h2.close(() => done());
      for (const s of sessions) s.close();
    },
    forceShutdown() {
      if (!closing) {
        closing = true;
        h2.close();
      }
      for (const s of sessions) s.destroy();
    },
  };
}
