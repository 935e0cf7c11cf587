// Fault: NATS is SIGKILLed under load and stays down for 10 s, then comes back with its store.
// registry, features, experiments, inference and router each run as `mlmesh serve <svc>` on a
// NATS of this test's own. Two steady loads run before, during and after the outage: Predict
// through the router and Score straight to inference; registry and router writes are made
// while NATS is down. Asserted, with exact counts printed:
//  - no Predict or Score call fails, and Predict is answered by the model (not the fallback);
//  - every predicted/scored row is one PredictionLogged record on the stream after the
//    restart: exactly those rows, none twice (request id + row index), no batch twice (msg id);
//  - every event made during the outage (registry model_version_updated, router
//    endpoint_applied) arrives exactly once.
// If the router cannot Predict (not built yet), the Predict half is left out and says so.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { PredictionLogBatchSchema } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { ServedBy } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { duplicates, readStream } from "../support/jetstream-read.js";
import { FaultNats, hasNatsBinary } from "../support/fault-nats.js";
import { ServiceProcess, SteadyLoad, sleep, startMeshProcesses, until } from "./harness.js";

const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const ROWS_PER_CALL = 3;
const OUTAGE_MS = 10_000;
const ENTITIES = 200;
const key = (i: number) => ({ keys: { account_id: { kind: { case: "stringValue" as const, value: `a${i % ENTITIES}` } } } });
const rowOf = (i: number) => ({
  values: Object.fromEntries(FEATURES.map((f, c) => [f.split(":")[1]!, { kind: { case: "floatValue" as const, value: (i % 97) + c } }])),
  entity: { keys: { account_id: { kind: { case: "stringValue" as const, value: `a${i}` } } } },
});

