// Ratio metrics by the delta method against the same formula evaluated in numpy on unit-level
// data (fixtures/ratio.json): relative 1e-6, absolute 1e-12 near 0.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ratioEstimate, ratioTest } from "./ratio.js";
import { statsFromValues } from "./sufficient-stats.js";
import { type ExpectedComparison, assertClose, checkComparison, loadFixture, worstDeviation } from "./testing.js";

interface Fixture {
  arms: { numerator: number[]; denominator: number[] }[];
  expected: ExpectedComparison & { control: { ratio: number; variance: number }; treatment: { ratio: number; variance: number } };
}

const fx = loadFixture<Fixture>("ratio.json");
const [control, treatment] = fx.arms.map((a) => statsFromValues(a.numerator, a.denominator));

test("per-arm ratio and delta-method variance match numpy", () => {
  for (const [name, arm] of [["control", control!], ["treatment", treatment!]] as const) {
    const e = ratioEstimate(arm);
    assertClose(e.ratio, fx.expected[name].ratio, `${name} ratio`);
    assertClose(e.variance, fx.expected[name].variance, `${name} variance`);
  }
});

test("z-test, CI and relative lift of the ratio match numpy", () => {
  checkComparison(ratioTest(control!, treatment!), fx.expected, "ratio");
});

test("a zero denominator is refused", () => {
  assert.throws(() => ratioEstimate(statsFromValues([1, 2, 3], [0, 0, 0])), /denominator/);
});

test("worst relative deviation from numpy", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-6);
});
