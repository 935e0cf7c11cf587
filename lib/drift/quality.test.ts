// Concept-drift metrics against scikit-learn (fixtures/quality.json): AUC with ties, clipped
// log loss, accuracy, calibration curve and ECE, and the rolling window.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { RollingQuality, accuracyAt, calibration, calibrationBinIndex, logLoss, rocAuc } from "./quality.js";

const q = JSON.parse(readFileSync(new URL("./fixtures/quality.json", import.meta.url), "utf8")) as {
  labels: number[];
  probs: number[];
  auc: number;
  logLoss: number;
  accuracy: number;
  accuracyAt0_3: number;
  calibration: { bins: number; probTrue: number[]; probPred: number[]; counts: number[]; ece: number };
};

function near(actual: number, expected: number, what: string, tol = 1e-6): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: got ${actual}, sklearn ${expected}`);
}

test("AUC with tied scores matches sklearn roc_auc_score", () => {
  near(rocAuc(q.labels, q.probs), q.auc, "auc");
  assert.equal(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75);
  assert.equal(rocAuc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]), 0.5);
  assert.throws(() => rocAuc([1, 1], [0.2, 0.3]), /both/);
});

test("log loss with clipped 0 and 1 probabilities matches sklearn log_loss", () => {
  near(logLoss(q.labels, q.probs), q.logLoss, "log loss");
  assert.ok(Number.isFinite(logLoss([1], [0])));
  assert.throws(() => logLoss([1], [1.2]), /\[0, 1\]/);
});

test("accuracy at a threshold matches sklearn accuracy_score", () => {
  near(accuracyAt(q.labels, q.probs), q.accuracy, "accuracy@0.5");
  near(accuracyAt(q.labels, q.probs, 0.3), q.accuracyAt0_3, "accuracy@0.3");
});

test("calibration bins match sklearn calibration_curve; ECE from the same bins", () => {
  const c = calibration(q.labels, q.probs, q.calibration.bins);
  assert.equal(c.bins.length, q.calibration.probTrue.length);
  c.bins.forEach((b, i) => {
    near(b.observed, q.calibration.probTrue[i]!, `prob_true[${i}]`);
    near(b.meanPredicted, q.calibration.probPred[i]!, `prob_pred[${i}]`);
    assert.equal(b.count, q.calibration.counts[i]);
  });
  near(c.ece, q.calibration.ece, "ece");
  // Inner edges belong to the lower bin, as np.searchsorted(side="left") puts them.
  assert.equal(calibrationBinIndex(0, 10), 0);
  assert.equal(calibrationBinIndex(0.1, 10), 0);
  assert.equal(calibrationBinIndex(0.1000001, 10), 1);
  assert.equal(calibrationBinIndex(1, 10), 9);
  assert.equal(calibration([1, 0], [1, 0]).ece, 0);
});

test("rolling window equals the one-shot metrics over its last `capacity` predictions", () => {
  const window = new RollingQuality({ capacity: 200 });
  q.labels.forEach((l, i) => window.add(q.probs[i]!, l as 0 | 1));
  const labels = q.labels.slice(-200);
  const probs = q.probs.slice(-200);
  const s = window.snapshot();
  assert.equal(s.n, 200);
  assert.equal(s.positives, labels.reduce((a, b) => a + b, 0));
  assert.equal(s.auc, rocAuc(labels, probs));
  assert.equal(s.logLoss, logLoss(labels, probs));
  assert.equal(s.accuracy, accuracyAt(labels, probs));
  assert.deepEqual(s.calibration, calibration(labels, probs));

  const single = new RollingQuality({ capacity: 3 });
  single.add(0.9, 1);
  assert.equal(single.snapshot().auc, null);
  assert.throws(() => new RollingQuality({ capacity: 3 }).snapshot(), /no labelled/);
  assert.throws(() => single.add(2, 1), /probability/);
});
