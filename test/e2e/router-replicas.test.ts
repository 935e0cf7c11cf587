// Rollout windows across router replicas: two routers on one NATS (separate data dirs),
// the rollout started on A (so A runs its controller) while every request goes through B.
// B reports its canary/production observations over NATS and A's gates judge them: the
// rollout leaves the first step on B's traffic alone and is promoted, where A by itself
// would see no canary request and hold the step as inconclusive.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RolloutState, ServedBy } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const EXPECTED = JSON.parse(readFileSync(path.join(REPO_ROOT, "test/fixtures/inference/expected.json"), "utf8")) as Record<string, { inputs: number[][]; scores: number[] }>;
const V1 = EXPECTED["lr_v1.onnx"]!;
const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const i64 = (x: number) => ({ kind: { case: "int64Value" as const, value: BigInt(x) } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("rollout windows across router replicas", () => {
  let nats: TestNats;
  const procs: MlmeshProcess[] = [];
  let a: Client<typeof RouterService>;
  let b: Client<typeof RouterService>;
  let aProc: MlmeshProcess;
  const stamp = Date.now().toString(36);
  const model = `repl_${stamp}`;
  const ep = `repl-${stamp}`;

  before(async () => {
    nats = await testNats();
    const env = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" });
    const addr = (e: Record<string, string>, s: string) => `http://127.0.0.1:${e[`MLMESH_${s.toUpperCase()}_GRPC_PORT`]}`;
    const mesh = { MLMESH_REGISTRY_ADDR: addr(env, "registry"), MLMESH_FEATURES_ADDR: addr(env, "features"), MLMESH_INFERENCE_ADDR: addr(env, "inference"), MLMESH_EXPERIMENTS_ADDR: addr(env, "experiments") };
    const all = { ...env, ...mesh };
    procs.push(...(await Promise.all([startMlmesh(["serve", "registry"], all, 60_000), startMlmesh(["serve", "features"], all, 60_000)])));
    procs.push(await startMlmesh(["serve", "inference"], all, 60_000));
    const registry = createServiceClient(RegistryService, mesh.MLMESH_REGISTRY_ADDR);
    const features = createServiceClient(FeatureService, mesh.MLMESH_FEATURES_ADDR);
    await features.applyFeatureViews({ views: [{ name: "acct", entities: [{ name: "account_id", type: ValueType.INT64 }], features: FEATURES.map((f) => ({ name: f.split(":")[1]!, type: ValueType.FLOAT64 })), ttl: durationFromMs(3_600_000) }] });
    await features.writeFeatures({
      view: "acct",
      featureNames: ["tenure", "calls", "spend"],
      rows: V1.inputs.map((x, i) => ({ entityKey: { keys: { account_id: i64(i + 1) } }, eventTime: timestampFromMs(Date.now() - 1000), values: x.map((v) => ({ kind: { case: "doubleValue" as const, value: v } })) })),
    });
    const spec = { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } };
    await upload(registry, model, fixture("lr_v1.onnx"), { spec });
    await upload(registry, model, fixture("lr_v2.onnx"), { spec });
    await registry.promoteModelVersion({ modelName: model, version: 1n, reason: "first" });
    // Two replicas: own data dir and ports each, the same NATS and mesh.
    const routerEnv = async () => ({ ...(await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" })), ...mesh, MLMESH_ROUTER_ROLLOUT_TICK: "100ms", MLMESH_ROUTER_MIN_ROLLOUT_INTERVAL: "300ms", MLMESH_ROUTER_DEFAULT_BUDGET_MS: "5000" });
    aProc = await startMlmesh(["serve", "router"], await routerEnv(), 60_000);
    const bProc = await startMlmesh(["serve", "router"], await routerEnv(), 60_000);
    procs.push(aProc, bProc);
    a = createServiceClient(RouterService, aProc.endpoint("router").grpc);
    b = createServiceClient(RouterService, bProc.endpoint("router").grpc);
    await a.applyEndpoint({ endpoint: { name: ep, model, entities: ["account_id"] } });
  });

  after(async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await nats?.stop();
  });

  it("the controller on A promotes a canary on traffic that only B served", async () => {
    // B has the endpoint by replication.
    const deadline = Date.now() + 20_000;
    while (!(await b.getEndpoint({ name: ep }).then(() => true, () => false))) {
      if (Date.now() > deadline) throw new Error("endpoint not replicated to B");
      await sleep(100);
    }
    const started = (await a.startRollout({ endpoint: ep, modelRef: `${model}@2`, spec: { steps: [0.5, 1], interval: durationFromMs(1500), minRequests: 20n, maxErrorRate: 0.2 } })).rollout!;
    let stop = false;
    let canaryOnB = 0;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        const r = await b.predict({ endpoint: ep, entityKey: { keys: { account_id: i64((i % V1.inputs.length) + 1) } }, unitId: `u${i}` }).catch(() => undefined);
        if (r?.servedBy === ServedBy.CANARY) canaryOnB++;
        if (i % 20 === 19) await sleep(10);
      }
    })();
    try {
      let last = started;
      const until = Date.now() + 60_000;
      while (last.state !== RolloutState.PROMOTED && last.state !== RolloutState.ROLLED_BACK && Date.now() < until) {
        await sleep(200);
        last = (await a.getRolloutStatus({ endpoint: ep })).rollout!;
      }
      assert.equal(RolloutState[last.state], "PROMOTED", `rollout on A: ${RolloutState[last.state]} ${last.reason}`);
      assert.ok(canaryOnB > 0, "B served the canary");
      // A served nothing itself: everything its gates saw came from B's reports.
      const metrics = await (await fetch(`${aProc.endpoint("router").http}/metrics`)).text();
      assert.doesNotMatch(metrics, new RegExp(`mlmesh_router_requests_total\\{[^}]*endpoint="${ep}"[^}]*method="Predict"`), "A served no Predict");
      const steps = last.history.filter((h) => h.toState === RolloutState.PROGRESSING || h.toState === RolloutState.PROMOTING || h.toState === RolloutState.PROMOTED);
      assert.ok(steps.length >= 1, "the rollout moved on");
    } finally {
      stop = true;
      await traffic;
    }
  });
});
