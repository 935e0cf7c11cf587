// State changes, their audit records and their events agree: a mutation is committed with
// its audit record and its event in one transaction, and the event reaches NATS afterwards
// through the outbox, with its metadata filled in.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { RegisteredModelDeletedSchema, type RegisteredModelDeleted } from "../../gen/mlmesh/events/v1/registry_events_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { JetStreamBus } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

describe("registry: audit and events through the outbox", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  const model = `churn_${Date.now()}`;

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
  });

  it("publishes RegisteredModelDeleted after the delete commits, and audits create, update and delete", async () => {
    const registry = createServiceClient(RegistryService, proc.endpoint("registry").grpc);
    await registry.createModel({ name: model, description: "v0", reason: "new use case" });
    await registry.updateModel({ registeredModel: { name: model, description: "v1", owner: "team-growth" }, updateMask: { paths: ["description", "owner"] } });
    await assert.rejects(
      registry.updateModel({ registeredModel: { name: model }, updateMask: { paths: ["latest_version"] } }),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /update_mask/.test(ConnectError.from(e).rawMessage),
    );
    const got = await registry.getModel({ name: model });
    assert.equal(got.registeredModel?.description, "v1");
    assert.equal(got.registeredModel?.owner, "team-growth");
    await registry.deleteModel({ name: model, reason: "retired" });
    await assert.rejects(registry.getModel({ name: model }), (e: unknown) => ConnectError.from(e).code === Code.NotFound);

    const audit = await registry.listAuditRecords({ modelName: model });
    assert.deepEqual(
      audit.auditRecords.map((r) => [r.action, r.principal, r.reason]),
      [
        ["model.create", "anonymous", "new use case"],
        ["model.update", "anonymous", ""],
        ["model.delete", "anonymous", "retired"],
      ],
    );
    const update = audit.auditRecords[1]!;
    assert.equal(JSON.parse(update.beforeJson).description, "v0");
    assert.equal(JSON.parse(update.afterJson).description, "v1");
    assert.equal(audit.auditRecords[2]!.afterJson, "");

    const bus = await JetStreamBus.connect({ servers: nats.url, name: "registry-events-test", logger: createLogger({ level: "silent" }) });
    const events: RegisteredModelDeleted[] = [];
    const sub = await bus.subscribe({
      stream: "MLMESH_REGISTRY",
      durable: `test_${model}`,
      filterSubject: `mlmesh.registry.registered_model_deleted.${model}`,
      schema: RegisteredModelDeletedSchema,
      handler: async (e) => {
        events.push(e.message);
      },
    });
    const deadline = Date.now() + 10_000;
    while (events.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await sub.stop();
    await bus.close();
    assert.equal(events.length, 1);
    const [e] = events;
    assert.equal(e!.modelName, model);
    assert.equal(e!.reason, "retired");
    assert.equal(e!.meta?.producer, "registry");
    assert.equal(e!.meta?.principal, "anonymous");
    assert.match(e!.meta?.eventId ?? "", /^[0-9a-f-]{36}$/);
    assert.ok((e!.meta?.sequence ?? 0n) > 0n);
  });
});
