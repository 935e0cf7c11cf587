// The gRPC client transport of the mesh on node:http2, the counterpart of lib/h2-grpc-server.ts.
// Why not @grpc/grpc-js: its client costs ~300 µs per unary call on this class of machine
// (bench/rpc-overhead.ts: a bare node:http2 call is a third of that), and every hop of the
// mesh (router → features → inference) pays it. This file speaks the gRPC-over-HTTP/2 wire
// protocol (length-prefixed messages, grpc-timeout, status in trailers or trailers-only
// headers, grpc-status-details-bin) and nothing else: typed clients, deadlines from the
// caller's context, spans and credentials live in lib/clients.ts.
//
// One HTTP/2 session per (target, TLS material), created on first use and re-created after it
// closes, fails or receives GOAWAY (a peer restarting or draining), so a restarted service is
// reached again by the next call. Idle sessions never keep the process alive (a call's own
// deadline timer does while it runs). Keepalive pings find dead peers behind quiet links.

import http2 from "node:http2";
import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodeStatusDetails } from "./status-details.js";
import type { TlsMaterial } from "./tls.js";

const {
  HTTP2_HEADER_STATUS,
  HTTP2_HEADER_CONTENT_TYPE,
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INADEQUATE_SECURITY,
} = http2.constants;

const KEEPALIVE_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 5_000;
/** Messages a streaming response may queue ahead of its consumer before the stream is paused. */
const STREAM_HIGH_WATER = 32;

export interface ChannelOptions {
  readonly tls?: TlsMaterial;
  readonly maxReceiveBytes: number;
  readonly maxSendBytes: number;
}

/** One target's HTTP/2 session, re-created on demand. */
export class H2Channel {
  private session: http2.ClientHttp2Session | undefined;
  private readonly url: string;

  constructor(
    target: string,
    readonly opts: ChannelOptions,
  ) {
    this.url = `${opts.tls ? "https" : "http"}://${target}`;
    this.ipHost = net.isIP(new URL(this.url).hostname.replace(/^\[|\]$/g, "")) !== 0;
  }

  private readonly ipHost: boolean;

  /** The live session, or a new one if the last closed, failed or is draining. */
  sessionFor(): http2.ClientHttp2Session {
    const s = this.session;
    if (s && !s.closed && !s.destroyed) return s;
    return this.connect();
  }

  private connect(): http2.ClientHttp2Session {
    const tls = this.opts.tls;
    const s = http2.connect(this.url, {
      // No SNI for an IP address (RFC 6066; Node warns otherwise); the certificate is still
      // checked against the address itself.
      ...(tls ? { ca: tls.ca, cert: tls.cert, key: tls.key, ...(this.ipHost ? { servername: "" } : {}) } : {}),
      settings: { enablePush: false, initialWindowSize: 1 << 20 },
      // Large responses (feature reads, model uploads) should not stall on flow control.
      maxSessionMemory: 64,
    });
    this.session = s;
    // Errors reach the calls on this session through their streams; the session just goes.
    s.on("error", () => undefined);
    const forget = () => {
      if (this.session === s) this.session = undefined;
    };
    // GOAWAY: in-flight streams finish on this session, new calls open a fresh one.
    s.on("goaway", forget);
    s.on("close", () => {
      forget();
      clearInterval(ping);
    });
    s.on("connect", () => {
      // More than one stream in flight is normal; raise the local window once connected.
      try {
        s.setLocalWindowSize(8 << 20);
      } catch {
        // An old peer that refuses the update still works with the default window.
      }
    });
    const ping = setInterval(() => {
      if (s.closed || s.destroyed || s.connecting) return;
      const timer = setTimeout(() => s.destroy(), KEEPALIVE_TIMEOUT_MS).unref();
      const sent = s.ping((err) => {
        clearTimeout(timer);
        if (err) s.destroy();
      });
      if (!sent) clearTimeout(timer);
    }, KEEPALIVE_MS).unref();
    s.unref();
    return s;
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}

/** What a call reports back: each response message, then its end (error or OK). */
export interface CallListener {
  onMessage(bytes: Uint8Array): void;
  onEnd(err: ConnectError | undefined): void;
}

/** A started call: the request side. */
export interface ActiveCall {
  /** Sends one message; resolves when the transport can take more (backpressure). */
  write(message: Uint8Array): Promise<void>;
  /** Half-closes: no more requests. */
  end(): void;
  cancel(code?: Code, message?: string): void;
  pause(): void;
  resume(): void;
}

/** The 5-byte gRPC message prefix (uncompressed) followed by the message. */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Timeout in the `grpc-timeout` format: at most 8 digits, here in milliseconds or seconds. */
function grpcTimeout(ms: number): string {
  const m = Math.max(1, Math.ceil(ms));
  return m < 1e8 ? `${m}m` : `${Math.ceil(m / 1000)}S`;
}

const HTTP_TO_GRPC: Record<number, Code> = {
  400: Code.Internal,
  401: Code.Unauthenticated,
  403: Code.PermissionDenied,
  404: Code.Unimplemented,
  429: Code.Unavailable,
  502: Code.Unavailable,
  503: Code.Unavailable,
  504: Code.Unavailable,
};

/** Connection-level failures: the peer is not there (yet, or any more). */
const UNAVAILABLE_ERRNO = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_INVALID_SESSION",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_ERROR",
]);

