// Sample size and MDE against SciPy closed forms and statsmodels NormalIndPower
// (fixtures/sample_size.json), relative 1e-6 unless a test says otherwise.
//
// statsmodels' solve_power stops brentq at xtol = 1e-5, so the same power equation is also
// solved tightly in the fixture (1e-9 here); Cohen's h at a given n is held to 1e-4 against
// statsmodels itself, and to 1e-9 against the tight root.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import {
  cohensH,
  mdeForMeans,
  mdeForProportions,
  normalIndPower,
  plannedDurationDays,
  roundUpUnits,
  sampleSizeForMeans,
  sampleSizeForProportions,
} from "./sample-size.js";
import { assertClose, loadFixture, worstDeviation } from "./testing.js";

interface Fixture {
  means: { sd: number; mde: number; alpha: number; power: number; exact: number; nPerArm: number; nForMde: number; mdeAtN: number }[];
  proportions: {
    baselineRate: number;
    mde: number;
    alpha: number;
    power: number;
    exact: number;
    nPerArm: number;
    cohensH: number;
    exactArcsineStatsmodels: number;
    exactArcsine: number;
    nPerArmArcsine: number;
    nForMde: number;
    mdeAtN: number;
    cohensHAtNStatsmodels: number;
    cohensHAtN: number;
    mdeArcsineAtN: number;
  }[];
}

const fx = loadFixture<Fixture>("sample_size.json");

test("means: n = 2σ²(z₁₋α/₂ + z₁₋β)²/Δ², rounded up, and its inverse", () => {
  for (const c of fx.means) {
    const r = sampleSizeForMeans(c.sd, c.mde, c);
    assertClose(r.exact, c.exact, `means n(${c.sd}, ${c.mde})`);
    assert.equal(r.nPerArm, c.nPerArm);
    assertClose(mdeForMeans(c.sd, c.nForMde, c), c.mdeAtN, `means mde(${c.sd}, n=${c.nForMde})`);
    assertClose(sampleSizeForMeans(c.sd, mdeForMeans(c.sd, c.nForMde, c), c).exact, c.nForMde, "round trip", { rel: 1e-12 });
  }
});

test("proportions: baseline-variance formula and Cohen's h via NormalIndPower", () => {
  for (const c of fx.proportions) {
    const label = `p=${c.baselineRate} mde=${c.mde}`;
    const r = sampleSizeForProportions(c.baselineRate, c.mde, c);
    assertClose(r.exact, c.exact, `${label} n`);
    assert.equal(r.nPerArm, c.nPerArm, `${label} n rounded`);
    assertClose(r.cohensH, c.cohensH, `${label} h`, { rel: 1e-12 });
    assertClose(r.exactArcsine, c.exactArcsineStatsmodels, `${label} n arcsine vs statsmodels`);
    assertClose(r.exactArcsine, c.exactArcsine, `${label} n arcsine (tight)`, { rel: 1e-9 });
    assert.equal(r.nPerArmArcsine, c.nPerArmArcsine, `${label} n arcsine rounded`);
    assert.equal(r.nPerArmArcsine, Math.ceil(c.exactArcsineStatsmodels), `${label} n arcsine rounded as statsmodels`);
  }
});

test("proportions: MDE for a given n, both ways", () => {
  for (const c of fx.proportions) {
    const label = `p=${c.baselineRate} n=${c.nForMde}`;
    const r = mdeForProportions(c.baselineRate, c.nForMde, c);
    assertClose(r.mde, c.mdeAtN, `${label} mde`);
    assertClose(r.cohensH, c.cohensHAtN, `${label} h (tight)`, { rel: 1e-9 });
    assert.ok(Math.abs(r.cohensH - c.cohensHAtNStatsmodels) < 1e-4, `${label} h vs statsmodels within its xtol`);
    assertClose(r.mdeArcsine, c.mdeArcsineAtN, `${label} mde arcsine`, { rel: 1e-9 });
    assertClose(normalIndPower(r.cohensH, c.nForMde, c.alpha), c.power, `${label} power at the MDE`, { rel: 1e-12 });
  }
});

test("rounding forgives floating-point noise, planned duration rounds up", () => {
  assert.equal(roundUpUnits(392.0000000000001), 392);
  assert.equal(roundUpUnits(392.001), 393);
  assert.equal(plannedDurationDays(10_000, [0.5, 0.5], 2_000), 10);
  assert.equal(plannedDurationDays(10_000, [0.9, 0.1], 2_000), 50);
  assert.equal(plannedDurationDays(10_000, [0.5, 0.5], 2_000, 0.5), 20);
  assert.equal(cohensH(0.5, 0.5), 0);
});

test("bad input: zero effect, rate leaving (0, 1), power not above alpha", () => {
  assert.throws(() => sampleSizeForMeans(1, 0), /must not be 0/);
  assert.throws(() => sampleSizeForMeans(0, 1), ValidationError);
  assert.throws(() => sampleSizeForProportions(0.95, 0.06), /outside/);
  assert.throws(() => sampleSizeForProportions(0, 0.01), ValidationError);
  assert.throws(() => sampleSizeForMeans(1, 0.1, { alpha: 0.2, power: 0.1 }), /exceed alpha/);
  assert.throws(() => mdeForProportions(0.99, 10), /cannot detect/);
  assert.throws(() => plannedDurationDays(100, [0.5, 0.4], 10), /sum to 1/);
});

test("worst relative deviation from SciPy/statsmodels", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-6);
});
