// CUPED against numpy by hand (θ, Y', 1 − var(Y')/var(Y)) and SciPy/statsmodels Welch on Y'
// (fixtures/cuped.json): relative 1e-6, absolute 1e-12 near 0.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import { adjustedSummary, cupedAdjustment, cupedTest } from "./cuped.js";
import { type ArmStats, statsFromValues } from "./sufficient-stats.js";
import { type ExpectedComparison, assertClose, checkComparison, loadFixture, worstDeviation } from "./testing.js";

interface Fixture {
  arms: { x: number[]; y: number[] }[];
  expected: { theta: number; grandMeanX: number; varianceReduction: number; adjusted: { n: number; mean: number; variance: number }[] };
  comparisons: { treatment: number; expected: ExpectedComparison & { estimatorVarianceReduction: number; unadjusted: ExpectedComparison } }[];
}

const fx = loadFixture<Fixture>("cuped.json");
const arms: ArmStats[] = fx.arms.map((a) => statsFromValues(a.y, a.x));

test("θ pooled over all units of all arms, X̄ and variance reduction match numpy", () => {
  const adj = cupedAdjustment(arms);
  assertClose(adj.theta, fx.expected.theta, "theta");
  assertClose(adj.grandMeanX, fx.expected.grandMeanX, "grand mean x");
  assertClose(adj.varianceReduction, fx.expected.varianceReduction, "variance reduction");
  assert.ok(adj.varianceReduction > 0.5, "a strong covariate should remove most of the variance");
  arms.forEach((a, i) => {
    const s = adjustedSummary(a, adj);
    const want = fx.expected.adjusted[i]!;
    assert.equal(s.n, want.n);
    assertClose(s.mean, want.mean, `arm ${i} adjusted mean`);
    assertClose(s.variance, want.variance, `arm ${i} adjusted variance`);
  });
});

test("the Welch test on Y' matches scipy.stats.ttest_ind on the adjusted arrays", () => {
  for (const c of fx.comparisons) {
    const got = cupedTest(arms[0]!, arms[c.treatment]!, arms);
    checkComparison(got, c.expected, `arm ${c.treatment} vs control`);
    checkComparison(got.unadjusted, c.expected.unadjusted, `arm ${c.treatment} unadjusted`);
    assertClose(got.estimatorVarianceReduction, c.expected.estimatorVarianceReduction, `arm ${c.treatment} estimator variance reduction`);
    assert.ok(got.ciHigh - got.ciLow < got.unadjusted.ciHigh - got.unadjusted.ciLow, "CUPED narrows the CI");
  }
});

test("bad input: constant covariate, single arm, arm with one unit", () => {
  const flat = [statsFromValues([1, 2, 3], [5, 5, 5]), statsFromValues([2, 3, 4], [5, 5, 5])];
  assert.throws(() => cupedAdjustment(flat), /covariate/);
  assert.throws(() => cupedAdjustment([arms[0]!]), ValidationError);
  assert.throws(() => cupedAdjustment([arms[0]!, statsFromValues([1], [2])]), /at least 2 units/);
});

test("worst relative deviation from the references", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-6);
});