function decodeGrpcMessage(v: string | undefined): string {
  if (!v) return "";
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

function statusError(headers: http2.IncomingHttpHeaders): ConnectError | undefined {
  const raw = headers["grpc-status"];
  const code = Number(Array.isArray(raw) ? raw[0] : raw);
  if (code === 0) return undefined;
  const msg = decodeGrpcMessage(headers["grpc-message"] as string | undefined);
  const err = new ConnectError(msg, Number.isInteger(code) && code > 0 && code <= 16 ? (code as Code) : Code.Unknown);
  const details = headers["grpc-status-details-bin"];
  if (typeof details === "string" && details.length > 0) err.details.push(...decodeStatusDetails(Buffer.from(details, "base64")));
  return err;
}

/**
 * Starts one call on `channel`: sends the headers at once; `listener` hears every response
 * message and then exactly one end. `deadline` (epoch ms) is sent as grpc-timeout and
 * enforced here too: a peer that never answers still ends the call with DEADLINE_EXCEEDED.
 */
export function startCall(
  channel: H2Channel,
  path: string,
  metadata: Record<string, string>,
  deadline: number,
  listener: CallListener,
): ActiveCall {
  const timeoutMs = deadline - Date.now();
  metadata[":method"] = "POST";
  metadata[":path"] = path;
  metadata["content-type"] = "application/grpc";
  metadata.te = "trailers";
  metadata["grpc-timeout"] = grpcTimeout(timeoutMs);

  let ended = false;
  let cancelled: ConnectError | undefined;
  let responseHeaders: http2.IncomingHttpHeaders | undefined;
  let pending: Buffer | undefined;
  let stream: http2.ClientHttp2Stream;
  const maxReceive = channel.opts.maxReceiveBytes;

  const finish = (err: ConnectError | undefined) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    listener.onEnd(err);
  };
  const cancel = (code: Code = Code.Canceled, message = "call cancelled by the client") => {
    if (ended) return;
    cancelled = new ConnectError(message, code);
    if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
    finish(cancelled);
  };
  const timer = setTimeout(() => cancel(Code.DeadlineExceeded, `deadline exceeded after ${Math.round(timeoutMs)} ms (${path.slice(1)})`), Math.max(0, timeoutMs));

  try {
    stream = channel.sessionFor().request(metadata, { endStream: false });
  } catch (err) {
    clearTimeout(timer);
    ended = true;
    queueMicrotask(() => listener.onEnd(new ConnectError(`cannot reach ${path.slice(1)}: ${(err as Error).message}`, Code.Unavailable)));
    return { write: async () => undefined, end: () => undefined, cancel: () => undefined, pause: () => undefined, resume: () => undefined };
  }

  stream.on("response", (headers) => {
    responseHeaders = headers;
    const status = Number(headers[HTTP2_HEADER_STATUS]);
    if (status !== 200) {
      const code = HTTP_TO_GRPC[status] ?? Code.Unknown;
      // Trailers-only answers carry a real gRPC status even on odd HTTP statuses.
      finish(headers["grpc-status"] !== undefined ? statusError(headers) : new ConnectError(`HTTP ${status} from ${path.slice(1)}`, code));
      stream.close(NGHTTP2_CANCEL);
      return;
    }
    const ct = String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? "");
    if (!ct.startsWith("application/grpc")) {
      finish(new ConnectError(`unexpected content-type "${ct}" from ${path.slice(1)}`, Code.Unknown));
      stream.close(NGHTTP2_CANCEL);
    }
  });

  stream.on("data", (chunk: Buffer) => {
    if (ended) return;
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = undefined;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf[0] !== 0) {
        cancel(Code.Internal, `compressed response from ${path.slice(1)} without a negotiated encoding`);
        return;
      }
      if (len > maxReceive) {
        cancel(Code.ResourceExhausted, `response message of ${len} bytes exceeds the ${maxReceive}-byte limit (${path.slice(1)})`);
        return;
      }
      if (buf.length < 5 + len) break;
      listener.onMessage(buf.subarray(5, 5 + len));
      if (ended) return;
      buf = buf.subarray(5 + len);
    }
    if (buf.length > 0) pending = buf;
  });

  stream.on("trailers", (trailers) => {
    if (ended) return;
    finish(statusError(trailers));
  });

  stream.on("close", () => {
    if (ended) return;
    // No trailers: trailers-only headers carry the status; else the stream was reset.
    if (responseHeaders && responseHeaders["grpc-status"] !== undefined) return finish(statusError(responseHeaders));
    if (pending) return finish(new ConnectError(`response from ${path.slice(1)} ended inside a message`, Code.Internal));
    const rst = stream.rstCode;
    if (rst === NGHTTP2_REFUSED_STREAM) return finish(new ConnectError(`${path.slice(1)} refused the stream`, Code.Unavailable));
    if (rst === NGHTTP2_CANCEL) return finish(new ConnectError(`${path.slice(1)} cancelled the call`, Code.Canceled));
    if (rst === NGHTTP2_ENHANCE_YOUR_CALM) return finish(new ConnectError(`${path.slice(1)}: peer says ENHANCE_YOUR_CALM`, Code.ResourceExhausted));
    if (rst === NGHTTP2_INADEQUATE_SECURITY) return finish(new ConnectError(`${path.slice(1)}: inadequate security`, Code.PermissionDenied));
    finish(new ConnectError(`${path.slice(1)}: stream closed without a status${responseHeaders ? "" : " (peer went away)"}`, responseHeaders ? Code.Internal : Code.Unavailable));
  });

  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (ended) return;
    const code = err.code && UNAVAILABLE_ERRNO.has(err.code) ? Code.Unavailable : Code.Internal;
    finish(new ConnectError(`${path.slice(1)}: ${err.message}`, code));
  });

  return {
    write(message) {
      if (ended) return Promise.resolve();
      if (message.length > channel.opts.maxSendBytes) {
        cancel(Code.ResourceExhausted, `request message of ${message.length} bytes exceeds the ${channel.opts.maxSendBytes}-byte limit (${path.slice(1)})`);
        return Promise.resolve();
      }
      if (stream.write(frameMessage(message))) return Promise.resolve();
      return new Promise<void>((ok) => {
        const go = () => {
          stream.off("drain", go);
          stream.off("close", go);
          ok();
        };
        stream.on("drain", go);
        stream.on("close", go);
      });
    },
    end() {
      if (!ended && !stream.destroyed) stream.end();
    },
    cancel,
    pause: () => stream.pause(),
    resume: () => stream.resume(),
  };
}

