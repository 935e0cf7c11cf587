// Services hosted by one process (as `mlmesh up` hosts all five) call each other in-process:
// the callee's handler sees the same trace, deadline, credentials and errors as over the
// network, its RPC metrics count the call, and a draining callee is not reached locally.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, isMessage, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { context, trace } from "@opentelemetry/api";
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import { GetModelRequestSchema, RegistryService } from "../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "./clients.js";
import { ValidationError } from "./errors.js";
import { setLocalCallsEnabled } from "./local-calls.js";
import { createLogger } from "./logger.js";
import { preEncodedRequest } from "./pre-encoded.js";
import { serviceRegistration, startServer, type RunningServer } from "./server.js";

interface Seen {
  protocol: string;
  timeoutMs: number;
  traceId: string | undefined;
  traceparent: string | null;
  authorization: string | null;
  requestIsMessage: boolean;
}

describe("in-process calls between services of one process", () => {
  let front: RunningServer;
  let back: RunningServer;
  const seen: Seen[] = [];
  const frontTraceIds: string[] = [];

  before(async () => {
    // A provider that mints real trace ids (the API's default is a no-op).
    trace.setGlobalTracerProvider(new BasicTracerProvider());
    const common = {
      host: "127.0.0.1",
      grpcPort: 0,
      httpPort: 0,
      logger: createLogger({ level: "silent" }),
      maxMessageBytes: 1 << 20,
      maxDeadlineMs: 60_000,
      shutdownGraceMs: 200,
    };
    back = await startServer({
      ...common,
      name: "back",
      services: [
        serviceRegistration(RegistryService, {
          getModel(req, ctx: HandlerContext) {
            seen.push({
              protocol: ctx.protocolName,
              timeoutMs: ctx.timeoutMs() ?? -1,
              traceId: trace.getSpan(context.active())?.spanContext().traceId,
              traceparent: ctx.requestHeader.get("traceparent"),
              authorization: ctx.requestHeader.get("authorization"),
              requestIsMessage: isMessage(req, GetModelRequestSchema),
            });
            if (req.name === "bad") throw new ValidationError("name", "must not be bad");
            if (req.name === "hang") return new Promise<never>(() => undefined);
            // An init shape, not a message: the caller must still get a complete message.
            return { registeredModel: { name: req.name } };
          },
        }),
      ],
    });
    const backClient = createServiceClient(RegistryService, back.grpcUrl.replace("127.0.0.1", "localhost"), { metadata: { authorization: "Bearer test-token" } });
    front = await startServer({
      ...common,
      name: "front",
      services: [
        serviceRegistration(RegistryService, {
          async getModel(req) {
            frontTraceIds.push(trace.getSpan(context.active())!.spanContext().traceId);
            // "enc:NAME": the request goes as bytes a hand-written encoder made (preEncodedRequest).
            const res = req.name.startsWith("enc:")
              ? await backClient.getModel(preEncodedRequest(toBinary(GetModelRequestSchema, create(GetModelRequestSchema, { name: req.name.slice(4) }))))
              : await backClient.getModel({ name: req.name });
            assert.equal(res.registeredModel?.description, "", "defaults of a complete message");
            return res;
          },
        }),
      ],
    });
  });
  after(async () => {
    setLocalCallsEnabled(true);
    await front.shutdown();
    await back.shutdown();
  });

  const frontClient = () => createServiceClient(RegistryService, front.grpcUrl);

  it("reaches the handler in-process with the caller's trace, deadline and metadata", async () => {
    seen.length = 0;
    const res = await frontClient().getModel({ name: "m1" }, { timeoutMs: 5000 });
    assert.equal(res.registeredModel?.name, "m1");
    const s = seen.at(-1)!;
    assert.equal(s.protocol, "local");
    assert.ok(s.timeoutMs > 0 && s.timeoutMs <= 5000, `deadline carried: ${s.timeoutMs}`);
    assert.notEqual(s.traceId, "00000000000000000000000000000000");
    assert.equal(s.traceId, frontTraceIds.at(-1), "the callee's SERVER span is in the caller's trace");
    // The trace travels as the caller's span object, not as a header to format and parse.
    assert.equal(s.traceparent ?? undefined, undefined);
    assert.equal(s.authorization, "Bearer test-token");
    assert.equal(s.requestIsMessage, true);
  });

  it("surfaces the callee's error with its code and the field it names", async () => {
    await assert.rejects(frontClient().getModel({ name: "bad" }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.InvalidArgument);
      assert.match(e.rawMessage, /name.*must not be bad/);
      return true;
    });
  });

  it("counts the call in the callee's RPC metrics, like a network call", async () => {
    const before = await back.metrics.registry.getSingleMetricAsString("mlmesh_rpc_server_requests_total");
    const count = (text: string, code: string) => {
      const line = text.split("\n").find((l) => l.includes('method="GetModel"') && l.includes(`code="${code}"`));
      return line ? Number(line.split(" ").at(-1)) : 0;
    };
    await frontClient().getModel({ name: "m2" });
    const afterText = await back.metrics.registry.getSingleMetricAsString("mlmesh_rpc_server_requests_total");
    assert.equal(count(afterText, "OK"), count(before, "OK") + 1);
  });

  it("goes over the network when local calls are off", async () => {
    setLocalCallsEnabled(false);
    try {
      await frontClient().getModel({ name: "m3" });
      assert.equal(seen.at(-1)!.protocol, "grpc");
    } finally {
      setLocalCallsEnabled(true);
    }
  });

  it("takes a pre-encoded request: decoded for the in-process handler, sent as it is over the network", async () => {
    for (const local of [true, false]) {
      setLocalCallsEnabled(local);
      try {
        const res = await frontClient().getModel({ name: "enc:m5" });
        assert.equal(res.registeredModel?.name, "m5");
        assert.equal(seen.at(-1)!.protocol, local ? "local" : "grpc");
        assert.equal(seen.at(-1)!.requestIsMessage, true);
      } finally {
        setLocalCallsEnabled(true);
      }
    }
  });

  it("ends a call still running at its deadline with DEADLINE_EXCEEDED, counted by the callee", async () => {
    const before = await back.metrics.registry.getSingleMetricAsString("mlmesh_rpc_server_requests_total");
    const t0 = performance.now();
    await assert.rejects(frontClient().getModel({ name: "hang" }, { timeoutMs: 150 }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.DeadlineExceeded, e.message);
      return true;
    });
    const took = performance.now() - t0;
    assert.ok(took >= 140 && took < 2000, `ended at its deadline: ${took} ms`);
    // The caller's own deadline may answer first; the callee's timer ends its side just after.
    const count = (t: string) => Number(t.split("\n").find((l) => l.includes('method="GetModel"') && l.includes('code="DEADLINE_EXCEEDED"'))?.split(" ").at(-1) ?? 0);
    let text = "";
    for (let i = 0; i < 50 && count(text) !== count(before) + 1; i++) {
      await new Promise((r) => setTimeout(r, 20));
      text = await back.metrics.registry.getSingleMetricAsString("mlmesh_rpc_server_requests_total");
    }
    assert.equal(count(text), count(before) + 1);
  });

  it("does not reach a draining service in-process: the caller gets UNAVAILABLE", async () => {
    // A call running in-process when the callee shuts down ends UNAVAILABLE, not at its deadline.
    const running = frontClient().getModel({ name: "hang" }, { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await back.shutdown();
    await assert.rejects(running, (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.Unavailable, e.message);
      return true;
    });
    assert.ok(performance.now() - t0 < 5000);
    await assert.rejects(frontClient().getModel({ name: "m4" }, { timeoutMs: 3000 }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.Unavailable, e.message);
      return true;
    });
  });
});
