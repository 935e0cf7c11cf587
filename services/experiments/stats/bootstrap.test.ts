// PRNG and bootstrap against an independent Python implementation (fixtures/bootstrap.json):
// outputs bit-identical, CI bounds relative 1e-12 (numpy.quantile 1e-9); same seed, same CI.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import { bootstrapMeanDiff, sortedQuantile } from "./bootstrap.js";
import { Xoshiro128 } from "./prng.js";
import { assertClose, loadFixture } from "./testing.js";

interface Fixture {
  streams: { seed: number; uint32: number[]; ints: number[]; intBounds: number[]; doubles: number[] }[];
  cases: {
    name: string;
    control: number[];
    treatment: number[];
    iterations: number;
    alpha: number;
    seed: number;
    expected: { diff: number; ciLow: number; ciHigh: number; numpyCiLow: number; numpyCiHigh: number };
  }[];
}

const fx = loadFixture<Fixture>("bootstrap.json");

test("xoshiro128** seeded by SplitMix64 reproduces the Python implementation bit for bit", () => {
  for (const s of fx.streams) {
    const g = new Xoshiro128(s.seed);
    assert.deepEqual(Array.from({ length: s.uint32.length }, () => g.nextUint32()), s.uint32, `seed ${s.seed} uint32`);
    assert.deepEqual(s.intBounds.map((n) => g.nextInt(n)), s.ints, `seed ${s.seed} ints`);
    assert.deepEqual(Array.from({ length: s.doubles.length }, () => g.nextDouble()), s.doubles, `seed ${s.seed} doubles`);
  }
});

test("percentile CI equals the Python reference and numpy.quantile", () => {
  for (const c of fx.cases) {
    const r = bootstrapMeanDiff(c.control, c.treatment, { iterations: c.iterations, alpha: c.alpha, seed: c.seed });
    assertClose(r.diff, c.expected.diff, `${c.name} diff`, { rel: 1e-12 });
    assertClose(r.ciLow, c.expected.ciLow, `${c.name} ciLow`, { rel: 1e-12 });
    assertClose(r.ciHigh, c.expected.ciHigh, `${c.name} ciHigh`, { rel: 1e-12 });
    assertClose(r.ciLow, c.expected.numpyCiLow, `${c.name} ciLow numpy`, { rel: 1e-9 });
    assertClose(r.ciHigh, c.expected.numpyCiHigh, `${c.name} ciHigh numpy`, { rel: 1e-9 });
  }
});

test("same seed, same CI; another seed, another CI", () => {
  const c = fx.cases[0]!;
  const a = bootstrapMeanDiff(c.control, c.treatment, { seed: 5 });
  const b = bootstrapMeanDiff(c.control, c.treatment, { seed: 5 });
  const other = bootstrapMeanDiff(c.control, c.treatment, { seed: 6 });
  assert.deepEqual(a, b);
  assert.notEqual(a.ciLow, other.ciLow);
  assert.ok(a.ciLow < a.diff && a.diff < a.ciHigh);
});

test("type-7 quantile edges", () => {
  assert.equal(sortedQuantile([1, 2, 3, 4], 0), 1);
  assert.equal(sortedQuantile([1, 2, 3, 4], 1), 4);
  assert.equal(sortedQuantile([1, 2, 3, 4], 0.5), 2.5);
});

test("bad input: one unit, non-finite values, bad iterations or seed", () => {
  assert.throws(() => bootstrapMeanDiff([1], [1, 2]), /at least 2 units/);
  assert.throws(() => bootstrapMeanDiff([1, Number.NaN], [1, 2]), ValidationError);
  assert.throws(() => bootstrapMeanDiff([1, 2], [1, 2], { iterations: 10 }), ValidationError);
  assert.throws(() => bootstrapMeanDiff([1, 2], [1, 2], { seed: -1 }), ValidationError);
  assert.throws(() => new Xoshiro128(0).nextInt(0), ValidationError);
});