/** Sends one request message and half-closes at once (unary and server-streaming calls). */
export function sendOnly(call: ActiveCall, message: Uint8Array): void {
  void call.write(message);
  call.end();
}

/**
 * Adapts a call's messages to an async iterator with backpressure: the HTTP/2 stream pauses
 * while more than STREAM_HIGH_WATER messages wait for the consumer.
 */
export class MessageQueue<T> implements CallListener {
  private readonly items: T[] = [];
  private done = false;
  private error: ConnectError | undefined;
  private wake: (() => void) | undefined;
  private paused = false;
  call: ActiveCall | undefined;

  constructor(private readonly decode: (bytes: Uint8Array) => T) {}

  onMessage(bytes: Uint8Array): void {
    this.items.push(this.decode(bytes));
    if (this.items.length > STREAM_HIGH_WATER && !this.paused) {
      this.paused = true;
      this.call?.pause();
    }
    this.wake?.();
  }

  onEnd(err: ConnectError | undefined): void {
    this.done = true;
    this.error = err;
    this.wake?.();
  }

  async *drain(): AsyncGenerator<T> {
    try {
      for (;;) {
        if (this.items.length > 0) {
          const item = this.items.shift()!;
          if (this.paused && this.items.length <= STREAM_HIGH_WATER / 2) {
            this.paused = false;
            this.call?.resume();
          }
          yield item;
          continue;
        }
        if (this.done) {
          if (this.error) throw this.error;
          return;
        }
        await new Promise<void>((ok) => (this.wake = ok));
        this.wake = undefined;
      }
    } finally {
      // The consumer stopped early (break, throw): the server need not keep sending.
      if (!this.done) this.call?.cancel();
    }
  }
}
