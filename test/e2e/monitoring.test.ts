// Live monitoring through real processes (`mlmesh serve registry` + `mlmesh serve
// inference` on real NATS): traffic scored with Score reaches the monitor through the
// prediction log on JetStream; shifted inputs raise the PSI gauge and exactly one
// DriftAlert per drifting column (none for stable ones, none more while it stays shifted),
// and after the shift ends, hysteresis brings it back to OK with one more event. Delayed
// labels joined by request id give GetQuality answers and one QualityAlert on a drop.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { DriftAlertSchema, QualityAlertSchema, type DriftAlert } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { DriftState, QualityMetric } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { readStream } from "../support/jetstream-read.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const REF_N = 1000;
/** The reference sample of every column: a uniform grid on [0, 1). */
const grid = (i: number) => (i + 0.5) / REF_N;
/** A fixed permutation of the grid, so stable traffic covers it evenly and deterministically. */
const stable = (k: number, col: number) => grid((k * 7919 + col * 331) % REF_N);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000, seen?: () => unknown): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${seen ? `; last seen: ${JSON.stringify(seen(), (_k, x) => (typeof x === "bigint" ? Number(x) : x))}` : ""}`);
    await sleep(150);
  }
}

/** A sample of `name` whose labels include all of `labels` (any order). */
function gauge(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.lastIndexOf("}"));
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

describe("monitoring: live drift and concept drift through the mesh", () => {
  let nats: TestNats;
  let registryProc: MlmeshProcess;
  let inferenceProc: MlmeshProcess;
  /** A second replica that gets no Score calls: it sees the traffic through the prediction log. */
  let replicaB: MlmeshProcess;
  let inferenceEnv: Record<string, string>;
  let registry: ReturnType<typeof createServiceClient<typeof RegistryService>>;
  let inference: ReturnType<typeof createServiceClient<typeof InferenceService>>;
  let inferenceB: ReturnType<typeof createServiceClient<typeof InferenceService>>;
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const driftModel = `mon_drift_${run}`;
  const qualityModel = `mon_quality_${run}`;
  const bareModel = `mon_bare_${run}`;
  /** The drift model has no feature binding (no feature service needed): its columns are x[0..2]. */
  const COLUMNS = ["x[0]", "x[1]", "x[2]"];
  const spec = (withReference: boolean) =>
    withReference
      ? {
          reference: {
            source: {
              case: "sample" as const,
              value: { columns: COLUMNS.map((name, c) => ({ name, values: { case: "numeric" as const, value: { values: Array.from({ length: REF_N }, (_, i) => stable(i, c)) } } })) },
            },
          },
        }
      : {};
  const metrics = async () => (await fetch(`${inferenceProc.endpoint("inference").http}/metrics`)).text();

  before(async () => {
    nats = await testNats();
    registryProc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }));
    const monitoringEnv = async () =>
      isolatedEnv({
        MLMESH_NATS_URL: nats.url,
        MLMESH_LOG_LEVEL: "warn",
        MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc,
        MLMESH_MONITORING_WINDOW_COUNT: "500",
        MLMESH_MONITORING_EVALUATE_INTERVAL: "150ms",
      });
    inferenceEnv = await monitoringEnv();
    [inferenceProc, replicaB] = await Promise.all([startMlmesh(["serve", "inference"], inferenceEnv), startMlmesh(["serve", "inference"], await monitoringEnv())]);
    registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
    inference = createServiceClient(InferenceService, inferenceProc.endpoint("inference").grpc);
    inferenceB = createServiceClient(InferenceService, replicaB.endpoint("inference").grpc);
    await upload(registry, driftModel, fixture("lr_v1.onnx"), { spec: spec(true) });
    await upload(registry, qualityModel, fixture("lr_v1.onnx"), { spec: spec(false) });
    await upload(registry, bareModel, fixture("lr_v1.onnx"), { spec: spec(false) });
  });
  after(async () => {
    await replicaB?.stop();
    await inferenceProc?.stop();
    await registryProc?.stop();
    await nats?.stop();
  });

  const score = (model: string, requestId: string, rows: number[][]) =>
    inference.score({
      modelRef: `${model}@1`,
      requestId,
      inputs: { case: "rows", value: { rows: rows.map((r) => ({ values: { x: { kind: { case: "floatVectorValue" as const, value: { values: r } } } } })) } },
    });

  /** 500 rows (one prediction log batch, so the window turns over at once); x[0] shifted by `shift`. */
  const traffic = (from: number, shift: number) => Array.from({ length: 500 }, (_, i) => [0, 1, 2].map((c) => stable(from + i, c) + (c === 0 ? shift : 0)));

  const driftEvents = async (): Promise<DriftAlert[]> =>
    (await readStream(nats.url, "MLMESH_INFERENCE", `mlmesh.inference.drift_alert.${driftModel}`)).map((m) => fromBinary(DriftAlertSchema, m.data));

  it("drift: shifted traffic raises the PSI gauge and one alert per drifting column; hysteresis brings it back once", async () => {
    const policy = (await inference.setDriftPolicy({ modelName: driftModel, policy: { minWindowCount: 400n } })).policy!;
    assert.equal(policy.psiWarn, 0.1);
    assert.equal(policy.psiAlert, 0.2);
    assert.equal(policy.minWindowCount, 400n);
    assert.equal(policy.hysteresisEvaluations, 3);
    assert.equal((await inference.getDriftPolicy({ modelName: driftModel })).policy?.minWindowCount, 400n);
    // The other replica applies the same policy (DriftPolicyChanged on NATS).
    await until("the policy on replica B", async () => ((await inferenceB.getDriftPolicy({ modelName: driftModel })).policy?.minWindowCount === 400n ? true : undefined));

    // Below the minimum window: insufficient data, no state yet.
    await score(driftModel, "warm", traffic(0, 0).slice(0, 100));
    let last: unknown;
    const early = await until(
      "the first records in the window",
      async () => {
        const d = await inference.getDrift({ modelRef: `${driftModel}@1` });
        last = d.features;
        return d.features.find((f) => f.feature === "x[0]")!.windowCount >= 100n ? d : undefined;
      },
      20_000,
      () => [last, inferenceProc.stderr().slice(-3000)],
    );
    assert.equal(early.state, DriftState.INSUFFICIENT_DATA);
    assert.deepEqual(early.features.map((f) => f.feature), [...COLUMNS, "__score__"]);

    // Stable traffic: everything OK, PSI low.
    await score(driftModel, "stable-0", traffic(100, 0));
    const ok = await until("a full stable window", async () => {
      const d = await inference.getDrift({ modelRef: `${driftModel}@1` });
      return d.features.every((f) => f.windowCount === 500n) ? d : undefined;
    });
    for (const f of ok.features) {
      if (f.feature === "__score__") continue;
      assert.ok(f.psi < 0.1, `${f.feature} PSI ${f.psi} on stable traffic`);
      assert.equal(f.state, DriftState.OK, f.feature);
    }
    const before = await until("the PSI gauge", async () => gauge(await metrics(), "mlmesh_inference_drift_value", { model: driftModel, feature: "x[0]", metric: "psi" }));
    assert.ok(before < 0.1, `gauge before the shift: ${before}`);

    // Shifted x[0] (+0.6), several windows in a row: the gauge rises, one ALERT event.
    for (let q = 0; q < 4; q++) {
      await score(driftModel, `shift-${q}`, traffic(600 + q * 500, 0.6));
      await sleep(500);
    }
    const shifted = await until("the shifted PSI gauge", async () => {
      const v = gauge(await metrics(), "mlmesh_inference_drift_value", { model: driftModel, feature: "x[0]", metric: "psi" });
      return v !== undefined && v >= 0.2 ? v : undefined;
    });
    assert.ok(shifted > 1, `x[0] PSI ${shifted} after a +0.6 shift on [0, 1)`);
    const d = await inference.getDrift({ modelRef: `${driftModel}@1` });
    assert.equal(d.state, DriftState.ALERT);
    const x0 = d.features.find((f) => f.feature === "x[0]")!;
    assert.equal(x0.state, DriftState.ALERT);
    assert.ok(x0.wasserstein > 0.3 && x0.jsDistance > 0.5 && x0.hellinger > 0.5 && x0.klDivergence > 1, JSON.stringify({ w: x0.wasserstein, js: x0.jsDistance, h: x0.hellinger, kl: x0.klDivergence }));
    assert.equal(d.features.find((f) => f.feature === "x[1]")!.state, DriftState.OK);
    // Replica B never got a Score call: it counted the same traffic from the prediction log.
    const b = await until("replica B's alert", async () => {
      const r = await inferenceB.getDrift({ modelRef: `${driftModel}@1` });
      return r.state === DriftState.ALERT ? r : undefined;
    });
    assert.deepEqual(b.features.map((f) => [f.feature, f.windowCount, f.state]), d.features.map((f) => [f.feature, f.windowCount, f.state]));
    assert.equal(b.features[0]!.psi, x0.psi, "same windows, same PSI");
    const m = await metrics();
    assert.equal(gauge(m, "mlmesh_inference_drift_state", { model: driftModel, feature: "x[0]" }), 2);
    assert.equal(gauge(m, "mlmesh_inference_drift_state", { model: driftModel, feature: "x[2]" }), 0);

    const alerts = await until("the drift alert events", async () => {
      const e = await driftEvents();
      return e.some((a) => a.feature === "x[0]") && e.some((a) => a.feature === "__score__") ? e : undefined;
    });
    const onTenure = alerts.filter((a) => a.feature === "x[0]");
    assert.equal(onTenure.length, 1, "one alert for x[0]: not one per evaluation, not one per replica");
    assert.equal(onTenure[0]!.previousState, DriftState.OK);
    assert.equal(onTenure[0]!.state, DriftState.ALERT);
    assert.equal(onTenure[0]!.metric, "psi");
    assert.equal(onTenure[0]!.threshold, 0.2);
    assert.equal(onTenure[0]!.version, 1n);
    assert.ok(onTenure[0]!.value >= 0.2 && onTenure[0]!.windowCount >= 400n);
    assert.equal(alerts.filter((a) => a.feature === "__score__").length, 1, "the score moves with x[0]: one alert");
    assert.equal(alerts.filter((a) => a.feature === "x[1]" || a.feature === "x[2]").length, 0, "no alert for stable columns");

    // Back to stable: left only after 3 clear evaluations (each new window is one), once.
    await score(driftModel, "back-0", traffic(3000, 0));
    await sleep(600);
    assert.equal((await inference.getDrift({ modelRef: `${driftModel}@1` })).features[0]!.state, DriftState.ALERT, "one clear evaluation is not enough");
    for (let q = 1; q < 5; q++) {
      await score(driftModel, `back-${q}`, traffic(3000 + q * 500, 0));
      await sleep(500);
    }
    const cleared = await until("the OK transition", async () => {
      const e = (await driftEvents()).filter((a) => a.feature === "x[0]");
      return e.length >= 2 ? e : undefined;
    });
    await sleep(800);
    const final = (await driftEvents()).filter((a) => a.feature === "x[0]");
    assert.equal(final.length, 2, `exactly ALERT then OK, got ${final.map((a) => `${a.previousState}->${a.state}`).join(", ")}`);
    assert.equal(cleared[1]!.previousState, DriftState.ALERT);
    assert.equal(cleared[1]!.state, DriftState.OK);
    assert.equal((await inference.getDrift({ modelRef: `${driftModel}@1` })).features[0]!.state, DriftState.OK);
    assert.equal((await inferenceB.getDrift({ modelRef: `${driftModel}@1` })).features[0]!.state, DriftState.OK);
  });

  it("concept drift: delayed labels joined by request id; AUC drop gives one QualityAlert", async () => {
    await inference.setDriftPolicy({ modelName: qualityModel, policy: { minLabelledCount: 100n, qualityWindowCount: 200n } });
    const rows = (from: number) => Array.from({ length: 200 }, (_, i) => [0, 1, 2].map((c) => stable(from + i, c)));
    const ids = (req: string) => Array.from({ length: 200 }, (_, i) => (i === 0 ? req : `${req}#${i}`));

    // Phase 1: labels agree with the model (positive when its score is above the median).
    const first = await score(qualityModel, "q1", rows(0));
    // The same request also scored by another model (as a shadow would be): it gets the labels too.
    await score(bareModel, "q1", rows(0));
    const s1 = first.outputs.map((o) => o.score);
    const median1 = [...s1].sort((a, b) => a - b)[100]!;
    const r1 = await inference.recordOutcomes({ outcomes: ids("q1").map((requestId, i) => ({ requestId, label: s1[i]! >= median1 ? 1 : 0 })) });
    assert.equal(r1.joined + r1.pending, 200n, "every outcome joined now or kept pending");
    const good = await until("the first quality window", async () => {
      const q = (await inference.getQuality({ modelRef: `${qualityModel}@1` })).report!;
      return q.labelledCount === 200n && q.state !== DriftState.INSUFFICIENT_DATA ? q : undefined;
    });
    assert.equal(good.auc, 1);
    const expectedAccuracy = s1.filter((s, i) => (s >= 0.5 ? 1 : 0) === (s >= median1 ? 1 : 0)).length / 200;
    assert.ok(Math.abs(good.accuracy - expectedAccuracy) < 1e-12, `accuracy ${good.accuracy}, expected ${expectedAccuracy}`);
    assert.equal(good.state, DriftState.OK);
    assert.equal(good.calibration.reduce((n, b) => n + Number(b.count), 0), 200);

    const shadow = await until("the shadow's quality", async () => {
      const q = (await inference.getQuality({ modelRef: `${bareModel}@1` })).report!;
      return q.labelledCount === 200n ? q : undefined;
    });
    assert.equal(shadow.auc, 1);
    // A repeated outcome is not counted twice.
    const dup = await inference.recordOutcomes({ outcomes: [{ requestId: "q1", label: 1 }] });
    assert.equal(dup.joined, 0n);

    // Phase 2: the world changed; labels now disagree with the model.
    const second = await score(qualityModel, "q2", rows(500));
    const s2 = second.outputs.map((o) => o.score);
    const median2 = [...s2].sort((a, b) => a - b)[100]!;
    await sleep(400); // the predictions are in the log by now: these join at once
    const r2 = await inference.recordOutcomes({ outcomes: ids("q2").map((requestId, i) => ({ requestId, label: s2[i]! >= median2 ? 0 : 1 })) });
    assert.equal(r2.joined + r2.pending, 200n);
    const bad = await until("the quality alert", async () => {
      const q = (await inference.getQuality({ modelRef: `${qualityModel}@1` })).report!;
      return q.state === DriftState.ALERT ? q : undefined;
    });
    assert.equal(bad.auc, 0);
    assert.equal(bad.labelledCount, 200n);
    // The labels went to replica A only; B joined them from OutcomesRecorded.
    const badB = await until("replica B's quality alert", async () => {
      const q = (await inferenceB.getQuality({ modelRef: `${qualityModel}@1` })).report!;
      return q.state === DriftState.ALERT ? q : undefined;
    });
    assert.equal(badB.auc, 0);
    assert.equal(badB.labelledCount, 200n);
    await sleep(600);
    const events = (await readStream(nats.url, "MLMESH_INFERENCE", `mlmesh.inference.quality_alert.${qualityModel}`)).map((e) => fromBinary(QualityAlertSchema, e.data));
    assert.equal(events.length, 1, "one QualityAlert (both replicas made the same transition)");
    assert.equal(events[0]!.metric, "auc");
    assert.equal(events[0]!.baseline, 1);
    assert.equal(events[0]!.value, 0);
    assert.equal(events[0]!.previousState, DriftState.OK);
    assert.equal(events[0]!.state, DriftState.ALERT);
    const m = await metrics();
    assert.equal(gauge(m, "mlmesh_inference_quality_value", { model: qualityModel, version: "1", metric: "auc" }), 0);
    assert.equal(gauge(m, "mlmesh_inference_quality_state", { model: qualityModel, version: "1" }), 2);
    assert.equal(gauge(m, "mlmesh_inference_quality_baseline", { model: qualityModel, version: "1", metric: "auc" }), 1);
  });

  it("a restarted replica keeps its policies and alert states (baseline included)", async () => {
    await inferenceProc.stop();
    inferenceProc = await startMlmesh(["serve", "inference"], inferenceEnv);
    inference = createServiceClient(InferenceService, inferenceProc.endpoint("inference").grpc);
    assert.equal((await inference.getDriftPolicy({ modelName: qualityModel })).policy?.qualityWindowCount, 200n);
    assert.equal((await inference.getDriftPolicy({ modelName: driftModel })).policy?.minWindowCount, 400n);
    // Windows are in memory: the quality window refills from new traffic and labels. Without
    // the stored baseline (AUC 1) this first window would become the baseline and read OK.
    const rows = Array.from({ length: 200 }, (_, i) => [0, 1, 2].map((c) => stable(900 + i, c)));
    const res = await score(qualityModel, "q3", rows);
    const s3 = res.outputs.map((o) => o.score);
    const median3 = [...s3].sort((a, b) => a - b)[100]!;
    await inference.recordOutcomes({ outcomes: s3.map((s, i) => ({ requestId: i === 0 ? "q3" : `q3#${i}`, label: s >= median3 ? 0 : 1 })) });
    const q = await until("the restored quality state", async () => {
      const r = (await inference.getQuality({ modelRef: `${qualityModel}@1` })).report!;
      return r.labelledCount === 200n && r.state !== DriftState.INSUFFICIENT_DATA ? r : undefined;
    });
    assert.equal(q.state, DriftState.ALERT);
    const m = await metrics();
    assert.equal(gauge(m, "mlmesh_inference_quality_baseline", { model: qualityModel, version: "1", metric: "auc" }), 1);
    await sleep(500);
    const events = await readStream(nats.url, "MLMESH_INFERENCE", `mlmesh.inference.quality_alert.${qualityModel}`);
    assert.equal(events.length, 1, "no second alert for a state that was already standing");
  });

  it("answers bad requests with the right status and field", async () => {
    const code = async (p: Promise<unknown>) => {
      try {
        await p;
        return undefined;
      } catch (err) {
        return ConnectError.from(err);
      }
    };
    const e1 = await code(inference.recordOutcomes({ outcomes: [{ requestId: "x", label: 1 }, { requestId: "y", label: 0.5 }] }));
    assert.equal(e1?.code, Code.InvalidArgument);
    assert.match(e1!.message, /outcomes\[1\]\.label/);
    const e2 = await code(inference.recordOutcomes({ outcomes: [{ requestId: "", label: 1 }] }));
    assert.match(e2!.message, /outcomes\[0\]\.request_id/);
    const e3 = await code(inference.setDriftPolicy({ modelName: driftModel, policy: { psiWarn: 0.5, psiAlert: 0.2 } }));
    assert.equal(e3?.code, Code.InvalidArgument);
    assert.match(e3!.message, /policy\.psi_warn/);
    const e4 = await code(inference.setDriftPolicy({ modelName: driftModel, policy: { qualityThresholds: [{ metric: QualityMetric.AUC, warn: 0.1, alert: 0.05, relativeToBaseline: true }] } }));
    assert.match(e4!.message, /policy\.quality_thresholds\[0\]\.warn/);
    const e5 = await code(inference.getDrift({ modelRef: `${bareModel}@1` }));
    assert.equal(e5?.code, Code.FailedPrecondition, "no reference distributions");
    const e6 = await code(inference.getDrift({ modelRef: "" }));
    assert.match(e6!.message, /model_ref/);
    const e7 = await code(inference.getDriftPolicy({ modelName: "" }));
    assert.match(e7!.message, /model_name/);
    // The refused policy left the stored one alone.
    assert.equal((await inference.getDriftPolicy({ modelName: driftModel })).policy?.minWindowCount, 400n);
  });
});
