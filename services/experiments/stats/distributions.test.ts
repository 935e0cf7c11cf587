// Normal, t, chi-square, incomplete gamma/beta against SciPy (fixtures/distributions.json):
// relative 1e-9 incl. extreme tails; t quantiles 1e-8 (SciPy 1.10's stdtrit errs up to ~5e-9).

import { test } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../../../lib/errors.js";
import {
  chiSquareCdf,
  chiSquareSf,
  normalCdf,
  normalIsf,
  normalPdf,
  normalQuantile,
  normalSf,
  regularizedBeta,
  regularizedGammaP,
  regularizedGammaQ,
  studentTCdf,
  studentTPdf,
  studentTQuantile,
  studentTSf,
} from "./distributions.js";
import { assertClose, loadFixture, worstDeviation } from "./testing.js";

interface Fixture {
  normal: { x: number; cdf: number; sf: number; pdf: number }[];
  normalQuantile: { p: number; ppf: number }[];
  t: { t: number; df: number; cdf: number; sf: number }[];
  tQuantile: { p: number; df: number; ppf: number }[];
  chi2: { x: number; dof: number; sf: number; cdf: number }[];
  gamma: { a: number; x: number; p: number; q: number }[];
  beta: { a: number; b: number; x: number; value: number }[];
}

const fx = loadFixture<Fixture>("distributions.json");
const TIGHT = { rel: 1e-9, abs: 1e-300 };

test("standard normal cdf, sf and pdf match scipy.stats.norm down to 1e-300", () => {
  for (const c of fx.normal) {
    assertClose(normalCdf(c.x), c.cdf, `cdf(${c.x})`, TIGHT);
    assertClose(normalSf(c.x), c.sf, `sf(${c.x})`, TIGHT);
    assertClose(normalPdf(c.x), c.pdf, `pdf(${c.x})`, TIGHT);
  }
});

test("normal quantile matches scipy.stats.norm.ppf from 1e-300 to 1 - 1e-6", () => {
  for (const c of fx.normalQuantile) {
    assertClose(normalQuantile(c.p), c.ppf, `ppf(${c.p})`, TIGHT);
    assertClose(normalIsf(c.p), -c.ppf, `isf(${c.p})`, TIGHT);
  }
  assert.equal(normalQuantile(0), -Infinity);
  assert.equal(normalQuantile(1), Infinity);
});

test("Student t cdf and sf match scipy.stats.t for df from 1 to 1e7 and |t| up to 1e6", () => {
  for (const c of fx.t) {
    assertClose(studentTCdf(c.t, c.df), c.cdf, `cdf(${c.t}, ${c.df})`, TIGHT);
    assertClose(studentTSf(c.t, c.df), c.sf, `sf(${c.t}, ${c.df})`, TIGHT);
  }
});

test("Student t quantile matches scipy.stats.t.ppf and inverts the cdf", () => {
  for (const c of fx.tQuantile) {
    const q = studentTQuantile(c.p, c.df);
    assertClose(q, c.ppf, `ppf(${c.p}, ${c.df})`, { rel: 1e-8, abs: 1e-15 });
    if (q !== 0) assertClose(studentTCdf(q, c.df), c.p, `cdf(ppf(${c.p}, ${c.df}))`, { rel: 1e-12, abs: 1e-15 });
  }
});

test("Student t with infinite df is the normal; the density integrates to the cdf", () => {
  assert.equal(studentTCdf(-1.5, Infinity), normalCdf(-1.5));
  assert.equal(studentTQuantile(0.975, Infinity), normalQuantile(0.975));
  // Simpson's rule over [-1, 1] for df = 7 against the cdf difference.
  const df = 7;
  const n = 2000;
  let s = 0;
  for (let i = 0; i <= n; i++) {
    const x = -1 + (2 * i) / n;
    s += (i === 0 || i === n ? 1 : i % 2 === 1 ? 4 : 2) * studentTPdf(x, df);
  }
  assertClose((s * 2) / n / 3, studentTCdf(1, df) - studentTCdf(-1, df), "simpson", { rel: 1e-12 });
});

test("chi-square sf and cdf match scipy.stats.chi2 for 1 to 100000 degrees of freedom", () => {
  for (const c of fx.chi2) {
    assertClose(chiSquareSf(c.x, c.dof), c.sf, `sf(${c.x}, ${c.dof})`, TIGHT);
    assertClose(chiSquareCdf(c.x, c.dof), c.cdf, `cdf(${c.x}, ${c.dof})`, TIGHT);
  }
});

test("regularized incomplete gamma matches scipy.special.gammainc/gammaincc", () => {
  for (const c of fx.gamma) {
    assertClose(regularizedGammaP(c.a, c.x), c.p, `P(${c.a}, ${c.x})`, TIGHT);
    assertClose(regularizedGammaQ(c.a, c.x), c.q, `Q(${c.a}, ${c.x})`, TIGHT);
  }
});

test("regularized incomplete beta matches scipy.special.betainc", () => {
  for (const c of fx.beta) assertClose(regularizedBeta(c.x, c.a, c.b), c.value, `I(${c.x}; ${c.a}, ${c.b})`, TIGHT);
});

test("bad arguments are ValidationErrors, never NaN", () => {
  assert.throws(() => normalCdf(Number.NaN), ValidationError);
  assert.throws(() => normalQuantile(1.5), ValidationError);
  assert.throws(() => studentTCdf(1, 0), ValidationError);
  assert.throws(() => studentTQuantile(-0.1, 3), ValidationError);
  assert.throws(() => chiSquareSf(3, -1), ValidationError);
  assert.throws(() => regularizedGammaP(0, 1), ValidationError);
  assert.throws(() => regularizedBeta(2, 1, 1), ValidationError);
});

test("worst relative deviation from SciPy", (t) => {
  const w = worstDeviation();
  t.diagnostic(`max relative deviation ${w.relative.toExponential(2)} at ${w.label}`);
  assert.ok(w.relative <= 1e-8);
});
