// lib/h2-grpc-server.ts through lib/server.ts, called by clients that share no code with it:
// a generic @grpc/grpc-js client (the mesh's own client library, lib/clients.ts) for the four
// method kinds, and raw node:http2 frames for what a library client never sends (frames split
// at odd places, compressed flags, wrong content-type, unknown encodings, oversized messages).

import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, toBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { encodeGrpcMessage } from "./h2-grpc-server.js";
import { createLogger } from "./logger.js";
import { answerPreEncoded, rawRequests } from "./pre-encoded.js";
import { startServer, type RunningServer, type ServiceRegistration } from "./server.js";

// A test service with every method kind, built from Health's message types.
const check = Health.method.check;
const kindOf = (name: string, localName: string, methodKind: DescMethod["methodKind"]) => ({ ...check, name, localName, methodKind }) as unknown as DescMethod;
const methods = [
  kindOf("Unary", "unary", "unary"),
  kindOf("Server", "server", "server_streaming"),
  kindOf("Client", "client", "client_streaming"),
  kindOf("Bidi", "bidi", "bidi_streaming"),
  kindOf("Slow", "slow", "unary"),
  kindOf("Fail", "fail", "unary"),
  kindOf("Raw", "raw", "unary"),
  kindOf("RawIn", "rawIn", "unary"),
];
const Echo = { ...Health, typeName: "test.h2.Echo", methods, method: Object.fromEntries(methods.map((m) => [m.localName, m])) } as unknown as DescService;

type Req = { service: string };
const res = (service: string) => ({ status: service.length as HealthCheckResponse_ServingStatus });
const events: string[] = [];
let slowStarted: (() => void) | undefined;

const impl = {
  unary: (r: Req) => res(r.service),
  async *server(r: Req) {
    for (let i = 0; i < 3; i++) yield res(r.service + "x".repeat(i));
  },
  async client(reqs: AsyncIterable<Req>) {
    let n = 0;
    try {
      for await (const r of reqs) n += r.service.length;
    } catch (err) {
      events.push(`client:${ConnectError.from(err).code}`);
      throw err;
    }
    events.push("client:complete");
    return res("y".repeat(n));
  },
  async *bidi(reqs: AsyncIterable<Req>) {
    for await (const r of reqs) yield res(r.service);
  },
  async slow(_r: Req, ctx: { signal: AbortSignal }) {
    slowStarted?.();
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 300);
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(t);
        events.push(`slow:aborted:${ConnectError.from(ctx.signal.reason).code}`);
        resolve();
      });
    });
    return res("done");
  },
  fail: () => {
    const err = new ConnectError("bad thing: 100% ünïcode\n", Code.FailedPrecondition);
    err.details.push({ type: "google.rpc.RetryInfo", value: new Uint8Array([0x0a, 0x02, 0x08, 0x01]) });
    err.metadata.set("retry-after", "1");
    throw err;
  },
  // Bytes (gRPC port): 100 + their length; a decoded message (other transports): its length.
  rawIn: rawRequests((r: Req | Uint8Array) => ({ status: (r instanceof Uint8Array ? 100 + r.length : r.service.length) as HealthCheckResponse_ServingStatus })),
  raw: () => answerPreEncoded(toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status: 7 as HealthCheckResponse_ServingStatus }))),
};

let server: RunningServer;
let session: http2.ClientHttp2Session;
let client: grpc.Client;

const frameOf = (service: string) => {
  const body = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service }));
  const f = Buffer.alloc(5 + body.length);
  f.writeUInt32BE(body.length, 1);
  f.set(body, 5);
  return f;
};

interface RawResult {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** One call over raw HTTP/2: the body is written in the given pieces. */
function raw(path: string, pieces: Buffer[], headers: http2.OutgoingHttpHeaders = {}): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    const out: RawResult = { headers: {}, trailers: {}, body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    s.on("response", (h) => (out.headers = h));
    s.on("trailers", (t) => (out.trailers = t));
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("end", () => resolve({ ...out, body: Buffer.concat(chunks) }));
    s.on("error", reject);
    void (async () => {
      for (const p of pieces) {
        s.write(p);
        await new Promise((r) => setImmediate(r));
      }
      s.end();
    })();
  });
}

const statusOf = (r: RawResult) => Number(r.trailers["grpc-status"] ?? r.headers["grpc-status"]);
const messageOf = (r: RawResult) => decodeURIComponent(String(r.trailers["grpc-message"] ?? r.headers["grpc-message"] ?? ""));

const ident = (b: Buffer) => b;
const reqBytes = (service: string) => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })));
const resOf = (b: Buffer) => fromBinary(HealthCheckResponseSchema, b).status as number;

