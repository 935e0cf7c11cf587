// Every registry mutation reaches NATS as its event, in commit order, with the order inside
// one transaction the contract documents: StageChanged of the displaced version, then of the
// moved one, then AliasMoved; ModelVersionDeleted before the AliasMoved it releases.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { AckPolicy, connect, DeliverPolicy, type NatsConnection } from "nats";
import {
  AliasMovedSchema,
  ModelVersionCreatedSchema,
  ModelVersionDeletedSchema,
  ModelVersionUpdatedSchema,
  PromotionPolicyChangedSchema,
  RegisteredModelDeletedSchema,
  StageChangedSchema,
} from "../../gen/mlmesh/events/v1/registry_events_pb.js";
import { Stage } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload, waitFor } from "../fixtures/models/registry-client.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const SCHEMAS: Record<string, DescMessage> = {
  model_version_created: ModelVersionCreatedSchema,
  model_version_updated: ModelVersionUpdatedSchema,
  stage_changed: StageChangedSchema,
  alias_moved: AliasMovedSchema,
  model_version_deleted: ModelVersionDeletedSchema,
  registered_model_deleted: RegisteredModelDeletedSchema,
  promotion_policy_changed: PromotionPolicyChangedSchema,
};

describe("registry events on NATS", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let nc: NatsConnection;
  const model = `order_${Date.now()}`;

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc.close();
    await proc.stop();
    await nats.stop();
  });

  it("arrive in commit order with the documented order inside each transaction", async () => {
    const client = createServiceClient(RegistryService, proc.endpoint("registry").grpc);
    await upload(client, model, fixture("lr_v1.onnx"), { spec: { lineage: { metrics: { auc: 0.8 } } } });
    await upload(client, model, fixture("lr_v2.onnx"), { create: false });
    await client.promoteModelVersion({ modelName: model, version: 1n, reason: "r1" });
    await client.setPromotionPolicy({ policy: { modelName: model, rules: [{ kind: { case: "metricThreshold", value: { metric: "auc", comparator: 2, value: 0.5 } } }] } });
    await client.transitionStage({ modelName: model, version: 2n, stage: Stage.STAGING });
    await client.promoteModelVersion({ modelName: model, version: 2n, override: true, reason: "no metrics yet" });
    await client.setAlias({ modelName: model, alias: "champion", version: 1n });
    await client.updateModelVersion({ modelVersion: { modelName: model, version: 1n, description: "old" }, updateMask: { paths: ["description"] } });
    await client.deleteModelVersion({ modelName: model, version: 1n, force: true, reason: "retire" });
    await client.deleteModel({ name: model, force: true, reason: "done" });

    const js = nc.jetstream();
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.add("MLMESH_REGISTRY", { durable_name: `test_${model}`, ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, filter_subject: `mlmesh.registry.*.${model}` });
    const consumer = await js.consumers.get("MLMESH_REGISTRY", `test_${model}`);
    const got: Array<{ kind: string; seq: bigint; e: Record<string, unknown> }> = [];
    const messages = await consumer.consume();
    const reading = (async () => {
      for await (const m of messages) {
        const kind = m.subject.split(".")[2]!;
        const e = fromBinary(SCHEMAS[kind]!, m.data) as unknown as Record<string, unknown> & { meta?: { sequence: bigint } };
        got.push({ kind, seq: e.meta!.sequence, e });
      }
    })();
    const line = (g: (typeof got)[number]) => {
      const e = g.e as Record<string, unknown>;
      if (g.kind === "stage_changed") return `stage ${e.version} ${Stage[e.fromStage as number]}->${Stage[e.toStage as number]}${e.displacedByVersion ? ` by ${e.displacedByVersion}` : ""}${e.overridden ? ` override ${(e.overriddenRules as string[]).join(",")}` : ""}`;
      if (g.kind === "alias_moved") return `alias ${e.alias} ${e.previousVersion}->${e.version}`;
      if (g.kind === "model_version_created") return `created ${e.version}${e.modelCreated ? " +model" : ""}`;
      if (g.kind === "model_version_deleted") return `deleted ${e.version} released ${(e.releasedAliases as string[]).join(",")}`;
      if (g.kind === "model_version_updated") return `updated ${e.version} ${(e.updatedFields as string[]).join(",")}`;
      return g.kind;
    };
    await waitFor(() => (got.length >= 18 ? true : undefined)).catch(() => assert.fail(`only ${got.length} events: ${got.map(line).join(" | ")}`));
    await messages.close();
    await reading;
    await jsm.consumers.delete("MLMESH_REGISTRY", `test_${model}`);
    assert.deepEqual(got.map(line), [
      "created 1 +model",
      "created 2",
      "stage 1 NONE->PRODUCTION",
      "alias production 0->1",
      "promotion_policy_changed",
      "stage 2 NONE->STAGING",
      "alias staging 0->2",
      "stage 1 PRODUCTION->ARCHIVED by 2",
      "stage 2 STAGING->PRODUCTION override auc >= 0.5",
      "alias production 1->2",
      "alias staging 2->0",
      "alias champion 0->1",
      "updated 1 description",
      "deleted 1 released champion",
      "alias champion 1->0",
      "deleted 2 released production",
      "alias production 2->0",
      "registered_model_deleted",
    ].slice(0, got.length));
    assert.equal(got.length, 18);
    for (let i = 1; i < got.length; i++) assert.ok(got[i]!.seq > got[i - 1]!.seq, "EventMeta.sequence increases");
  });
});
