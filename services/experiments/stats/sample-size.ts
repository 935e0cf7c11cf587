// Sample size and minimum detectable effect for a two-arm test at a given alpha and power
// (closed forms, Cohen's h as statsmodels solves it), and the planned duration at a traffic.
//
// - means: n = 2σ²(z₁₋α/₂ + z₁₋β)² / Δ² per arm;
// - proportions: the same with σ² = p(1 − p) at the baseline rate p;
// - arcsine: h = 2 asin √(p + Δ) − 2 asin √p (statsmodels proportion_effectsize(p + Δ, p)),
//   n solving NormalIndPower().power(h, n, alpha, ratio=1) = power, whose power counts both
//   tails: Φ(h√(n/2) − z₁₋α/₂) + Φ(−h√(n/2) − z₁₋α/₂).
// Sizes are rounded up to whole units (a value within 1e-9 of an integer counts as that
// integer, so floating-point noise never adds a unit).

import { ValidationError } from "../../../lib/errors.js";
import { normalCdf, normalQuantile, normalSf } from "./distributions.js";
import { requireFinite, requireOpenUnit, requirePositive, requireWeights } from "./validate.js";

export interface PowerOptions {
  /** Two-sided significance level; default 0.05. */
  readonly alpha?: number;
  /** 1 − β; default 0.8. Must exceed alpha. */
  readonly power?: number;
}

export interface SampleSize {
  /** Units per arm, rounded up. */
  readonly nPerArm: number;
  /** The unrounded solution. */
  readonly exact: number;
}

export interface ProportionSampleSize extends SampleSize {
  /** Cohen's h version (statsmodels NormalIndPower), rounded up. */
  readonly nPerArmArcsine: number;
  readonly exactArcsine: number;
  readonly cohensH: number;
}

function resolvePower(options: PowerOptions): { alpha: number; power: number; zSum: number } {
  const alpha = requireOpenUnit("alpha", options.alpha ?? 0.05);
  const power = requireOpenUnit("power", options.power ?? 0.8);
  if (!(power > alpha)) throw new ValidationError("power", `must exceed alpha (${alpha}); a test always has power alpha, got ${power}`);
  return { alpha, power, zSum: normalQuantile(1 - alpha / 2) + normalQuantile(power) };
}

/** Rounds a sample size up, forgiving floating-point noise just above an integer. */
export function roundUpUnits(exact: number): number {
  const nearest = Math.round(exact);
  if (Math.abs(exact - nearest) <= 1e-9 * Math.max(1, exact)) return Math.max(1, nearest);
  return Math.max(1, Math.ceil(exact));
}

function checkRates(baselineRate: number, mde: number): void {
  requireOpenUnit("baselineRate", baselineRate);
  requireFinite("mde", mde);
  if (mde === 0) throw new ValidationError("mde", "must not be 0: no sample size detects a zero effect");
  const target = baselineRate + mde;
  if (!(target > 0 && target < 1)) throw new ValidationError("mde", `moves the rate to ${target}, outside (0, 1)`);
}

/** Per-arm n for a difference of means Δ = `mde` with standard deviation `sd`. */
export function sampleSizeForMeans(sd: number, mde: number, options: PowerOptions = {}): SampleSize {
  requirePositive("sd", sd);
  requireFinite("mde", mde);
  if (mde === 0) throw new ValidationError("mde", "must not be 0: no sample size detects a zero effect");
  const { zSum } = resolvePower(options);
  const exact = (2 * sd * sd * zSum * zSum) / (mde * mde);
  return { nPerArm: roundUpUnits(exact), exact };
}

/** Cohen's h between two rates (statsmodels proportion_effectsize(p1, p2)). */
export function cohensH(p1: number, p2: number): number {
  return 2 * Math.asin(Math.sqrt(p1)) - 2 * Math.asin(Math.sqrt(p2));
}

/** Power of the two-sided z-test with equal arms (statsmodels NormalIndPower().power(h, n, alpha, ratio=1)). */
export function normalIndPower(effectSize: number, nPerArm: number, alpha: number): number {
  requireFinite("effectSize", effectSize);
  requirePositive("nPerArm", nPerArm);
  requireOpenUnit("alpha", alpha);
  const crit = normalQuantile(1 - alpha / 2);
  const shift = Math.abs(effectSize) * Math.sqrt(nPerArm / 2);
  return normalSf(crit - shift) + normalCdf(-crit - shift);
}

