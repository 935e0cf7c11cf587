// Two-proportion test against statsmodels proportions_ztest (pooled z, p) and
// confint_proportions_2indep(method="wald") (fixtures/proportions.json): relative 1e-6.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import { proportionsFromStats, twoProportionTest } from "./proportions.js";
import { fromProportion, statsFromValues } from "./sufficient-stats.js";
import { type ExpectedComparison, checkComparison, loadFixture, worstDeviation } from "./testing.js";

interface Fixture {
  cases: {
    name: string;
    alpha: number;
    control: { n: number; successes: number };
    treatment: { n: number; successes: number };
    expected: ExpectedComparison;
  }[];
}

const fx = loadFixture<Fixture>("proportions.json");

test("pooled z p-value, Wald CI and relative lift match statsmodels", () => {
  for (const c of fx.cases) checkComparison(twoProportionTest(c.control, c.treatment, { alpha: c.alpha }), c.expected, c.name);
});

test("the same numbers from 0/1 running statistics", () => {
  for (const c of fx.cases) {
    const got = proportionsFromStats(fromProportion(c.control.n, c.control.successes), fromProportion(c.treatment.n, c.treatment.successes), {
      alpha: c.alpha,
    });
    checkComparison(got, c.expected, `${c.name} (stats)`);
  }
  const units = (n: number, k: number): number[] => Array.from({ length: n }, (_, i) => (i < k ? 1 : 0));
  const c = fx.cases[0]!;
  const got = proportionsFromStats(statsFromValues(units(c.control.n, c.control.successes)), statsFromValues(units(c.treatment.n, c.treatment.successes)));
  checkComparison(got, c.expected, `${c.name} (unit-level)`);
});

test("bad input: no variation, impossible counts, non-binary metric", () => {
  assert.throws(() => twoProportionTest({ n: 100, successes: 0 }, { n: 100, successes: 0 }), /no unit converted/);
  assert.throws(() => twoProportionTest({ n: 100, successes: 100 }, { n: 50, successes: 50 }), /every unit converted/);
  assert.throws(() => twoProportionTest({ n: 100, successes: 101 }, { n: 50, successes: 5 }), ValidationError);
  assert.throws(() => twoProportionTest({ n: 1, successes: 1 }, { n: 50, successes: 5 }), /at least 2 units/);
  assert.throws(() => twoProportionTest({ n: 10.5, successes: 1 }, { n: 50, successes: 5 }), ValidationError);
  assert.throws(() => proportionsFromStats(statsFromValues([0, 1, 0.5]), statsFromValues([0, 1, 1])), /not a 0\/1 metric/);
});

test("worst relative deviation from statsmodels", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-6);
});
