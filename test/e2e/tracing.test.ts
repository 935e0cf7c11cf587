// A trace crossing two services: a caller service's handler calls a second service through
// the mesh's typed client; spans are exported over OTLP/HTTP to a receiver in this test,
// and the callee's SERVER span must carry the caller's trace id with the caller's CLIENT
// span as parent, which in turn is a child of the caller's SERVER span.

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { loadConfig } from "../../lib/config.js";
import { createLogger } from "../../lib/logger.js";
import { startServer, type RunningServer } from "../../lib/server.js";
import { startTelemetry, stopTelemetry } from "../../lib/telemetry.js";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
}

const SPAN_KIND_SERVER = 2;
const SPAN_KIND_CLIENT = 3;

describe("trace context across two services", () => {
  const spans: OtlpSpan[] = [];
  let receiver: http.Server;
  let caller: RunningServer;
  let callee: RunningServer;
  const logLines: string[] = [];

  before(async () => {
    receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const payload = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
        for (const rs of payload.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const port = (receiver.address() as AddressInfo).port;
    const config = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" });
    startTelemetry(config, "mlmesh-trace-test");
    const logger = createLogger({
      level: "info",
      destination: { write: (line: string) => (logLines.push(line), true) } as unknown as NodeJS.WritableStream,
    });
    const common = { host: "127.0.0.1", grpcPort: 0, httpPort: 0, logger, maxMessageBytes: 1 << 20, maxDeadlineMs: 10_000, shutdownGraceMs: 1000 };
    callee = await startServer({ ...common, name: "callee", services: [] });
    const calleeHealth = createServiceClient(Health, callee.grpcUrl);
    caller = await startServer({
      ...common,
      name: "caller",
      services: [
        {
          service: RegistryService,
          impl: {
            // The caller's handler makes an outgoing call to the callee, as a service does.
            async listModels() {
              logger.info("calling the callee");
              await calleeHealth.check({ service: "" });
              return {};
            },
          },
        },
      ],
    });
  });

  after(async () => {
    await caller.shutdown();
    await callee.shutdown();
    receiver.close();
  });

  it("links caller SERVER → caller CLIENT → callee SERVER in one trace", async () => {
    const client = createServiceClient(RegistryService, caller.grpcUrl);
    await client.listModels({});
    await stopTelemetry(); // flushes the batch processor to the receiver

    const callerServer = spans.find((s) => s.kind === SPAN_KIND_SERVER && s.name === "mlmesh.registry.v1.RegistryService/ListModels");
    const callerClient = spans.find((s) => s.kind === SPAN_KIND_CLIENT && s.name === "grpc.health.v1.Health/Check");
    const calleeServer = spans.find((s) => s.kind === SPAN_KIND_SERVER && s.name === "grpc.health.v1.Health/Check");
    assert.ok(callerServer && callerClient && calleeServer, `spans received: ${spans.map((s) => `${s.kind}:${s.name}`).join(", ")}`);
    assert.equal(calleeServer.traceId, callerServer.traceId);
    assert.equal(callerClient.traceId, callerServer.traceId);
    assert.equal(callerClient.parentSpanId, callerServer.spanId);
    assert.equal(calleeServer.parentSpanId, callerClient.spanId);

    const attr = (s: OtlpSpan, k: string) => s.attributes.find((a) => a.key === k)?.value;
    assert.deepEqual(attr(calleeServer, "rpc.system"), { stringValue: "grpc" });
    assert.deepEqual(attr(calleeServer, "rpc.service"), { stringValue: "grpc.health.v1.Health" });
    assert.deepEqual(attr(calleeServer, "rpc.method"), { stringValue: "Check" });
    assert.ok(attr(calleeServer, "rpc.grpc.status_code"));

    // The log line written inside the request carries its trace and span ids.
    const line = logLines.map((l) => JSON.parse(l) as Record<string, string>).find((l) => l.msg === "calling the callee");
    assert.equal(line?.trace_id, callerServer.traceId);
    assert.equal(line?.span_id, callerServer.spanId);
  });
});
