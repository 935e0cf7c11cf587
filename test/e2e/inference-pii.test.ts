// PII never reaches the prediction log in clear: a model bound (registry) to features of a
// view (features service) where `age` is tagged PII is scored through real processes, and
// the records captured from NATS carry age only as the salted HMAC, for named rows and for
// dense tensors alike, while untagged features stay in clear. Tagging one more feature (a
// compatible ApplyFeatureViews) masks it from then on, through the FeatureViewApplied event.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { connect, type NatsConnection } from "nats";
import { PredictionLogBatchSchema, type PredictionLogged } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { TensorType } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const SALT = "pii-test-salt-0123456789";
const hmac = (clear: string) => createHmac("sha256", SALT).update(clear).digest("hex");
// Exactly representable in float32, so the value the server sees prints the same.
const AGES = [41.25, 57.5, 33.75];

/** Every record logged for `model` so far, with the raw batch bytes (read from the stream's start). */
async function captured(nc: NatsConnection, model: string): Promise<{ records: PredictionLogged[]; bytes: Uint8Array[] }> {
  const subject = `mlmesh.inference.predictions.${model}`;
  const js = nc.jetstream();
  const consumer = await js.consumers.get("MLMESH_INFERENCE", { filterSubjects: subject });
  const info = await (await nc.jetstreamManager()).streams.info("MLMESH_INFERENCE", { subjects_filter: subject });
  const total = info.state.subjects?.[subject] ?? 0;
  const out = { records: [] as PredictionLogged[], bytes: [] as Uint8Array[] };
  let seen = 0;
  while (seen < total) {
    let got = 0;
    for await (const m of await consumer.fetch({ max_messages: 256, expires: 1000 })) {
      got++;
      seen++;
      out.bytes.push(m.data);
      out.records.push(...fromBinary(PredictionLogBatchSchema, m.data).records);
    }
    if (got === 0) break;
  }
  return out;
}

async function recordsOf(nc: NatsConnection, model: string, requestId: string, want: number) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const all = await captured(nc, model);
    const mine = all.records.filter((r) => r.requestId === requestId);
    if (mine.length >= want || Date.now() > deadline) return { records: mine, bytes: all.bytes };
    await new Promise((r) => setTimeout(r, 100));
  }
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

