// Holm–Bonferroni and Benjamini–Hochberg against statsmodels multipletests
// (fixtures/corrections.json): adjusted p-values relative 1e-12, reject flags identical.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import { benjaminiHochberg, correctPValues, holm } from "./corrections.js";
import { assertClose, loadFixture, worstDeviation } from "./testing.js";

interface Corrected {
  adjusted: number[];
  reject: boolean[];
}
interface Fixture {
  cases: { name: string; alpha: number; pValues: number[]; holm: Corrected; bh: Corrected }[];
}

const fx = loadFixture<Fixture>("corrections.json");

test("Holm matches multipletests(method='holm')", () => {
  for (const c of fx.cases) {
    const r = holm(c.pValues, c.alpha);
    r.adjusted.forEach((v, i) => assertClose(v, c.holm.adjusted[i]!, `${c.name} holm[${i}]`, { rel: 1e-12 }));
    assert.deepEqual(r.reject, c.holm.reject, `${c.name} holm reject (alpha ${c.alpha})`);
  }
});

test("Benjamini–Hochberg matches multipletests(method='fdr_bh')", () => {
  for (const c of fx.cases) {
    const r = correctPValues(c.pValues, "bh", c.alpha);
    r.adjusted.forEach((v, i) => assertClose(v, c.bh.adjusted[i]!, `${c.name} bh[${i}]`, { rel: 1e-12 }));
    assert.deepEqual(r.reject, c.bh.reject, `${c.name} bh reject (alpha ${c.alpha})`);
  }
});

test("bad input: empty list, p outside [0, 1], unknown method", () => {
  assert.throws(() => holm([]), ValidationError);
  assert.throws(() => benjaminiHochberg([0.1, 1.2]), ValidationError);
  assert.throws(() => benjaminiHochberg([0.1, Number.NaN]), ValidationError);
  assert.throws(() => correctPValues([0.1], "bonferroni" as "holm"), /holm/);
});

test("worst relative deviation from statsmodels", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-12);
});
