// Running sufficient statistics: moments against numpy (fixtures/cuped.json, relative 1e-12),
// merge = single pass, stability where raw sums lose every digit, and input checks.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import {
  addObservation,
  covarianceXY,
  emptyStats,
  fromProportion,
  fromSums,
  mergeAll,
  mergeStats,
  statsFromValues,
  successesOf,
  sumOf,
  sumOfSquares,
  summarize,
  varianceX,
} from "./sufficient-stats.js";
import { assertClose, loadFixture } from "./testing.js";

interface Fixture {
  arms: { x: number[]; y: number[] }[];
  moments: { n: number; meanY: number; meanX: number; varY: number; varX: number; covXY: number }[];
}

const fx = loadFixture<Fixture>("cuped.json");
const TIGHT = { rel: 1e-12 };

test("means, variances and covariance match numpy (ddof = 1)", () => {
  fx.arms.forEach((a, i) => {
    const s = statsFromValues(a.y, a.x);
    const m = fx.moments[i]!;
    assert.equal(s.n, m.n);
    assertClose(s.meanY, m.meanY, `arm ${i} mean y`, TIGHT);
    assertClose(s.meanX, m.meanX, `arm ${i} mean x`, TIGHT);
    assertClose(summarize(s).variance, m.varY, `arm ${i} var y`, TIGHT);
    assertClose(varianceX(s), m.varX, `arm ${i} var x`, TIGHT);
    assertClose(covarianceXY(s), m.covXY, `arm ${i} cov`, TIGHT);
  });
});

test("merging chunks (Chan et al.) equals one pass", () => {
  const { x, y } = fx.arms[0]!;
  const whole = statsFromValues(y, x);
  const parts = [0, 37, 38, 120, 200].slice(0, -1).map((start, k, starts) => {
    const end = [37, 38, 120, 200][k]!;
    return statsFromValues(y.slice(start, end), x.slice(start, end));
  });
  const merged = mergeAll(parts);
  for (const key of ["n", "meanY", "meanX", "m2Y", "m2X", "cXY"] as const) assertClose(merged[key], whole[key], `merged ${key}`, TIGHT);
  assert.deepEqual(mergeStats(emptyStats(), whole), whole);
});

test("stable where raw sums are not: values near 1e9 with variance 30", () => {
  const values = [4, 7, 13, 16].map((v) => 1e9 + v);
  assertClose(summarize(statsFromValues(values)).variance, 30, "welford variance", TIGHT);
  const s = statsFromValues(values);
  const roundTrip = fromSums({ n: s.n, sumY: sumOf(s), sumY2: sumOfSquares(s) });
  assert.ok(Math.abs(roundTrip.m2Y / 3 - 30) > 1, "raw sums lose the variance here, which is why the state keeps moments");
  const small = statsFromValues([1, 2, 3, 4], [2, 4, 6, 9]);
  const imported = fromSums({ n: 4, sumY: 10, sumY2: 30, sumX: 21, sumX2: 137, sumXY: 64 });
  for (const key of ["meanY", "meanX", "m2Y", "m2X", "cXY"] as const) assertClose(imported[key], small[key], `fromSums ${key}`, TIGHT);
});

test("proportion counts round-trip exactly", () => {
  const s = fromProportion(1_000_003, 123_457);
  assert.equal(successesOf(s), 123_457);
  const units = statsFromValues([1, 0, 0, 1, 1, 0, 1]);
  assert.equal(successesOf(units), 4);
  assertClose(units.m2Y, fromProportion(7, 4).m2Y, "m2 of 0/1 data", TIGHT);
});

test("bad input is refused before it reaches the state", () => {
  const s = emptyStats();
  assert.throws(() => addObservation(s, Number.NaN), ValidationError);
  assert.throws(() => addObservation(s, 1, Number.POSITIVE_INFINITY), ValidationError);
  assert.equal(s.n, 0, "a rejected value leaves the state untouched");
  addObservation(s, 3);
  assert.throws(() => summarize(s), /at least 2 units/);
  assert.throws(() => fromProportion(10, 11), ValidationError);
  assert.throws(() => fromSums({ n: -1, sumY: 0, sumY2: 0 }), ValidationError);
  assert.throws(() => statsFromValues([1, 2], [1]), /covariate/);
  assert.throws(() => successesOf(statsFromValues([0, 2, 1])), /0\/1/);
});
