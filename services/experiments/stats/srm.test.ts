// Sample ratio mismatch against scipy.stats.chisquare (fixtures/srm.json): relative 1e-6,
// plus the flag at p < 0.001 and the input checks.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import { sampleRatioMismatch } from "./srm.js";
import { assertClose, loadFixture, worstDeviation } from "./testing.js";

interface Fixture {
  cases: { name: string; observed: number[]; weights: number[]; expected: { chi2: number; pValue: number; dof: number; flagged: boolean } }[];
}

const fx = loadFixture<Fixture>("srm.json");

test("chi-square statistic, p-value and flag match scipy.stats.chisquare", () => {
  for (const c of fx.cases) {
    const r = sampleRatioMismatch(c.observed, c.weights);
    assertClose(r.chi2, c.expected.chi2, `${c.name} chi2`);
    assertClose(r.pValue, c.expected.pValue, `${c.name} p`);
    assert.equal(r.dof, c.expected.dof);
    assert.equal(r.flagged, c.expected.flagged, c.name);
  }
});

test("bad input: weights not summing to 1, mismatched lengths, empty or fractional counts", () => {
  assert.throws(() => sampleRatioMismatch([10, 10], [0.4, 0.5]), /sum to 1/);
  assert.throws(() => sampleRatioMismatch([10, 10, 10], [0.5, 0.5]), /3 arms/);
  assert.throws(() => sampleRatioMismatch([0, 0], [0.5, 0.5]), /no exposures/);
  assert.throws(() => sampleRatioMismatch([1.5, 2], [0.5, 0.5]), ValidationError);
  assert.throws(() => sampleRatioMismatch([10], [1]), ValidationError);
  assert.throws(() => sampleRatioMismatch([10, 10], [1, 0]), ValidationError);
});

test("worst relative deviation from SciPy", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-6);
});
