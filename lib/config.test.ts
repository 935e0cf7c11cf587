import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, DEFAULT_PORTS, loadConfig } from "./config.js";

describe("loadConfig", () => {
  it("gives the documented defaults on an empty environment", () => {
    const c = loadConfig({});
    assert.equal(c.dataDir, "./.mlmesh");
    assert.deepEqual(c.ports.registry, DEFAULT_PORTS.registry);
    assert.deepEqual(c.ports.experiments, { grpc: 50055, http: 8085 });
    assert.equal(c.endpoints.router, "http://127.0.0.1:50054");
    assert.equal(c.natsUrl, undefined);
    assert.equal(c.natsRequired, false);
    assert.equal(c.otel.endpoint, undefined);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.ports));
  });

  it("overrides every port and address by environment", () => {
    const c = loadConfig({
      MLMESH_FEATURES_GRPC_PORT: "6000",
      MLMESH_FEATURES_HTTP_PORT: "6001",
      MLMESH_INFERENCE_ADDR: "inference.mlmesh.svc:50053",
      MLMESH_NATS_URL: "nats://nats:4222",
    });
    assert.deepEqual(c.ports.features, { grpc: 6000, http: 6001 });
    assert.equal(c.endpoints.features, "http://127.0.0.1:6000");
    assert.equal(c.endpoints.inference, "http://inference.mlmesh.svc:50053");
    assert.equal(c.natsUrl, "nats://nats:4222");
    assert.equal(c.natsRequired, true);
  });

  const bad: Array<[string, string, RegExp]> = [
    ["MLMESH_REGISTRY_GRPC_PORT", "abc", /MLMESH_REGISTRY_GRPC_PORT.*integer in \[0, 65535\]/],
    ["MLMESH_ROUTER_HTTP_PORT", "70000", /MLMESH_ROUTER_HTTP_PORT/],
    ["MLMESH_LOG_LEVEL", "loud", /MLMESH_LOG_LEVEL.*one of trace, debug/],
    ["MLMESH_NATS_URL", "http://x:4222", /MLMESH_NATS_URL.*scheme nats:/],
    ["MLMESH_SHUTDOWN_GRACE_MS", "-5", /MLMESH_SHUTDOWN_GRACE_MS/],
    ["MLMESH_INFERENCE_ADDR", "no port here", /MLMESH_INFERENCE_ADDR.*host:port/],
    ["OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", /OTEL_EXPORTER_OTLP_PROTOCOL/],
  ];
  for (const [name, value, pattern] of bad) {
    it(`refuses ${name}=${value} naming the variable`, () => {
      assert.throws(
        () => loadConfig({ [name]: value }),
        (err: unknown) => err instanceof ConfigError && err.variable === name && pattern.test(err.message) && !err.message.includes("\n"),
      );
    });
  }
});
