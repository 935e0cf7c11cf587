// The Connect JSON unary fast path answers exactly as connect-node does: the same status,
// body and error JSON for successes, handler errors, malformed and unknown-field bodies,
// unknown methods and large (compressed) answers. Every case is sent to two servers with the
// same handlers, one with the fast path and one with connect-node only.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { RegistryService } from "../gen/mlmesh/registry/v1/registry_service_pb.js";
import { ValidationError } from "./errors.js";
import { createLogger } from "./logger.js";
import { serviceRegistration, startServer, type RunningServer } from "./server.js";

describe("Connect JSON unary fast path", () => {
  let server: RunningServer;
  let plain: RunningServer;
  let protocols: string[] = [];

  before(async () => {
    const common = {
      name: "t",
      host: "127.0.0.1",
      grpcPort: 0,
      httpPort: 0,
      logger: createLogger({ level: "silent" }),
      maxMessageBytes: 4096,
      maxDeadlineMs: 60_000,
      shutdownGraceMs: 200,
      services: [
        serviceRegistration(RegistryService, {
          async getModel(req, ctx) {
            protocols.push(ctx.protocolName);
            if (req.name === "bad") throw new ValidationError("name", "must not be bad");
            if (req.name === "boom") throw new Error("secret internals");
            if (req.name === "slow") await new Promise((r) => setTimeout(r, 300));
            ctx.responseHeader.set("x-answer", "42");
            return { registeredModel: { name: req.name, description: req.name === "big" ? "x".repeat(3000) : "d" } };
          },
        }),
      ],
    };
    server = await startServer(common);
    plain = await startServer({ ...common, connectFastPath: false });
  });
  after(async () => {
    await server.shutdown();
    await plain.shutdown();
  });

  async function post(path: string, body: string, headers: Record<string, string> = {}, to: RunningServer = server) {
    // fetch asks for gzip/deflate/br like a browser; the answer is decompressed for us.
    const res = await fetch(`${to.httpUrl}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined, answer: res.headers.get("x-answer"), encoding: res.headers.get("content-encoding") };
  }
  const GET_MODEL = "/mlmesh.registry.v1.RegistryService/GetModel";

  /** The same request through the fast path and through connect-node. */
  async function both(path: string, body: string, headers: Record<string, string> = {}) {
    protocols = [];
    const fast = await post(path, body, headers);
    const viaConnect = await post(path, body, headers, plain);
    return { fast, viaConnect };
  }

  it("answers a call like connect-node, response headers included, through the fast path", async () => {
    const { fast, viaConnect } = await both(GET_MODEL, JSON.stringify({ name: "m1" }));
    assert.equal(fast.status, 200);
    assert.deepEqual(fast, viaConnect);
    assert.deepEqual(fast.json, { registeredModel: { name: "m1", description: "d" } });
    assert.equal(fast.answer, "42");
    assert.deepEqual(protocols, ["connect", "connect"]);
    assert.equal(fast.encoding, null, "small answers are not compressed");
  });

  it("maps handler errors to the same status and JSON error body", async () => {
    for (const name of ["bad", "boom"]) {
      const { fast, viaConnect } = await both(GET_MODEL, JSON.stringify({ name }));
      assert.deepEqual(fast, viaConnect, name);
    }
    const bad = await post(GET_MODEL, JSON.stringify({ name: "bad" }));
    assert.equal(bad.status, 400);
    assert.equal(bad.json.code, "invalid_argument");
    assert.match(bad.json.message, /name/);
  });

  it("refuses malformed JSON and unknown fields as invalid_argument", async () => {
    for (const body of ["{not json", JSON.stringify({ name: "x", nmae: "typo" })]) {
      const { fast, viaConnect } = await both(GET_MODEL, body);
      assert.equal(fast.status, 400, body);
      assert.equal(fast.json.code, "invalid_argument");
      assert.equal(viaConnect.status, 400);
      assert.equal(viaConnect.json.code, "invalid_argument");
    }
  });

  it("refuses a body over the message limit as resource_exhausted", async () => {
    const r = await post(GET_MODEL, JSON.stringify({ name: "x".repeat(5000) }));
    assert.equal(r.status, 429);
    assert.equal(r.json.code, "resource_exhausted");
  });

  it("ends a call past its connect-timeout-ms with deadline_exceeded", async () => {
    const t0 = performance.now();
    const r = await post(GET_MODEL, JSON.stringify({ name: "slow" }), { "connect-timeout-ms": "50" });
    assert.equal(r.status, 504);
    assert.equal(r.json.code, "deadline_exceeded");
    assert.ok(performance.now() - t0 < 280, "answered at the deadline, not when the handler finished");
  });

  it("compresses a large answer as connect-node does", async () => {
    const { fast, viaConnect } = await both(GET_MODEL, JSON.stringify({ name: "big" }), { "accept-encoding": "gzip" });
    assert.deepEqual(fast, viaConnect);
    assert.equal(fast.encoding, "gzip");
    assert.equal(fast.json.registeredModel.description.length, 3000);
  });

  it("leaves unknown paths to connect-node (404)", async () => {
    const { fast, viaConnect } = await both("/mlmesh.registry.v1.RegistryService/NoSuchMethod", "{}");
    assert.equal(fast.status, 404);
    assert.equal(viaConnect.status, 404);
  });

  it("gives the same answer through the mesh client over gRPC", async () => {
    const { createServiceClient } = await import("./clients.js");
    const client = createServiceClient(RegistryService, server.grpcUrl);
    await assert.rejects(client.getModel({ name: "bad" }), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument);
  });
});
