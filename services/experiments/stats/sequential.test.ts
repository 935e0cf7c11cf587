// mSPRT against Johari et al.'s formulas in Python (fixtures/sequential.json, relative 1e-12),
// and the A/A simulation: 100 peeks keep mSPRT at or below alpha, naive peeking does not.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import { Xoshiro128 } from "./prng.js";
import { type SequentialState, lookFromStats, msprtInterval, msprtPValue, updateSequential } from "./sequential.js";
import { addObservation, emptyStats } from "./sufficient-stats.js";
import { assertClose, loadFixture } from "./testing.js";
import { welchFromStats } from "./welch.js";

interface Fixture {
  cases: {
    mixingVariance: number;
    alpha: number;
    looks: { diff: number; variance: number; instantPValue: number; pValue: number; ciLow: number; ciHigh: number }[];
  }[];
}

const fx = loadFixture<Fixture>("sequential.json");

test("instantaneous and running p-values and always-valid CIs match the reference formulas", () => {
  for (const c of fx.cases) {
    const options = { mixingVariance: c.mixingVariance, alpha: c.alpha };
    let state: SequentialState | undefined;
    c.looks.forEach((look, i) => {
      const label = `tau2=${c.mixingVariance} alpha=${c.alpha} look ${i}`;
      assertClose(msprtPValue(look, options), look.instantPValue, `${label} instant p`, { rel: 1e-12 });
      state = updateSequential(state, look, options);
      assertClose(state.pValue, look.pValue, `${label} p`, { rel: 1e-12 });
      assertClose(state.ciLow, look.ciLow, `${label} ciLow`, { rel: 1e-12 });
      assertClose(state.ciHigh, look.ciHigh, `${label} ciHigh`, { rel: 1e-12 });
      assert.equal(state.looks, i + 1);
    });
  }
});

test("the always-valid CI excludes the null exactly when the mSPRT p-value is below alpha", () => {
  const options = { mixingVariance: 0.01, alpha: 0.05 };
  for (const diff of [0.01, 0.03, 0.05, 0.0615, 0.0616, 0.08]) {
    const look = { diff, variance: 0.0002 };
    const ci = msprtInterval(look, options);
    assert.equal(ci.low > 0, msprtPValue(look, options) < 0.05, `diff ${diff}`);
  }
});

test("A/A: 100 peeks keep mSPRT at or below alpha; naive peeking inflates the false-positive rate", (t) => {
  const experiments = 1000;
  const peeks = 100;
  const perPeek = 20; // units per arm between peeks
  const alpha = 0.05;
  const options = { mixingVariance: 0.01, alpha };
  const rng = new Xoshiro128(20240607);
  let naivePeeking = 0;
  let naiveFinalOnly = 0;
  let msprt = 0;
  for (let e = 0; e < experiments; e++) {
    const control = emptyStats();
    const treatment = emptyStats();
    let state: SequentialState | undefined;
    let naiveRejected = false;
    let p = 1;
    for (let k = 0; k < peeks; k++) {
      for (let i = 0; i < perPeek; i++) {
        addObservation(control, rng.nextNormal());
        addObservation(treatment, rng.nextNormal());
      }
      p = welchFromStats(control, treatment).pValue;
      naiveRejected ||= p < alpha;
      state = updateSequential(state, lookFromStats(control, treatment), options);
    }
    if (naiveRejected) naivePeeking++;
    if (p < alpha) naiveFinalOnly++;
    if (state!.pValue < alpha) msprt++;
  }
  const rate = (k: number): number => k / experiments;
  t.diagnostic(
    `false-positive rate over ${experiments} A/A experiments: naive with ${peeks} peeks ${rate(naivePeeking)}, ` +
      `naive at the horizon only ${rate(naiveFinalOnly)}, mSPRT with ${peeks} peeks ${rate(msprt)}`,
  );
  assert.ok(rate(msprt) <= alpha, `mSPRT false-positive rate ${rate(msprt)} exceeds ${alpha}`);
  assert.ok(rate(naivePeeking) > 2 * alpha, `naive peeking rate ${rate(naivePeeking)} should be far above ${alpha}`);
  assert.ok(Math.abs(rate(naiveFinalOnly) - alpha) < 0.025, `a single look at the horizon is calibrated (${rate(naiveFinalOnly)})`);
});

test("bad input: no mixing variance, zero variance, bad alpha", () => {
  assert.throws(() => msprtPValue({ diff: 1, variance: 1 }, { mixingVariance: 0 }), ValidationError);
  assert.throws(() => msprtPValue({ diff: 1, variance: 0 }, { mixingVariance: 1 }), ValidationError);
  assert.throws(() => msprtPValue({ diff: Number.NaN, variance: 1 }, { mixingVariance: 1 }), ValidationError);
  assert.throws(() => msprtInterval({ diff: 1, variance: 1 }, { mixingVariance: 1, alpha: 0 }), ValidationError);
  const c = emptyStats();
  addObservation(c, 1);
  addObservation(c, 1);
  assert.throws(() => lookFromStats(c, c), /zero variance/);
});
