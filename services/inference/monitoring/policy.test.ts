// Drift policies: defaults from MLMESH_MONITORING_*, zero fields filled, validation naming
// the request field, relative quality thresholds made absolute, and the SQLite store
// keeping policies and alert states across a reopen.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { DriftPolicySchema, QualityMetric } from "../../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { readMonitoringConfig } from "../../../lib/config-monitoring.js";
import { ConfigError } from "../../../lib/config-read.js";
import { levelOf } from "../../../lib/drift/alerts.js";
import { ValidationError } from "../../../lib/errors.js";
import { effectivePolicy, MonitoringStore, psiAlertPolicy, qualityAlertPolicy } from "./policy.js";

const config = readMonitoringConfig({});

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err.field;
  }
  assert.fail("expected a ValidationError");
}

test("defaults: PSI 0.1 / 0.2, minimum window 100, hysteresis 0.02 x 3, 1 h window, AUC -0.03 / -0.05", () => {
  const p = effectivePolicy(undefined, config);
  assert.equal(p.psiWarn, 0.1);
  assert.equal(p.psiAlert, 0.2);
  assert.equal(p.minWindowCount, 100n);
  assert.equal(p.hysteresisMargin, 0.02);
  assert.equal(p.hysteresisEvaluations, 3);
  assert.equal(durationMs(p.window!), 3_600_000);
  assert.deepEqual(p.qualityThresholds.map((t) => [t.metric, t.warn, t.alert, t.relativeToBaseline]), [[QualityMetric.AUC, 0.03, 0.05, true]]);
  assert.equal(p.minLabelledCount, 200n);
  assert.equal(p.qualityWindowCount, 5000n);
  const psi = psiAlertPolicy(p);
  assert.equal(levelOf(0.15, psi), "WARN");
  assert.equal(levelOf(0.2, psi), "ALERT");
});

test("zero fields take the defaults; set fields are kept", () => {
  const p = effectivePolicy(create(DriftPolicySchema, { psiAlert: 0.3, window: durationFromMs(60_000) }), config);
  assert.equal(p.psiWarn, 0.1);
  assert.equal(p.psiAlert, 0.3);
  assert.equal(durationMs(p.window!), 60_000);
});

test("bad policies are refused naming the request field", () => {
  const bad = (init: Parameters<typeof create<typeof DriftPolicySchema>>[1]) => fieldOf(() => effectivePolicy(create(DriftPolicySchema, init), config));
  assert.equal(bad({ psiWarn: 0.3, psiAlert: 0.2 }), "policy.psi_warn");
  assert.equal(bad({ psiAlert: -1 }), "policy.psi_alert");
  assert.equal(bad({ minWindowCount: 1_000_000n }), "policy.min_window_count");
  assert.equal(bad({ window: durationFromMs(10) }), "policy.window");
  assert.equal(bad({ minLabelledCount: 300n, qualityWindowCount: 200n }), "policy.min_labelled_count");
  assert.equal(bad({ qualityThresholds: [{ metric: QualityMetric.UNSPECIFIED, warn: 0.1, alert: 0.2 }] }), "policy.quality_thresholds[0].metric");
  assert.equal(bad({ qualityThresholds: [{ metric: QualityMetric.AUC, warn: 0.6, alert: 0.7 }] }), "policy.quality_thresholds[0].warn");
  assert.equal(
    bad({ qualityThresholds: [{ metric: QualityMetric.LOG_LOSS, warn: 0.5, alert: 0.7 }, { metric: QualityMetric.LOG_LOSS, warn: 0.5, alert: 0.7 }] }),
    "policy.quality_thresholds[1].metric",
  );
});

test("relative quality thresholds become absolute from the baseline, in the metric's direction", () => {
  const p = effectivePolicy(undefined, config);
  const auc = qualityAlertPolicy(p.qualityThresholds[0]!, p, 0.9);
  assert.equal(auc.direction, "below");
  assert.ok(Math.abs(auc.warn - 0.87) < 1e-12 && Math.abs(auc.alert - 0.85) < 1e-12);
  assert.equal(levelOf(0.88, auc), "OK");
  assert.equal(levelOf(0.86, auc), "WARN");
  assert.equal(levelOf(0.8, auc), "ALERT");
  const ll = qualityAlertPolicy({ metric: QualityMetric.LOG_LOSS, warn: 0.1, alert: 0.2, relativeToBaseline: true } as never, p, 0.4);
  assert.equal(ll.direction, "above");
  assert.equal(levelOf(0.65, ll), "ALERT");
  const abs = qualityAlertPolicy({ metric: QualityMetric.ACCURACY, warn: 0.8, alert: 0.7, relativeToBaseline: false } as never, p, 0.95);
  assert.equal(levelOf(0.75, abs), "WARN");
});

test("the store keeps policies (protobuf) and alert states across a reopen", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-monitoring-"));
  try {
    const a = new MonitoringStore(dir);
    const p = effectivePolicy(create(DriftPolicySchema, { psiAlert: 0.25 }), config);
    a.setPolicy("churn", p);
    a.saveAlertState("churn", 3, "drift", "acct:tenure", { level: "ALERT", clearStreak: 1, evaluations: 7, transitions: 1, baseline: null });
    a.saveAlertState("churn", 3, "quality", "auc", { level: "OK", clearStreak: 0, evaluations: 2, transitions: 0, baseline: 0.91 });
    a.saveAlertState("churn", 3, "drift", "acct:tenure", { level: "OK", clearStreak: 0, evaluations: 9, transitions: 2, baseline: null });
    a.close();
    const b = new MonitoringStore(dir);
    assert.equal(b.policy("churn")?.psiAlert, 0.25);
    assert.equal(b.policy("other"), undefined);
    const states = b.alertStates("churn", 3);
    assert.deepEqual(states.get("drift|acct:tenure"), { level: "OK", clearStreak: 0, evaluations: 9, transitions: 2, baseline: null });
    assert.equal(states.get("quality|auc")?.baseline, 0.91);
    assert.equal(b.alertStates("churn", 4).size, 0);
    b.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("inconsistent MLMESH_MONITORING_* values are refused at start", () => {
  assert.throws(() => readMonitoringConfig({ MLMESH_MONITORING_PSI_WARN: "0.3" }), ConfigError);
  assert.throws(() => readMonitoringConfig({ MLMESH_MONITORING_MIN_WINDOW_COUNT: "900", MLMESH_MONITORING_WINDOW_COUNT: "500" }), ConfigError);
  assert.equal(readMonitoringConfig({ MLMESH_MONITORING_WINDOW: "5m" }).windowMs, 300_000);
});
