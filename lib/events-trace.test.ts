// The W3C trace context rides in NATS headers: a consumer handles an event inside a span of
// the trace that published it, including events relayed later through the outbox.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { context, trace } from "@opentelemetry/api";
import { AliasMovedSchema } from "../gen/mlmesh/events/v1/registry_events_pb.js";
import { testNats, type TestNats } from "../test/support/nats.js";
import { loadConfig } from "./config.js";
import { JetStreamBus } from "./events.js";
import { createLogger } from "./logger.js";
import { getTracer, startTelemetry, stopTelemetry } from "./telemetry.js";

describe("trace context through NATS", () => {
  let nats: TestNats;
  let bus: JetStreamBus;
  const id = `${Date.now()}${Math.floor(Math.random() * 1e6)}`;

  before(async () => {
    startTelemetry(loadConfig({}), "events-trace-test");
    nats = await testNats();
    bus = await JetStreamBus.connect({ servers: nats.url, name: "trace", logger: createLogger({ level: "silent" }) });
    await bus.ensureStream({ name: `TRACE_${id}`, subjects: [`trace${id}.>`] });
  });
  after(async () => {
    await bus.close();
    await nats.stop();
    await stopTelemetry();
  });

  it("the consumer's span is in the publisher's trace", async () => {
    const span = getTracer("test").startSpan("request");
    const publisherTrace = span.spanContext().traceId;
    await context.with(trace.setSpan(context.active(), span), () =>
      bus.publish(`trace${id}.e`, AliasMovedSchema, create(AliasMovedSchema, { modelName: "m" })),
    );
    span.end();

    let seen: string | undefined;
    const sub = await bus.subscribe({
      stream: `TRACE_${id}`,
      durable: "t",
      filterSubject: `trace${id}.e`,
      schema: AliasMovedSchema,
      handler: async () => {
        seen = trace.getSpan(context.active())?.spanContext().traceId;
      },
    });
    const deadline = Date.now() + 5000;
    while (!seen && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await sub.stop();
    assert.equal(seen, publisherTrace);
  });

  it("an event published later from a captured trace context keeps that trace", async () => {
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await bus.publishEncoded(`trace${id}.late`, new Uint8Array(), { msgId: `late-${id}`, trace: { traceparent } });
    let seen: string | undefined;
    const sub = await bus.subscribe({
      stream: `TRACE_${id}`,
      durable: "late",
      filterSubject: `trace${id}.late`,
      schema: AliasMovedSchema,
      handler: async () => {
        seen = trace.getSpan(context.active())?.spanContext().traceId;
      },
    });
    const deadline = Date.now() + 5000;
    while (!seen && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await sub.stop();
    assert.equal(seen, "0af7651916cd43dd8448eb211c80319c");
  });
});
