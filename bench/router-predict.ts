// Benchmark (not a test): what the router costs. One `mlmesh up` mesh on NATS; the same
// single-entity prediction (3 features of lr_v1.onnx) three ways at concurrency 1 and 16:
//   direct  — the client calls features.GetOnlineFeatures then inference.Score itself;
//   router  — Predict through the router (plan, budget, spans, metrics, post-processing);
//   shadow  — Predict on an endpoint mirroring every request to a second version.
// Ratios are against `direct` of the same concurrency.
// Endpoint names are unique per run: every router on the same NATS is a replica of the others.
// Run: node --import tsx bench/router-predict.ts   (needs NATS on MLMESH_NATS_URL or 127.0.0.1:4222)

import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { FeatureService } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { InferenceService } from "../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RouterService } from "../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../lib/clients.js";
import { fixture, upload } from "../test/fixtures/models/registry-client.js";
import { isolatedEnv, startMlmesh } from "../test/support/mlmesh-process.js";

const natsUrl = process.env.MLMESH_NATS_URL ?? "nats://127.0.0.1:4222";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const i64 = (x: number) => ({ kind: { case: "int64Value" as const, value: BigInt(x) } });
const f64 = (x: number) => ({ kind: { case: "doubleValue" as const, value: x } });

async function measure(concurrency: number, call: (i: number) => Promise<unknown>) {
  const lat: number[] = [];
  const warmEnd = performance.now() + 500;
  let n = 0;
  while (performance.now() < warmEnd) await call(n++);
  const end = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await call(n++);
        lat.push((performance.now() - s) * 1000);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return { rps: Math.round(lat.length / secs), p50us: Math.round(pct(lat, 50)), p99us: Math.round(pct(lat, 99)) };
}

const mesh = await startMlmesh(["up"], await isolatedEnv({ MLMESH_NATS_URL: natsUrl, MLMESH_LOG_LEVEL: "warn", MLMESH_ROUTER_DEFAULT_BUDGET_MS: "2000" }));

try {
  const registry = createServiceClient(RegistryService, mesh.endpoint("registry").grpc);
  const features = createServiceClient(FeatureService, mesh.endpoint("features").grpc);
  const inference = createServiceClient(InferenceService, mesh.endpoint("inference").grpc);
  const router = createServiceClient(RouterService, mesh.endpoint("router").grpc);
  const model = `bench_${Date.now().toString(36)}`;
  const spec = { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } };
  await upload(registry, model, fixture("lr_v1.onnx"), { spec });
  await upload(registry, model, fixture("lr_v2.onnx"), { spec });
  await registry.promoteModelVersion({ modelName: model, version: 1n, reason: "bench" });
  await features.applyFeatureViews({ views: [{ name: "acct", entities: [{ name: "account_id", type: ValueType.INT64 }], features: FEATURES.map((f) => ({ name: f.split(":")[1]!, type: ValueType.FLOAT64 })), ttl: durationFromMs(86_400_000) }] });
  await features.writeFeatures({ view: "acct", featureNames: ["tenure", "calls", "spend"], rows: Array.from({ length: 100 }, (_, i) => ({ entityKey: { keys: { account_id: i64(i) } }, eventTime: timestampFromMs(Date.now() - 1000), values: [f64(i), f64(i % 7), f64(i / 10)] })) });
  await router.applyEndpoint({ endpoint: { name: model.replace(/_/g, "-"), model, entities: ["account_id"] } });
  await router.applyEndpoint({ endpoint: { name: `${model.replace(/_/g, "-")}-shadow`, model, entities: ["account_id"], servingPlan: { plan: { case: "shadow", value: { shadowModelRefs: [`${model}@2`], mirrorFraction: 1 } } } } });
  const direct = async (i: number) => {
    const key = { keys: { account_id: i64(i % 100) } };
    const f = await features.getOnlineFeatures({ entities: [key], refs: FEATURES });
    const values = Object.fromEntries(FEATURES.map((r, j) => [r, f.rows[0]!.values[j]!.value!]));
    return inference.score({ modelRef: `${model}@1`, inputs: { case: "rows", value: { rows: [{ values, entity: key }] } } });
  };
  const predict = (endpoint: string) => (i: number) => router.predict({ endpoint, entityKey: { keys: { account_id: i64(i % 100) } } });
  const rows: Array<Record<string, string | number>> = [];
  for (const c of [1, 16]) {
    const base = await measure(c, direct);
    rows.push({ path: "direct", concurrency: c, ...base, p50_ratio: 1 });
    for (const [name, fn] of [["router", predict(model.replace(/_/g, "-"))], ["router+shadow", predict(`${model.replace(/_/g, "-")}-shadow`)]] as const) {
      const r = await measure(c, fn);
      rows.push({ path: name, concurrency: c, ...r, p50_ratio: Number((r.p50us / base.p50us).toFixed(2)) });
    }
  }
  console.table(rows);
} finally {
  await mesh.stop();
}
