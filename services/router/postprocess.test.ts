// Post-processing and the request-path helpers: calibration against scikit-learn's numbers
// (fixtures/make_calibration.py), the latency budget split, candidate rules, gate statistics.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { LatencyBudgetSchema, PredicateOperator, RuleSetSchema } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import type { Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import { planBudget } from "./budget.js";
import { applyBoosts, applyExclusions, applyFilters, parseIdList, pickTop, type Scored } from "./candidates.js";
import { isotonic, platt, topClasses } from "./postprocess.js";
import { quantile, scorePsi } from "./window.js";

const REF = JSON.parse(readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures/calibration.json"), "utf8")) as {
  inputs: number[];
  platt: { a: number; b: number; outputs: number[] };
  isotonic: { x: number[]; y: number[]; outputs: number[] };
};
const f64 = (x: number): Value => ({ kind: { case: "doubleValue", value: x } }) as Value;
const s = (x: string): Value => ({ kind: { case: "stringValue", value: x } }) as Value;

describe("post-processing", () => {
  it("Platt scaling matches scikit-learn's _SigmoidCalibration", () => {
    REF.inputs.forEach((x, i) => assert.ok(Math.abs(platt(x, REF.platt.a, REF.platt.b) - REF.platt.outputs[i]!) < 1e-12));
  });
  it("isotonic calibration matches IsotonicRegression(out_of_bounds='clip')", () => {
    REF.inputs.forEach((x, i) => assert.ok(Math.abs(isotonic(x, REF.isotonic.x, REF.isotonic.y) - REF.isotonic.outputs[i]!) < 1e-12, `x=${x}`));
  });
  it("keeps the k most probable classes", () => {
    assert.deepEqual(topClasses({ a: 0.1, b: 0.6, c: 0.3 }, 2), { b: 0.6, c: 0.3 });
    assert.deepEqual(topClasses({ a: 0.1, b: 0.9 }, 0), { a: 0.1, b: 0.9 });
  });
});

describe("latency budget", () => {
  it("gives unset slices what the set ones leave, and scales to a tighter client deadline", () => {
    const b = create(LatencyBudgetSchema, { total: durationFromMs(100), featureFetch: durationFromMs(40) });
    const full = planBudget(b, 200, undefined, false);
    assert.equal(full.effectiveMs, 100);
    assert.deepEqual(full.slices, { candidate_selection: 0, feature_fetch: 40, scoring: 30, post_processing: 30 });
    const tight = planBudget(b, 200, 50, false);
    assert.equal(tight.effectiveMs, 50);
    assert.deepEqual(tight.slices, { candidate_selection: 0, feature_fetch: 20, scoring: 15, post_processing: 15 });
    assert.equal(planBudget(undefined, 200, 500, true).slices.candidate_selection, 50, "rank: four equal shares of the default");
  });
});

describe("candidate rules", () => {
  const rules = create(RuleSetSchema, {
    rules: [
      { name: "gone", rule: { case: "exclusion", value: { candidateIds: ["9"], contextKey: "seen" } } },
      { name: "cheap", rule: { case: "filter", value: { allOf: [{ operand: { case: "featureRef", value: "i:price" }, operator: PredicateOperator.LE, valueContextKey: "max" }] } } },
      { name: "fresh", rule: { case: "boost", value: { when: [{ operand: { case: "featureRef", value: "i:new" }, operator: PredicateOperator.EQ, value: s("y") }], effect: { case: "multiply", value: 2 } } } },
      { name: "cap", rule: { case: "categoryCap", value: { categoryFeatureRef: "i:cat", maxPerCategory: 1, perCategory: { b: 2 } } } },
    ],
  });
  const feats: Record<string, Record<string, Value>> = {
    "1": { "i:price": f64(5), "i:new": s("n"), "i:cat": s("a") },
    "2": { "i:price": f64(50), "i:new": s("y"), "i:cat": s("a") },
    "3": { "i:price": f64(7), "i:new": s("y"), "i:cat": s("a") },
    "4": { "i:price": f64(8), "i:new": s("n"), "i:cat": s("b") },
    "5": { "i:new": s("n"), "i:cat": s("b") },
    "6": { "i:price": f64(1), "i:new": s("n"), "i:cat": s("b") },
  };
  it("excludes by id and context list, filters on features (missing = false), boosts and caps per category", () => {
    const ctx = { seen: s('["6"]'), max: f64(10) };
    const ex = applyExclusions(rules, ["1", "2", "3", "4", "5", "6", "9"], ctx, () => undefined);
    assert.deepEqual(ex.kept, ["1", "2", "3", "4", "5"]);
    assert.deepEqual(ex.excluded.map((e) => [e.id, e.rule]), [["6", "gone"], ["9", "gone"]]);
    const ids = ex.kept;
    const look = (i: number) => (ref: string) => feats[ids[i]!]![ref];
    const f = applyFilters(rules, ids, look, ctx);
    assert.deepEqual(f.kept.map((i) => ids[i]), ["1", "3", "4"]);
    assert.match(f.excluded[0]!.reason, /^i:price 50 > context\.max 10$/);
    const items: Scored[] = f.kept.map((i) => ({ id: ids[i]!, index: i, score: 0.3 + i * 0.01, modelScore: 0.3 + i * 0.01, boosts: [], category: "" }));
    applyBoosts(rules, items, look, ctx);
    assert.deepEqual(items.find((x) => x.id === "3")!.boosts, ["fresh"]);
    const top = pickTop(rules, items, 3, look);
    assert.deepEqual(top.picked.map((x) => x.id), ["3", "4"], "3 (boosted) takes category a; 1 is capped; 4 is category b");
    assert.deepEqual(top.skipped.map((x) => [x.id, x.rule]), [["1", "cap"]]);
  });
  it("reads stored lists as JSON arrays or comma-separated ids", () => {
    assert.deepEqual(parseIdList(s('["a", "b"]')), ["a", "b"]);
    assert.deepEqual(parseIdList(s("a, b,,c")), ["a", "b", "c"]);
    assert.deepEqual(parseIdList(undefined), []);
  });
});

describe("gate statistics", () => {
  it("P99 by nearest rank; score PSI near 0 for one distribution, large for a shifted one", () => {
    const xs = Array.from({ length: 1000 }, (_, i) => i + 1);
    assert.equal(quantile(xs, 0.99), 990);
    const a = Array.from({ length: 5000 }, (_, i) => (i % 1000) / 1000);
    const b = Array.from({ length: 5000 }, (_, i) => ((i * 7) % 1000) / 1000);
    assert.ok(scorePsi(a, b) < 0.01, `same distribution: ${scorePsi(a, b)}`);
    const shifted = a.map((x) => Math.min(0.999, x + 0.3));
    assert.ok(scorePsi(a, shifted) > 0.5, `shifted: ${scorePsi(a, shifted)}`);
    assert.ok(Number.isNaN(scorePsi([], a)));
  });
});
