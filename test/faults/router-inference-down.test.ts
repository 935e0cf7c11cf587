// Fault: the inference process is SIGKILLed under a steady Predict load through the router.
// registry, features, experiments, inference and router each run as `mlmesh serve <svc>` on
// a NATS of this test's own. The endpoint has a 300 ms budget and a fallback score. Asserted,
// with counts printed: no Predict call fails or takes much longer than the budget while
// inference is gone (the router answers with the fallback), and once inference is back the
// model answers again by itself. Skipped (with the reason) while the router cannot Predict.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { ServedBy } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { FaultNats, hasNatsBinary } from "../support/fault-nats.js";
import { ServiceProcess, SteadyLoad, sleep, startMeshProcesses, until } from "./harness.js";

const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const SPEC = { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } };
const BUDGET_MS = 300;
const ENTITIES = 200;
const key = (i: number) => ({ keys: { account_id: { kind: { case: "stringValue" as const, value: `a${i % ENTITIES}` } } } });

describe("fault: inference killed under Predict load through the router", { skip: hasNatsBinary() ? false : "needs nats-server on PATH" }, () => {
  let nats: FaultNats;
  const procs: ServiceProcess[] = [];
  let inferenceProc: ServiceProcess;
  let router: Client<typeof RouterService>;
  let unavailable: string | undefined;
  const model = `fault_router_${Date.now()}`;

  before(async () => {
    nats = await FaultNats.start();
    const mesh = await startMeshProcesses(nats.url);
    inferenceProc = mesh.inference;
    const { registry: registryProc, features: featuresProc, experiments: experimentsProc, router: routerProc } = mesh;
    procs.push(registryProc, featuresProc, experimentsProc, inferenceProc, routerProc);
    const registry = createServiceClient(RegistryService, registryProc.grpc);
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: SPEC });
    await registry.setAlias({ modelName: model, alias: "production", version: 1n });
    const features = createServiceClient(FeatureService, featuresProc.grpc);
    await features.applyFeatureViews({
      views: [
        {
          name: "acct",
          entities: [{ name: "account_id", type: ValueType.STRING }],
          features: FEATURES.map((f) => ({ name: f.split(":")[1]!, type: ValueType.FLOAT32 })),
        },
      ],
    });
    await features.writeFeatures({
      view: "acct",
      rows: Array.from({ length: ENTITIES }, (_, i) => ({
        entityKey: key(i),
        eventTime: { seconds: BigInt(Math.floor(Date.now() / 1000) - 60), nanos: 0 },
        values: [0, 1, 2].map((c) => ({ kind: { case: "floatValue" as const, value: (i % 10) + c } })),
      })),
    });
    router = createServiceClient(RouterService, routerProc.grpc);
    try {
      await router.applyEndpoint({
        endpoint: { name: "fault-ep", model, entities: ["account_id"], latencyBudget: { total: { seconds: 0n, nanos: BUDGET_MS * 1e6 } }, fallbacks: { fallbackScore: 0.5 } },
      });
      await router.predict({ endpoint: "fault-ep", entityKey: key(0) });
    } catch (err) {
      const e = ConnectError.from(err);
      unavailable = `the router cannot Predict yet (${Code[e.code]}: ${e.rawMessage.slice(0, 160)})`;
    }
  });
  after(async () => {
    for (const p of procs.reverse()) await p.kill();
    await nats?.dispose();
  });

  it("answers within the budget (fallback) while inference is gone, and recovers by itself", { timeout: 180_000 }, async (t) => {
    if (unavailable) {
      t.skip(unavailable);
      return;
    }
    const answers: Array<{ at: number; servedBy: ServedBy; ms: number }> = [];
    const load = new SteadyLoad(
      async (i) => {
        const t0 = Date.now();
        const res = await router.predict({ endpoint: "fault-ep", requestId: `p${i}`, entityKey: key(i) }, { timeoutMs: 10_000 });
        answers.push({ at: Date.now(), servedBy: res.servedBy, ms: Date.now() - t0 });
      },
      4,
      10,
    );
    await sleep(2000);
    await inferenceProc.kill();
    const killedAt = Date.now();
    await sleep(5000);
    await inferenceProc.start();
    const backAt = Date.now();
    const recovered = await until(() => answers.some((a) => a.at > backAt && a.servedBy !== ServedBy.FALLBACK), 30_000, 100);
    const recoveredMs = (answers.find((a) => a.at > backAt && a.servedBy !== ServedBy.FALLBACK)?.at ?? Date.now()) - backAt;
    await sleep(2000);
    const stats = await load.stop();
    const down = answers.filter((a) => a.at > killedAt + 500 && a.at < backAt);
    const summary = {
      predict_ok: stats.ok,
      predict_failed: stats.failed,
      failures: stats.failures,
      answers_while_inference_down: down.length,
      fallback_while_down: down.filter((a) => a.servedBy === ServedBy.FALLBACK).length,
      slowest_ms: Math.round(stats.maxMs),
      p99_ms: Math.round(stats.p99Ms),
      recovered_after_restart_ms: recoveredMs,
      model_answers_after_recovery: answers.filter((a) => a.at > backAt && a.servedBy !== ServedBy.FALLBACK).length,
    };
    t.diagnostic(`router with inference down: ${JSON.stringify(summary)}`);
    console.log(`faults/router-inference-down: ${JSON.stringify(summary)}`);
    assert.deepEqual(stats.failures, {}, "a Predict call failed");
    assert.ok(down.length > 0 && summary.fallback_while_down === down.length, "while inference is down every answer is the fallback");
    // The budget plus transport and a loaded CI machine's scheduling slack.
    assert.ok(stats.maxMs < BUDGET_MS + 1500, `a call took ${Math.round(stats.maxMs)} ms (budget ${BUDGET_MS} ms)`);
    assert.ok(recovered, "model answers resume after inference is back");
  });
});