describe("inference: PII-tagged features are hashed in the prediction log", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let registryProc: MlmeshProcess;
  let featuresProc: MlmeshProcess;
  let inferenceProc: MlmeshProcess;
  let inference: ReturnType<typeof createServiceClient<typeof InferenceService>>;
  let features: ReturnType<typeof createServiceClient<typeof FeatureService>>;
  const view = `acct_${Date.now()}`;
  const model = `pii_${Date.now()}`;
  const refs = [`${view}:age`, `${view}:calls`, `${view}:spend`];
  const viewDef = (callsPii: boolean) => ({
    name: view,
    entities: [{ name: "account_id", type: ValueType.STRING }],
    features: [
      { name: "age", type: ValueType.FLOAT64, pii: true },
      { name: "calls", type: ValueType.FLOAT64, pii: callsPii },
      { name: "spend", type: ValueType.FLOAT64 },
    ],
  });

  before(async () => {
    nats = await testNats();
    nc = await connect({ servers: nats.url });
    registryProc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }));
    featuresProc = await startMlmesh(["serve", "features"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }));
    features = createServiceClient(FeatureService, featuresProc.endpoint("features").grpc);
    await features.applyFeatureViews({ views: [viewDef(false)], reason: "pii test" });
    const registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: refs }], entityKeys: ["account_id"] } } });
    inferenceProc = await startMlmesh(
      ["serve", "inference"],
      await isolatedEnv({
        MLMESH_NATS_URL: nats.url,
        MLMESH_LOG_LEVEL: "warn",
        MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc,
        MLMESH_FEATURES_ADDR: featuresProc.endpoint("features").grpc,
        MLMESH_INFERENCE_PII_SALT: SALT,
      }),
    );
    inference = createServiceClient(InferenceService, inferenceProc.endpoint("inference").grpc);
  });
  after(async () => {
    await nc?.close();
    await inferenceProc?.stop();
    await featuresProc?.stop();
    await registryProc?.stop();
    await nats?.stop();
  });

  it("hashes age (named rows and dense tensors) and keeps calls and spend in clear", async () => {
    const rows = AGES.map((age, i) => ({
      values: { age: { kind: { case: "floatValue" as const, value: age } }, calls: { kind: { case: "floatValue" as const, value: i + 1 } }, [`${view}:spend`]: { kind: { case: "floatValue" as const, value: 100 + i } } },
      entity: { keys: { account_id: { kind: { case: "stringValue" as const, value: `a${i}` } } } },
    }));
    await inference.score({ modelRef: `${model}@1`, requestId: "rows-1", inputs: { case: "rows", value: { rows } } });
    await inference.score({
      modelRef: `${model}@1`,
      requestId: "dense-1",
      inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT32, shape: [BigInt(AGES.length), 3n], floatData: AGES.flatMap((age, i) => [age, i + 1, 100 + i]) }] } },
    });

    const named = await recordsOf(nc, model, "rows-1", AGES.length);
    assert.equal(named.records.length, AGES.length);
    for (const r of named.records) {
      const i = r.rowIndex;
      const age = r.inputs["age"]!.kind;
      assert.equal(age.case, "stringValue");
      assert.equal(age.value, hmac(String(AGES[i])), `row ${i}: age is the salted HMAC of its value`);
      assert.deepEqual([r.inputs["calls"]!.kind.case, r.inputs["calls"]!.kind.value], ["floatValue", i + 1]);
      assert.deepEqual([r.inputs[`${view}:spend`]!.kind.case, r.inputs[`${view}:spend`]!.kind.value], ["floatValue", 100 + i]);
    }

    const dense = await recordsOf(nc, model, "dense-1", AGES.length);
    assert.equal(dense.records.length, AGES.length);
    for (const r of dense.records) {
      const i = r.rowIndex;
      // A dense input with PII columns is logged per feature ref, never as the clear vector.
      assert.equal(r.inputs["x"], undefined);
      assert.equal(r.inputs[`${view}:age`]!.kind.value, hmac(String(AGES[i])), "the same hash as for the named row: joinable");
      assert.deepEqual([r.inputs[`${view}:calls`]!.kind.case, r.inputs[`${view}:calls`]!.kind.value], ["doubleValue", i + 1]);
      assert.deepEqual([r.inputs[`${view}:spend`]!.kind.case, r.inputs[`${view}:spend`]!.kind.value], ["doubleValue", 100 + i]);
    }

    // Nowhere in the published bytes: not as float32, float64 or text.
    for (const age of AGES) {
      const f32 = new Uint8Array(new Float32Array([age]).buffer);
      const f64 = new Uint8Array(new Float64Array([age]).buffer);
      const text = new TextEncoder().encode(String(age));
      for (const b of dense.bytes) {
        assert.ok(!contains(b, f32) && !contains(b, f64) && !contains(b, text), `age ${age} appears in clear in a logged batch`);
      }
    }
  });

  it("masks a feature from the moment its view tags it PII", async () => {
    const applied = await features.applyFeatureViews({ views: [viewDef(true)], reason: "calls is personal" });
    assert.equal(applied.results[0]?.view?.version, 2n);
    const deadline = Date.now() + 10_000;
    let masked = false;
    for (let q = 0; !masked && Date.now() < deadline; q++) {
      const requestId = `after-tag-${q}`;
      await inference.score({
        modelRef: `${model}@1`,
        requestId,
        inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT32, shape: [1n, 3n], floatData: [AGES[0]!, 7, 100] }] } },
      });
      const got = await recordsOf(nc, model, requestId, 1);
      const calls = got.records[0]!.inputs[`${view}:calls`]!.kind;
      masked = calls.case === "stringValue" && calls.value === hmac("7");
      if (!masked) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(masked, "calls is hashed once its view tags it PII");
  });
});