/** Root of an increasing function on [lo, hi] by bisection to full double precision. */
function solveIncreasing(f: (x: number) => number, lo: number, hi: number): number {
  for (let i = 0; i < 2000; i++) {
    const mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) return mid;
    if (f(mid) < 0) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/** Per-arm n for a conversion rate moving from `baselineRate` by `mde` (absolute). */
export function sampleSizeForProportions(baselineRate: number, mde: number, options: PowerOptions = {}): ProportionSampleSize {
  checkRates(baselineRate, mde);
  const { alpha, power, zSum } = resolvePower(options);
  const variance = baselineRate * (1 - baselineRate);
  const exact = (2 * variance * zSum * zSum) / (mde * mde);
  const h = cohensH(baselineRate + mde, baselineRate);
  // The one-tailed closed form is an upper bound (the second tail only adds power).
  const upper = (2 * zSum * zSum) / (h * h);
  const exactArcsine = solveIncreasing((n) => normalIndPower(h, n, alpha) - power, 0, upper * (1 + 1e-12));
  return { nPerArm: roundUpUnits(exact), exact, nPerArmArcsine: roundUpUnits(exactArcsine), exactArcsine, cohensH: h };
}

/** Smallest difference of means detectable with `nPerArm` units per arm. */
export function mdeForMeans(sd: number, nPerArm: number, options: PowerOptions = {}): number {
  requirePositive("sd", sd);
  requirePositive("nPerArm", nPerArm);
  const { zSum } = resolvePower(options);
  return zSum * sd * Math.sqrt(2 / nPerArm);
}

export interface ProportionMde {
  /** Absolute rate increase detectable, variance at the baseline rate (inverse of `exact`). */
  readonly mde: number;
  /** Absolute rate increase detectable by the arcsine (Cohen's h) method. */
  readonly mdeArcsine: number;
  readonly cohensH: number;
}

/** Smallest rate increase over `baselineRate` detectable with `nPerArm` units per arm. */
export function mdeForProportions(baselineRate: number, nPerArm: number, options: PowerOptions = {}): ProportionMde {
  requireOpenUnit("baselineRate", baselineRate);
  requirePositive("nPerArm", nPerArm);
  const { alpha, power, zSum } = resolvePower(options);
  const mde = zSum * Math.sqrt((2 * baselineRate * (1 - baselineRate)) / nPerArm);
  const upper = zSum * Math.sqrt(2 / nPerArm);
  const h = solveIncreasing((e) => normalIndPower(e, nPerArm, alpha) - power, 0, upper * (1 + 1e-12));
  const angle = Math.asin(Math.sqrt(baselineRate)) + h / 2;
  if (angle >= Math.PI / 2) {
    throw new ValidationError("nPerArm", `${nPerArm} units per arm cannot detect any increase from ${baselineRate} at this power`);
  }
  const target = Math.sin(angle) ** 2;
  if (mde >= 1 - baselineRate) {
    throw new ValidationError("nPerArm", `${nPerArm} units per arm cannot detect any increase from ${baselineRate} at this power`);
  }
  return { mde, mdeArcsine: target - baselineRate, cohensH: h };
}

/**
 * Days until every arm has `nPerArm` units when `unitsPerDay` eligible units arrive and arm i
 * receives the share `weights[i]` of them (times `coverage`, the share of traffic enrolled).
 */
export function plannedDurationDays(nPerArm: number, weights: readonly number[], unitsPerDay: number, coverage = 1): number {
  requirePositive("nPerArm", nPerArm);
  requirePositive("unitsPerDay", unitsPerDay);
  if (!(coverage > 0 && coverage <= 1)) throw new ValidationError("coverage", `must be in (0, 1], got ${coverage}`);
  const w = requireWeights("weights", weights);
  const smallest = Math.min(...w);
  return Math.ceil(nPerArm / (smallest * coverage * unitsPerDay) - 1e-9);
}
