// Without an OTLP endpoint a process records no spans but still gives every request a trace:
// ids for logs and the prediction log, and a traceparent for the services it calls.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { context, trace, TraceFlags } from "@opentelemetry/api";
import { loadConfig } from "./config.js";
import { extractTraceContext, getTracer, injectTraceContext, startTelemetry, stopTelemetry } from "./telemetry.js";
import { traceIdOf } from "./trace-ids-only.js";

describe("tracing with no exporter: ids only", () => {
  before(() => startTelemetry(loadConfig({}), "ids-only-test"));
  after(() => stopTelemetry());

  it("mints a trace for a root span, records nothing, and marks it sampled for services that export", () => {
    const span = getTracer("t").startSpan("root");
    const sc = span.spanContext();
    assert.equal(span.isRecording(), false);
    assert.match(sc.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(sc.traceId, "0".repeat(32));
    assert.match(sc.spanId, /^[0-9a-f]{16}$/);
    assert.equal(sc.traceFlags, TraceFlags.SAMPLED);
    const headers = new Map<string, string>();
    injectTraceContext({ get: (k) => headers.get(k), set: (k, v) => headers.set(k, v) }, trace.setSpan(context.active(), span));
    assert.equal(headers.get("traceparent"), `00-${sc.traceId}-${sc.spanId}-01`);
  });

  it("keeps the caller's trace id and sampled flag, with a new span id", () => {
    for (const flags of ["01", "00"]) {
      const parent = extractTraceContext({ get: (k) => (k === "traceparent" ? `00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-${flags}` : undefined) });
      const child = getTracer("t").startSpan("child", {}, parent).spanContext();
      assert.equal(child.traceId, "0af7651916cd43dd8448eb211c80319c");
      assert.notEqual(child.spanId, "b7ad6b7169203331");
      assert.equal(child.traceFlags, flags === "01" ? TraceFlags.SAMPLED : TraceFlags.NONE);
    }
  });

  it("mints ids once, on first use, and a child of an ids-only span keeps its trace and flags", () => {
    const root = getTracer("t").startSpan("root");
    const traceId = traceIdOf(root);
    const child = getTracer("t").startSpan("child", {}, trace.setSpan(context.active(), root));
    assert.equal(traceIdOf(child), traceId, "a child inherits the trace id without its parent's span id");
    const sc = child.spanContext();
    assert.deepEqual(child.spanContext(), sc, "stable once minted");
    assert.equal(sc.traceFlags, TraceFlags.SAMPLED);
    assert.match(sc.spanId, /^[0-9a-f]{16}$/);
    assert.notEqual(sc.spanId, root.spanContext().spanId);
    assert.equal(root.spanContext().traceId, traceId);
    const ids = new Set(Array.from({ length: 1000 }, () => getTracer("t").startSpan("x").spanContext().spanId));
    assert.equal(ids.size, 1000, "span ids do not repeat");
  });

  it("startActiveSpan makes the span active for its callback and returns its result", () => {
    const seen = getTracer("t").startActiveSpan("active", (span) => {
      assert.equal(trace.getActiveSpan()?.spanContext().spanId, span.spanContext().spanId);
      return 42;
    });
    assert.equal(seen, 42);
  });
});
