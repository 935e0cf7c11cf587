// The same RPCs over gRPC (an independent @grpc/grpc-js client with our generated types)
// and over Connect JSON on HTTP/1.1 (plain fetch, as curl would), with the same answers and
// the same error codes.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  CreateModelRequestSchema,
  CreateModelResponseSchema,
  ListModelsRequestSchema,
  ListModelsResponseSchema,
  RegistryService,
} from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { grpcJsClient, type GrpcJsClient } from "../support/grpc-js-client.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

async function connectJson(base: string, method: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}/mlmesh.registry.v1.RegistryService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("gRPC and Connect JSON serve the same RPCs", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let http: string;
  let client: GrpcJsClient;

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
    http = proc.endpoint("registry").http;
    client = grpcJsClient(RegistryService, proc.endpoint("registry").grpc);
  });
  after(async () => {
    client.close();
    await proc.stop();
    await nats.stop();
  });

  it("ListModels on an empty registry: {} over Connect JSON, empty list over gRPC", async () => {
    const r = await connectJson(http, "ListModels", {});
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, {});
    const g = await client.unary("ListModels", ListModelsRequestSchema, ListModelsResponseSchema, {});
    assert.equal(g.registeredModels.length, 0);
  });

  it("a model created over gRPC is listed identically over both protocols", async () => {
    const created = await client.unary("CreateModel", CreateModelRequestSchema, CreateModelResponseSchema, {
      name: "churn",
      description: "Predicts churn within 30 days",
      tags: { team: "growth" },
    });
    assert.equal(created.registeredModel?.name, "churn");
    assert.equal(created.registeredModel?.owner, "anonymous");
    const viaJson = await connectJson(http, "CreateModel", { name: "fraud", tags: { team: "risk" } });
    assert.equal(viaJson.status, 200, JSON.stringify(viaJson.json));

    const g = await client.unary("ListModels", ListModelsRequestSchema, ListModelsResponseSchema, {});
    const j = await connectJson(http, "ListModels", {});
    const jsonModels = j.json.registeredModels as Array<Record<string, unknown>>;
    assert.deepEqual(
      g.registeredModels.map((m) => [m.name, m.tags]),
      [
        ["churn", { team: "growth" }],
        ["fraud", { team: "risk" }],
      ],
    );
    assert.deepEqual(
      jsonModels.map((m) => [m.name, m.tags]),
      g.registeredModels.map((m) => [m.name, m.tags]),
    );
    // Paging works the same way over both.
    const page1 = await connectJson(http, "ListModels", { pageSize: 1 });
    assert.equal((page1.json.registeredModels as unknown[]).length, 1);
    const page2 = await client.unary("ListModels", ListModelsRequestSchema, ListModelsResponseSchema, {
      pageSize: 1,
      pageToken: page1.json.nextPageToken as string,
    });
    assert.deepEqual(
      page2.registeredModels.map((m) => m.name),
      ["fraud"],
    );
  });

  it("maps errors to the same codes with messages naming the field", async () => {
    await assert.rejects(
      client.unary("CreateModel", CreateModelRequestSchema, CreateModelResponseSchema, { name: "../etc/passwd" }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /^name: /.test(e.details),
    );
    const bad = await connectJson(http, "CreateModel", { name: "../etc/passwd" });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.code, "invalid_argument");
    assert.match(String(bad.json.message), /^name: /);

    await assert.rejects(
      client.unary("CreateModel", CreateModelRequestSchema, CreateModelResponseSchema, { name: "churn" }),
      (e: grpc.ServiceError) => e.code === grpc.status.ALREADY_EXISTS && /already exists/.test(e.details),
    );
    const dup = await connectJson(http, "CreateModel", { name: "churn" });
    assert.equal(dup.status, 409);
    assert.equal(dup.json.code, "already_exists");

    const missing = await connectJson(http, "GetModel", { name: "nope" });
    assert.equal(missing.status, 404);
    assert.equal(missing.json.code, "not_found");

    const typo = await connectJson(http, "ListModels", { pageSise: 3 });
    assert.equal(typo.status, 400, "unknown JSON fields are rejected, not ignored");
    const garbage = await connectJson(http, "ListModels", "{not json");
    assert.equal(garbage.status, 400);
  });

  it("carries the caller's deadline: an expired one is DEADLINE_EXCEEDED, not a hang", async () => {
    await assert.rejects(
      client.unary("ListModels", ListModelsRequestSchema, ListModelsResponseSchema, {}, { deadlineMs: 0 }),
      (e: grpc.ServiceError) => e.code === grpc.status.DEADLINE_EXCEEDED,
    );
  });
});