describe("gRPC on node:http2 (lib/h2-grpc-server.ts)", () => {
  before(async () => {
    server = await startServer({
      name: "h2-test",
      host: "127.0.0.1",
      grpcPort: 0,
      httpPort: 0,
      services: [{ service: Echo, impl: impl as unknown as ServiceRegistration["impl"] }],
      logger: createLogger({ level: "silent" }),
      maxMessageBytes: 1024,
      maxDeadlineMs: 10_000,
      shutdownGraceMs: 2000,
      grpcServer: "node-http2",
    });
    session = http2.connect(server.grpcUrl);
    client = new grpc.Client(server.grpcUrl.replace("http://", ""), grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    session.close();
    await server.shutdown();
  });

  it("serves the four method kinds to a grpc-js client", async () => {
    const unary = await new Promise<number>((resolve, reject) =>
      client.makeUnaryRequest("/test.h2.Echo/Unary", ident, ident, reqBytes("abc"), (err, b) => (err ? reject(err) : resolve(resOf(b!)))),
    );
    assert.equal(unary, 3);

    const streamed: number[] = [];
    for await (const b of client.makeServerStreamRequest("/test.h2.Echo/Server", ident, ident, reqBytes("ab")) as AsyncIterable<Buffer>) streamed.push(resOf(b));
    assert.deepEqual(streamed, [2, 3, 4]);

    const total = await new Promise<number>((resolve, reject) => {
      const call = client.makeClientStreamRequest("/test.h2.Echo/Client", ident, ident, (err, b) => (err ? reject(err) : resolve(resOf(b!))));
      for (const s of ["a", "bb", "ccc"]) call.write(reqBytes(s));
      call.end();
    });
    assert.equal(total, 6);

    const duplex = client.makeBidiStreamRequest("/test.h2.Echo/Bidi", ident, ident);
    const got: number[] = [];
    const done = (async () => {
      for await (const b of duplex as AsyncIterable<Buffer>) got.push(resOf(b));
    })();
    for (const s of ["x", "yy", "zzz", "wwww"]) duplex.write(reqBytes(s));
    duplex.end();
    await done;
    assert.deepEqual(got, [1, 2, 3, 4]);
  });

  it("reassembles messages split across DATA chunks, and several messages in one chunk", async () => {
    const a = frameOf("hello");
    const b = frameOf("world!");
    const all = Buffer.concat([a, b, frameOf("z")]);
    // Split inside the first header, inside a body, and at a boundary.
    const r = await raw("/test.h2.Echo/Client", [all.subarray(0, 2), all.subarray(2, 9), all.subarray(9, a.length + 3), all.subarray(a.length + 3)]);
    assert.equal(statusOf(r), 0);
    assert.equal(resOf(r.body.subarray(5)), 12);
    const one = await raw("/test.h2.Echo/Unary", [frameOf("four")]);
    assert.equal(one.headers["content-type"], "application/grpc");
    assert.equal(resOf(one.body.subarray(5)), 4);
  });

  it("answers protocol faults with the right status", async () => {
    const bad = await raw("/test.h2.Echo/Unary", [Buffer.from([0, 0, 0, 0, 1, 0xff])]);
    assert.equal(statusOf(bad), Code.InvalidArgument);
    assert.match(messageOf(bad), /request.*not a valid grpc\.health\.v1\.HealthCheckRequest/);

    const badStream = await raw("/test.h2.Echo/Server", [Buffer.from([0, 0, 0, 0, 1, 0xff])]);
    assert.equal(statusOf(badStream), Code.InvalidArgument);

    const big = Buffer.alloc(5);
    big.writeUInt32BE(4096, 1);
    const tooBig = await raw("/test.h2.Echo/Unary", [big, Buffer.alloc(4096)]);
    assert.equal(statusOf(tooBig), Code.ResourceExhausted);
    assert.match(messageOf(tooBig), /larger than max \(4096 vs\. 1024\)/);

    const gz = await raw("/test.h2.Echo/Unary", [frameOf("a")], { "grpc-encoding": "gzip" });
    assert.equal(statusOf(gz), Code.Unimplemented);
    assert.match(messageOf(gz), /grpc-encoding gzip/);

    const flagged = Buffer.from(frameOf("a"));
    flagged[0] = 1;
    assert.equal(statusOf(await raw("/test.h2.Echo/Unary", [flagged])), Code.Internal);

    const ct = await raw("/test.h2.Echo/Unary", [frameOf("a")], { "content-type": "application/json" });
    assert.equal(ct.headers[":status"], 415);

    const none = await raw("/test.h2.Echo/Nope", [frameOf("a")]);
    assert.equal(statusOf(none), Code.Unimplemented);

    const empty = await raw("/test.h2.Echo/Unary", []);
    assert.equal(statusOf(empty), Code.Internal);
    const two = await raw("/test.h2.Echo/Unary", [Buffer.concat([frameOf("a"), frameOf("b")])]);
    assert.equal(statusOf(two), Code.Internal);
  });

  it("sends the error's message percent-encoded, its metadata and grpc-status-details-bin", async () => {
    const r = await raw("/test.h2.Echo/Fail", [frameOf("a")]);
    assert.equal(statusOf(r), Code.FailedPrecondition);
    const h = { ...r.headers, ...r.trailers };
    assert.equal(h["grpc-message"], "bad thing: 100%25 %C3%BCn%C3%AFcode%0A");
    assert.equal(messageOf(r), "bad thing: 100% ünïcode\n");
    assert.equal(h["retry-after"], "1");
    const details = Buffer.from(String(h["grpc-status-details-bin"]), "base64");
    assert.ok(details.includes(Buffer.from("type.googleapis.com/google.rpc.RetryInfo")));
    assert.equal(encodeGrpcMessage("plain text"), "plain text");

    // grpc-js (a foreign client) reads the same status and message.
    const err = await new Promise<grpc.ServiceError>((resolve) => client.makeUnaryRequest("/test.h2.Echo/Fail", ident, ident, reqBytes("a"), (e) => resolve(e!)));
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(err.details, "bad thing: 100% ünïcode\n");
  });

  it("answers HTTP/2 keepalive pings and advertises bounded settings", async () => {
    const rtt = await new Promise<number>((resolve, reject) => session.ping((err, ms) => (err ? reject(err) : resolve(ms))));
    assert.ok(rtt >= 0);
    assert.equal(session.remoteSettings.maxConcurrentStreams, 1000);
  });

  it("sends pre-encoded responses as they are", async () => {
    const r = await raw("/test.h2.Echo/Raw", [frameOf("a")]);
    assert.equal(statusOf(r), 0);
    assert.equal(resOf(r.body.subarray(5)), 7);
  });

  it("passes the request bytes undecoded to a rawRequests handler on the gRPC port only", async () => {
    const overGrpc = await new Promise<number>((resolve, reject) =>
      client.makeUnaryRequest("/test.h2.Echo/RawIn", ident, ident, reqBytes("abcd"), (err, b) => (err ? reject(err) : resolve(resOf(b!)))),
    );
    assert.equal(overGrpc, 100 + reqBytes("abcd").length);
    const overConnect = await fetch(`${server.httpUrl}/test.h2.Echo/RawIn`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ service: "abcd" }) });
    assert.equal(overConnect.status, 200);
    assert.deepEqual(await overConnect.json(), { status: 4 });
  });

  it("aborts the handler on client cancel and on grpc-timeout; a reset upload is never complete", async () => {
    events.length = 0;
    const started = new Promise<void>((r) => (slowStarted = r));
    const s = session.request({ ":method": "POST", ":path": "/test.h2.Echo/Slow", "content-type": "application/grpc", te: "trailers" });
    s.on("error", () => undefined);
    s.end(frameOf("a"));
    await started;
    s.close(http2.constants.NGHTTP2_CANCEL);
    for (let i = 0; i < 50 && events.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(events, [`slow:aborted:${Code.Canceled}`]);

    events.length = 0;
    const t0 = Date.now();
    const timedOut = await raw("/test.h2.Echo/Slow", [frameOf("a")], { "grpc-timeout": "50m" });
    assert.equal(statusOf(timedOut), Code.DeadlineExceeded);
    assert.ok(Date.now() - t0 < 250, "answered at the deadline, not when the handler returned");
    assert.deepEqual(events, [`slow:aborted:${Code.DeadlineExceeded}`]);

    events.length = 0;
    const up = session.request({ ":method": "POST", ":path": "/test.h2.Echo/Client", "content-type": "application/grpc", te: "trailers" });
    up.on("error", () => undefined);
    up.write(frameOf("a"));
    await new Promise((r) => setTimeout(r, 30));
    up.close(http2.constants.NGHTTP2_CANCEL);
    for (let i = 0; i < 50 && events.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(events, [`client:${Code.Canceled}`]);
  });

  it("lets a call in flight finish during shutdown, then refuses new connections", async () => {
    const own = await startServer({
      name: "h2-drain",
      host: "127.0.0.1",
      grpcPort: 0,
      httpPort: 0,
      services: [{ service: Echo, impl: impl as unknown as ServiceRegistration["impl"] }],
      logger: createLogger({ level: "silent" }),
      maxMessageBytes: 1024,
      maxDeadlineMs: 10_000,
      shutdownGraceMs: 3000,
      grpcServer: "node-http2",
    });
    const c = new grpc.Client(own.grpcUrl.replace("http://", ""), grpc.credentials.createInsecure());
    const started = new Promise<void>((r) => (slowStarted = r));
    const inFlight = new Promise<number>((resolve, reject) =>
      c.makeUnaryRequest("/test.h2.Echo/Slow", ident, ident, reqBytes("a"), (err, b) => (err ? reject(err) : resolve(resOf(b!)))),
    );
    await started;
    const stopped = own.shutdown();
    assert.equal(await inFlight, 4, "the call in flight got its answer");
    await stopped;
    c.close();
    const later = http2.connect(own.grpcUrl);
    const refused = await new Promise<boolean>((resolve) => {
      later.on("error", () => resolve(true));
      later.on("connect", () => resolve(false));
    });
    later.destroy();
    assert.ok(refused, "no connections after shutdown");
  });
});
