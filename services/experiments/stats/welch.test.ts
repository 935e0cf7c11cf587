// Welch's t-test against scipy.stats.ttest_ind(equal_var=False) and statsmodels'
// tconfint_diff(usevar="unequal") (fixtures/welch.json): relative 1e-6, absolute 1e-12 near 0.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import { statsFromValues, summarize } from "./sufficient-stats.js";
import { type ExpectedComparison, checkComparison, loadFixture, worstDeviation } from "./testing.js";
import { welchFromStats, welchTest } from "./welch.js";

interface Fixture {
  raw: { name: string; alpha: number; control: number[]; treatment: number[]; expected: ExpectedComparison }[];
  summary: {
    name: string;
    alpha: number;
    control: { n: number; mean: number; variance: number };
    treatment: { n: number; mean: number; variance: number };
    expected: ExpectedComparison;
  }[];
}

const fx = loadFixture<Fixture>("welch.json");

test("Welch from unit-level data (via running sufficient stats) matches SciPy/statsmodels", () => {
  for (const c of fx.raw) {
    const got = welchFromStats(statsFromValues(c.control), statsFromValues(c.treatment), { alpha: c.alpha });
    checkComparison(got, c.expected, c.name);
  }
});

test("Welch from summary statistics matches ttest_ind_from_stats, including 10M units and p ~ 1e-194", () => {
  for (const c of fx.summary) checkComparison(welchTest(c.control, c.treatment, { alpha: c.alpha }), c.expected, c.name);
});

test("bad input: fewer than 2 units, zero variance in both arms, bad alpha", () => {
  assert.throws(() => welchFromStats(statsFromValues([1]), statsFromValues([1, 2, 3])), ValidationError);
  assert.throws(() => welchFromStats(statsFromValues([2, 2, 2]), statsFromValues([3, 3])), /zero variance/);
  assert.throws(() => welchTest({ n: 10, mean: 1, variance: 1 }, { n: 10, mean: 1, variance: 1 }, { alpha: 1 }), ValidationError);
  assert.throws(() => welchTest({ n: 10, mean: Number.NaN, variance: 1 }, { n: 10, mean: 1, variance: 1 }), ValidationError);
  assert.throws(() => summarize(statsFromValues([])), /at least 2 units/);
});

test("control mean 0 gives no relative lift rather than Infinity", () => {
  const r = welchTest({ n: 50, mean: 0, variance: 1 }, { n: 50, mean: 0.3, variance: 1 });
  assert.equal(r.relative, null);
  assert.ok(Number.isFinite(r.pValue));
});

test("worst relative deviation from SciPy/statsmodels", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-6);
});
