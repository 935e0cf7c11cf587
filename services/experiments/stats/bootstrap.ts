// Seeded, reproducible bootstrap percentile CI for the difference of means (treatment −
// control): the one analysis that needs unit-level values, for offline use and checks.
//
// The procedure is fixed so another language reproduces it exactly: one Xoshiro128 stream
// (prng.ts) from `seed`; for each of the B iterations draw nc indices with nextInt(nc) and
// average those control values (summed in draw order, divided by nc), then nt indices with
// nextInt(nt) for the treatment; record mean_t − mean_c. The CI bounds are the α/2 and
// 1 − α/2 quantiles of the B differences with linear interpolation between order statistics
// (numpy.quantile's default, Hyndman & Fan type 7).

import { ValidationError } from "../../../lib/errors.js";
import { resolveAlpha } from "./effect.js";
import { Xoshiro128 } from "./prng.js";
import { requireFinite } from "./validate.js";

export interface BootstrapOptions {
  /** Resamples; default 2000, between 100 and 1,000,000. */
  readonly iterations?: number;
  /** Two-sided level; default 0.05. */
  readonly alpha?: number;
  /** PRNG seed, 0 ≤ seed < 2^53; default 0. Same data + same seed = same CI. */
  readonly seed?: number;
}

export interface BootstrapResult {
  /** Observed mean_t − mean_c. */
  readonly diff: number;
  readonly ciLow: number;
  readonly ciHigh: number;
  readonly iterations: number;
  readonly seed: number;
  readonly alpha: number;
}

function checkSample(field: string, values: ArrayLike<number>): void {
  if (values.length < 2) throw new ValidationError(field, `needs at least 2 units, has ${values.length}`);
  for (let i = 0; i < values.length; i++) requireFinite(`${field}[${i}]`, values[i]!);
}

function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return s / values.length;
}

function resampledMean(values: ArrayLike<number>, rng: Xoshiro128): number {
  const n = values.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += values[rng.nextInt(n)]!;
  return s / n;
}

/** Quantile q of sorted values with linear interpolation (numpy "linear"). */
export function sortedQuantile(sorted: ArrayLike<number>, q: number): number {
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const a = sorted[lo]!;
  if (lo + 1 >= sorted.length) return a;
  return a + (h - lo) * (sorted[lo + 1]! - a);
}

/** Percentile bootstrap CI for mean(treatment) − mean(control). */
export function bootstrapMeanDiff(
  control: ArrayLike<number>,
  treatment: ArrayLike<number>,
  options: BootstrapOptions = {},
): BootstrapResult {
  checkSample("control", control);
  checkSample("treatment", treatment);
  const alpha = resolveAlpha(options.alpha);
  const iterations = options.iterations ?? 2000;
  if (!Number.isInteger(iterations) || iterations < 100 || iterations > 1_000_000) {
    throw new ValidationError("iterations", `must be a whole number between 100 and 1000000, got ${iterations}`);
  }
  const seed = options.seed ?? 0;
  const rng = new Xoshiro128(seed);
  const diffs = new Float64Array(iterations);
  for (let b = 0; b < iterations; b++) {
    const mc = resampledMean(control, rng);
    const mt = resampledMean(treatment, rng);
    diffs[b] = mt - mc;
  }
  diffs.sort();
  return {
    diff: mean(treatment) - mean(control),
    ciLow: sortedQuantile(diffs, alpha / 2),
    ciHigh: sortedQuantile(diffs, 1 - alpha / 2),
    iterations,
    seed,
    alpha,
  };
}
