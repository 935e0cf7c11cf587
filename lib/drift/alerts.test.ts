// The alert state machine: defaults, hysteresis on a noisy series (one alert, no flapping),
// recovery streaks, minimum window size, falling metrics and policy validation.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_DRIFT_POLICY,
  INITIAL_ALERT_STATE,
  evaluateAlert,
  levelOf,
  replayAlerts,
  resolveAlertPolicy,
} from "./alerts.js";

/** mulberry32: deterministic noise for the series. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const W = 1000; // window size above the minimum

test("defaults: PSI 0.1 warn, 0.2 alert", () => {
  assert.equal(DEFAULT_DRIFT_POLICY.warn, 0.1);
  assert.equal(DEFAULT_DRIFT_POLICY.alert, 0.2);
  assert.equal(levelOf(0.05, DEFAULT_DRIFT_POLICY), "OK");
  assert.equal(levelOf(0.1, DEFAULT_DRIFT_POLICY), "WARN");
  assert.equal(levelOf(0.2, DEFAULT_DRIFT_POLICY), "ALERT");
});

test("a noisy series around the alert threshold raises one alert and does not flap", () => {
  const next = rng(42);
  // 200 evaluations of PSI 0.2 ± 0.015: without hysteresis this crosses 0.2 ~100 times.
  const series = Array.from({ length: 200 }, () => ({ value: 0.2 + (next() - 0.5) * 0.03, windowSize: W }));
  const naiveCrossings = series.filter((o, i) => i > 0 && (o.value >= 0.2) !== (series[i - 1]!.value >= 0.2)).length;
  assert.ok(naiveCrossings > 50, `the series should be noisy (${naiveCrossings} crossings)`);
  const { state, transitions } = replayAlerts([{ value: 0.05, windowSize: W }, ...series]);
  assert.deepEqual(
    transitions.map((t) => [t.from, t.to]),
    [["OK", "ALERT"]],
  );
  assert.equal(state.level, "ALERT");
});

test("recovery needs clearAfter consecutive evaluations below threshold - margin", () => {
  const policy = resolveAlertPolicy({ clearAfter: 3, margin: 0.02 });
  let s = evaluateAlert(INITIAL_ALERT_STATE, { value: 0.25, windowSize: W }, policy);
  assert.deepEqual(s.transition, { from: "OK", to: "ALERT", value: 0.25 });
  // Below 0.2 but not below 0.18: not clear, streak stays 0.
  s = evaluateAlert(s.state, { value: 0.19, windowSize: W }, policy);
  assert.equal(s.state.level, "ALERT");
  assert.equal(s.state.clearStreak, 0);
  // Two clear evaluations, then one back in the band resets the streak.
  s = evaluateAlert(s.state, { value: 0.05, windowSize: W }, policy);
  s = evaluateAlert(s.state, { value: 0.05, windowSize: W }, policy);
  assert.equal(s.state.clearStreak, 2);
  s = evaluateAlert(s.state, { value: 0.185, windowSize: W }, policy);
  assert.equal(s.state.clearStreak, 0);
  assert.equal(s.transition, undefined);
  // Three clear in a row: drop to the level the last value indicates.
  s = evaluateAlert(s.state, { value: 0.15, windowSize: W }, policy);
  s = evaluateAlert(s.state, { value: 0.12, windowSize: W }, policy);
  assert.equal(s.transition, undefined);
  s = evaluateAlert(s.state, { value: 0.11, windowSize: W }, policy);
  assert.deepEqual(s.transition, { from: "ALERT", to: "WARN", value: 0.11 });
  // From WARN, escalation back to ALERT is immediate.
  s = evaluateAlert(s.state, { value: 0.21, windowSize: W }, policy);
  assert.deepEqual(s.transition, { from: "WARN", to: "ALERT", value: 0.21 });
});

test("a real shift and a real recovery give exactly one alert and one clear", () => {
  const next = rng(9);
  const noise = () => (next() - 0.5) * 0.02;
  const series = [
    ...Array.from({ length: 50 }, () => 0.03 + noise()),
    ...Array.from({ length: 50 }, () => 0.35 + noise()),
    ...Array.from({ length: 50 }, () => 0.03 + noise()),
  ].map((value) => ({ value, windowSize: W }));
  const { transitions } = replayAlerts(series);
  assert.deepEqual(
    transitions.map((t) => [t.from, t.to]),
    [
      ["OK", "ALERT"],
      ["ALERT", "OK"],
    ],
  );
});

test("windows below the minimum size are not evaluated", () => {
  const policy = resolveAlertPolicy({ minWindow: 500 });
  const r = evaluateAlert(INITIAL_ALERT_STATE, { value: 0.9, windowSize: 499 }, policy);
  assert.equal(r.skipped, "window-too-small");
  assert.equal(r.state, INITIAL_ALERT_STATE);
  assert.equal(evaluateAlert(INITIAL_ALERT_STATE, { value: NaN, windowSize: W }, policy).skipped, "not-a-number");
  assert.equal(evaluateAlert(INITIAL_ALERT_STATE, { value: 0.9, windowSize: 500 }, policy).state.level, "ALERT");
});

test("falling metrics (AUC) alert on a drop with the same hysteresis", () => {
  const policy = resolveAlertPolicy({ direction: "below", warn: 0.75, alert: 0.7, margin: 0.01, clearAfter: 2, minWindow: 1 });
  const auc = [0.82, 0.8, 0.74, 0.69, 0.705, 0.695, 0.705, 0.715, 0.72, 0.9, 0.9].map((value) => ({ value, windowSize: 100 }));
  const { transitions } = replayAlerts(auc, policy);
  assert.deepEqual(
    transitions.map((t) => [t.from, t.to, t.value]),
    [
      ["OK", "WARN", 0.74],
      ["WARN", "ALERT", 0.69],
      ["ALERT", "WARN", 0.72],
      ["WARN", "OK", 0.9],
    ],
  );
});

test("per-model overrides are validated", () => {
  assert.equal(resolveAlertPolicy({ alert: 0.3 }).alert, 0.3);
  assert.throws(() => resolveAlertPolicy({ warn: 0.3, alert: 0.2 }), /warn/);
  assert.throws(() => resolveAlertPolicy({ clearAfter: 0 }), /clearAfter/);
  assert.throws(() => resolveAlertPolicy({ minWindow: 1.5 }), /minWindow/);
  assert.throws(() => resolveAlertPolicy({ margin: -1 }), /margin/);
  assert.throws(() => resolveAlertPolicy({ direction: "below" }), /warn/);
  assert.ok(Object.isFrozen(resolveAlertPolicy()));
});
