// Guardrail non-inferiority against statsmodels ttest_ind(..., alternative, value=∓margin)
// (fixtures/noninferiority.json, relative 1e-6), and the experiment decision rules.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import { type ArmEvidence, type NonInferiorityResult, decideExperiment, nonInferiorityTest } from "./decision.js";
import { statsFromValues } from "./sufficient-stats.js";
import { assertClose, loadFixture, worstDeviation } from "./testing.js";
import { welchFromStats } from "./welch.js";

interface Fixture {
  cases: {
    name: string;
    direction: "increase" | "decrease";
    margin: number;
    control: number[];
    treatment: number[];
    expected: { pValue: number; inferiorityPValue: number; df: number; status: string };
  }[];
}

const fx = loadFixture<Fixture>("noninferiority.json");

test("non-inferiority p-values and status match statsmodels one-sided Welch tests", () => {
  for (const c of fx.cases) {
    const w = welchFromStats(statsFromValues(c.control), statsFromValues(c.treatment));
    assertClose(w.df, c.expected.df, `${c.name} df`);
    const r = nonInferiorityTest({ estimate: w.diff, se: w.se, df: w.df, margin: c.margin, direction: c.direction });
    assertClose(r.pValue, c.expected.pValue, `${c.name} p`);
    assertClose(r.inferiorityPValue, c.expected.inferiorityPValue, `${c.name} inferiority p`);
    assert.equal(r.status, c.expected.status, c.name);
  }
});

test("the worst-case bound sits on the bad side and decides PASS", () => {
  const up = nonInferiorityTest({ estimate: -0.1, se: 0.1, margin: 0.5, direction: "increase" });
  assert.equal(up.status, "PASS");
  assert.ok(up.worstCaseBound > -0.5 && up.worstCaseBound < -0.1);
  const down = nonInferiorityTest({ estimate: 3, se: 0.5, margin: 1, direction: "decrease" });
  assert.equal(down.status, "FAIL");
  assert.ok(down.worstCaseBound > 3);
  assert.throws(() => nonInferiorityTest({ estimate: 1, se: 0, margin: 1, direction: "increase" }), ValidationError);
  assert.throws(() => nonInferiorityTest({ estimate: 1, se: 1, margin: -1, direction: "increase" }), ValidationError);
  assert.throws(() => nonInferiorityTest({ estimate: 1, se: 1, margin: 1, direction: "up" as "increase" }), /direction/);
});

const pass: NonInferiorityResult = nonInferiorityTest({ estimate: 0, se: 0.1, margin: 1, direction: "decrease" });
const fail: NonInferiorityResult = nonInferiorityTest({ estimate: 5, se: 0.1, margin: 1, direction: "decrease" });
const open: NonInferiorityResult = nonInferiorityTest({ estimate: 0, se: 1, margin: 1, direction: "decrease" });
const ok = { flagged: false, pValue: 0.4 };

function arm(name: string, estimate: number, pValue: number, guardrail = pass): ArmEvidence {
  return { arm: name, primary: { metric: "revenue", estimate, pValue, direction: "increase" }, guardrails: [{ metric: "latency", result: guardrail }] };
}

test("SRM makes the experiment INVALID even with a significant win", () => {
  const d = decideExperiment({ srm: { flagged: true, pValue: 1e-9 }, arms: [arm("b", 2, 1e-12)], sampleComplete: true });
  assert.equal(d.decision, "INVALID");
  assert.match(d.reason, /sample ratio mismatch/);
  assert.equal(d.arm, null);
});

test("a moved invariant makes the experiment INVALID", () => {
  const a: ArmEvidence = { ...arm("b", 2, 1e-6), invariants: [{ metric: "page_loads", pValue: 0.001 }] };
  const d = decideExperiment({ srm: ok, arms: [a], sampleComplete: false });
  assert.equal(d.decision, "INVALID");
  assert.match(d.reason, /page_loads/);
});

test("SHIP needs a significant improvement and every guardrail non-inferior; the best arm ships", () => {
  const d = decideExperiment({ srm: ok, arms: [arm("b", 1, 0.01), arm("c", 3, 0.02), arm("d", 5, 0.3)], sampleComplete: false });
  assert.equal(d.decision, "SHIP");
  assert.equal(d.arm, "c");
  assert.deepEqual(
    d.arms.map((a) => a.decision),
    ["SHIP", "SHIP", "KEEP_RUNNING"],
  );
});

test("a failed guardrail blocks shipping; an open one waits, then blocks at the planned size", () => {
  assert.equal(decideExperiment({ srm: ok, arms: [arm("b", 1, 0.001, fail)], sampleComplete: false }).decision, "DO_NOT_SHIP");
  const waiting = decideExperiment({ srm: ok, arms: [arm("b", 1, 0.001, open)], sampleComplete: false });
  assert.equal(waiting.decision, "KEEP_RUNNING");
  assert.match(waiting.reason, /latency/);
  assert.equal(decideExperiment({ srm: ok, arms: [arm("b", 1, 0.001, open)], sampleComplete: true }).decision, "DO_NOT_SHIP");
});

test("significant harm, or nothing at the planned size, is DO_NOT_SHIP; otherwise keep running", () => {
  const harm = decideExperiment({ srm: ok, arms: [arm("b", -1, 0.001)], sampleComplete: false });
  assert.equal(harm.decision, "DO_NOT_SHIP");
  assert.match(harm.reason, /significantly worse/);
  assert.equal(decideExperiment({ srm: ok, arms: [arm("b", 0.1, 0.4)], sampleComplete: false }).decision, "KEEP_RUNNING");
  assert.equal(decideExperiment({ srm: ok, arms: [arm("b", 0.1, 0.4)], sampleComplete: true }).decision, "DO_NOT_SHIP");
  const latency: ArmEvidence = { arm: "b", primary: { metric: "latency_ms", estimate: -12, pValue: 0.001, direction: "decrease" } };
  assert.equal(decideExperiment({ srm: ok, arms: [latency], sampleComplete: false }).decision, "SHIP");
});

test("bad input is a ValidationError", () => {
  assert.throws(() => decideExperiment({ srm: ok, arms: [], sampleComplete: true }), ValidationError);
  assert.throws(() => decideExperiment({ srm: ok, arms: [arm("b", Number.NaN, 0.1)], sampleComplete: true }), ValidationError);
  assert.throws(() => decideExperiment({ srm: ok, arms: [arm("b", 1, 1.1)], sampleComplete: true }), ValidationError);
});

test("worst relative deviation from statsmodels", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-6);
});