describe("fault: NATS SIGKILLed for 10 s under load", { skip: hasNatsBinary() ? false : "needs nats-server on PATH" }, () => {
  let nats: FaultNats;
  let registryProc: ServiceProcess;
  let inferenceProc: ServiceProcess;
  let registry: Client<typeof RegistryService>;
  let inference: Client<typeof InferenceService>;
  let router: Client<typeof RouterService>;
  let routerMissing: string | undefined;
  const others: ServiceProcess[] = [];
  const model = `fault_nats_${Date.now()}`;
  // A generous budget: this is about NATS, not latency on a loaded CI machine.
  const endpointSpec = (description: string) => ({ name: "nats-ep", model, entities: ["account_id"], description, latencyBudget: { total: { seconds: 3n, nanos: 0 } } });

  before(async () => {
    nats = await FaultNats.start();
    const mesh = await startMeshProcesses(nats.url);
    ({ registry: registryProc, inference: inferenceProc } = mesh);
    const { features: featuresProc, experiments: experimentsProc, router: routerProc } = mesh;
    others.push(featuresProc, experimentsProc, routerProc);
    registry = createServiceClient(RegistryService, registryProc.grpc);
    inference = createServiceClient(InferenceService, inferenceProc.grpc);
    router = createServiceClient(RouterService, routerProc.grpc);
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } } });
    await registry.setAlias({ modelName: model, alias: "production", version: 1n });
    await inference.loadModel({ modelRef: `${model}@1` });
    const features = createServiceClient(FeatureService, featuresProc.grpc);
    await features.applyFeatureViews({
      views: [{ name: "acct", entities: [{ name: "account_id", type: ValueType.STRING }], features: FEATURES.map((f) => ({ name: f.split(":")[1]!, type: ValueType.FLOAT32 })) }],
    });
    await features.writeFeatures({
      view: "acct",
      rows: Array.from({ length: ENTITIES }, (_, i) => ({
        entityKey: key(i),
        eventTime: { seconds: BigInt(Math.floor(Date.now() / 1000) - 60), nanos: 0 },
        values: [0, 1, 2].map((c) => ({ kind: { case: "floatValue" as const, value: (i % 10) + c } })),
      })),
    });
    try {
      await router.applyEndpoint({ endpoint: endpointSpec("") });
      const res = await router.predict({ endpoint: "nats-ep", requestId: "warm-0", entityKey: key(0) });
      if (res.servedBy === ServedBy.FALLBACK) routerMissing = "the router answered the warm-up Predict with its fallback";
    } catch (err) {
      const e = ConnectError.from(err);
      routerMissing = `the router cannot Predict (${Code[e.code]}: ${e.rawMessage.slice(0, 120)})`;
    }
  });
  after(async () => {
    for (const p of others.reverse()) await p.kill();
    await inferenceProc?.kill();
    await registryProc?.kill();
    await nats?.dispose();
  });

  it("keeps predicting; every prediction-log record and every event arrives exactly once after the restart", { timeout: 180_000 }, async (t) => {
    const scored: string[] = [];
    const load = new SteadyLoad(
      async (i) => {
        const requestId = `req-${i}`;
        const res = await inference.score(
          { modelRef: `${model}@1`, requestId, inputs: { case: "rows", value: { rows: Array.from({ length: ROWS_PER_CALL }, (_, r) => rowOf(i * ROWS_PER_CALL + r)) } } },
          { timeoutMs: 10_000 },
        );
        assert.equal(res.outputs.length, ROWS_PER_CALL);
        scored.push(requestId);
      },
      3,
      15,
    );
    const predicted: string[] = [];
    const notByModel: string[] = [];
    const predictLoad = routerMissing
      ? undefined
      : new SteadyLoad(
          async (i) => {
            const requestId = `pred-${i}`;
            const res = await router.predict({ endpoint: "nats-ep", requestId, entityKey: key(i) }, { timeoutMs: 10_000 });
            if (res.servedBy === ServedBy.FALLBACK) notByModel.push(requestId);
            else predicted.push(requestId);
          },
          2,
          15,
        );
    await sleep(3000);
    const beforeOutage = load.snapshot();
    const predictBefore = predictLoad?.snapshot();

    await nats.kill();
    const killedAt = Date.now();
    // Registry writes while NATS is down: committed with their events in the outbox.
    const EVENTS = 5;
    for (let k = 0; k < EVENTS; k++) {
      await registry.updateModelVersion({ modelVersion: { modelName: model, version: 1n, description: `outage edit ${k}` }, updateMask: { paths: ["description"] } });
      if (!routerMissing) await router.applyEndpoint({ endpoint: endpointSpec(`outage edit ${k}`) });
    }
    await sleep(OUTAGE_MS - (Date.now() - killedAt));
    const duringOutage = load.snapshot();
    const predictDuring = predictLoad?.snapshot();
    await nats.up();
    await sleep(4000);
    const stats = await load.stop();
    const predictStats = await predictLoad?.stop();

    // The prediction log: spooled records replay; count them all on the stream.
    const subject = `mlmesh.inference.predictions.${model}`;
    const wantRows = scored.length * ROWS_PER_CALL + predicted.length;
    let records: Array<{ requestId: string; rowIndex: number }> = [];
    let msgIds: string[] = [];
    await until(async () => {
      const msgs = await readStream(nats.url, "MLMESH_INFERENCE", subject).catch(() => []);
      // Only the load's requests (the setup's warm-up Predict is logged too).
      records = msgs.flatMap((m) =>
        fromBinary(PredictionLogBatchSchema, m.data)
          .records.filter((r) => r.requestId.startsWith("req-") || r.requestId.startsWith("pred-"))
          .map((r) => ({ requestId: r.requestId, rowIndex: r.rowIndex })),
      );
      msgIds = msgs.map((m) => m.msgId);
      return records.length >= wantRows;
    }, 30_000, 500);
    const events = await (async () => {
      let out: string[] = [];
      await until(async () => {
        const msgs = await readStream(nats.url, "MLMESH_REGISTRY", `mlmesh.registry.model_version_updated.${model}`).catch(() => []);
        out = msgs.map((m) => m.msgId);
        return out.length >= EVENTS;
      }, 20_000, 500);
      return out;
    })();

    let routerEvents: string[] = [];
    if (!routerMissing) {
      await until(async () => {
        const msgs = await readStream(nats.url, "MLMESH_ROUTER", "mlmesh.router.endpoint_applied.nats-ep").catch(() => []);
        routerEvents = msgs.map((m) => m.msgId);
        // One for the create before the outage, one per edit during it.
        return routerEvents.length >= EVENTS + 1;
      }, 20_000, 500);
    }
    const summary = {
      router: routerMissing ?? "Predict through the router",
      predict_calls_ok: predictStats?.ok ?? 0,
      predict_calls_failed: predictStats?.failed ?? 0,
      predict_failures: predictStats?.failures ?? {},
      predict_calls_during_outage: (predictDuring?.ok ?? 0) - (predictBefore?.ok ?? 0),
      predict_answered_by_fallback: notByModel.length,
      score_calls_ok: stats.ok,
      score_calls_failed: stats.failed,
      calls_before_outage: beforeOutage.ok,
      calls_during_outage: duringOutage.ok - beforeOutage.ok,
      rows_scored_or_predicted: wantRows,
      log_records: records.length,
      duplicate_records: duplicates(records.map((r) => `${r.requestId}#${r.rowIndex}`)).length,
      log_batches: msgIds.length,
      duplicate_batches: duplicates(msgIds).length,
      registry_events_made_during_outage: EVENTS,
      registry_events_arrived: events.length,
      duplicate_events: duplicates(events).length,
      router_events_expected: routerMissing ? 0 : EVENTS + 1,
      router_events_arrived: routerEvents.length,
      duplicate_router_events: duplicates(routerEvents).length,
      max_call_ms: Math.round(stats.maxMs),
    };
    t.diagnostic(`nats outage: ${JSON.stringify(summary)}`);
    console.log(`faults/nats-outage: ${JSON.stringify(summary)}`);

    assert.deepEqual(stats.failures, {}, "Score failed while NATS was down");
    assert.deepEqual(predictStats?.failures ?? {}, {}, "Predict failed while NATS was down");
    assert.equal(notByModel.length, 0, "Predict fell back while NATS was down");
    if (!routerMissing) assert.ok(summary.predict_calls_during_outage > 0, "Predict was served during the outage");
    assert.ok(summary.calls_during_outage > 0, "predictions were served during the outage");
    assert.equal(summary.log_records, wantRows, "exactly one record per scored row");
    assert.equal(summary.duplicate_records, 0);
    assert.equal(summary.duplicate_batches, 0);
    const byRequest = new Set(records.map((r) => r.requestId));
    assert.deepEqual(scored.filter((id) => !byRequest.has(id)), [], "every scored request is in the log");
    assert.deepEqual(predicted.filter((id) => !byRequest.has(id)), [], "every prediction is in the log");
    assert.equal(summary.registry_events_arrived, EVENTS, "every event made during the outage arrived once");
    assert.equal(summary.duplicate_events, 0);
    assert.equal(summary.router_events_arrived, summary.router_events_expected, "every router event arrived once");
    assert.equal(summary.duplicate_router_events, 0);
    if (routerMissing) t.diagnostic(`Predict half not run: ${routerMissing}`);
  });
});
