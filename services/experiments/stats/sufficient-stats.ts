// Per-arm running sufficient statistics, updated in O(1) per outcome and mergeable, so every
// analysis reads O(arms) numbers instead of O(units) rows.
//
// The state is kept in central-moment form (Welford 1962; merge by Chan, Golub & LeVeque 1979)
// rather than as raw sums: Σy² − (Σy)²/n loses every digit when the mean is large against the
// spread (revenue in cents, timestamps), the moment form does not. Raw sums are derived on
// demand (`sumOf`, `sumOfSquares`) and can be imported from a warehouse (`fromSums`), which is
// then only as accurate as those sums are.
//
// One record covers all three metric kinds:
//  - mean metrics: y per unit (x unused);
//  - proportions: y ∈ {0, 1} per unit, so mean = conversion rate;
//  - CUPED: y the outcome, x the pre-experiment covariate of the same unit;
//  - ratio metrics: y the numerator, x the denominator of the same unit (delta method).

import { ValidationError } from "../../../lib/errors.js";
import { requireFinite } from "./validate.js";

/** Bivariate running moments of (y, x) over n units. Plain data: store it as JSON. */
export interface ArmStats {
  /** Units seen. */
  n: number;
  /** Mean of y. */
  meanY: number;
  /** Σ (y − ȳ)². */
  m2Y: number;
  /** Mean of x (0 when no covariate is tracked). */
  meanX: number;
  /** Σ (x − x̄)². */
  m2X: number;
  /** Σ (x − x̄)(y − ȳ). */
  cXY: number;
}

/** Derived per-arm summary: what the tests consume. Variances use n − 1 (ddof = 1). */
export interface ArmSummary {
  readonly n: number;
  readonly mean: number;
  readonly variance: number;
}

export function emptyStats(): ArmStats {
  return { n: 0, meanY: 0, m2Y: 0, meanX: 0, m2X: 0, cXY: 0 };
}

/**
 * Adds one unit's outcome y (and covariate / denominator x, default 0) in O(1), in place.
 * Returns the same object so calls chain. Non-finite input is rejected before it can poison
 * the running state.
 */
export function addObservation(stats: ArmStats, y: number, x = 0): ArmStats {
  requireFinite("value", y);
  requireFinite("covariate", x);
  const n = stats.n + 1;
  const dx = x - stats.meanX;
  const dy = y - stats.meanY;
  stats.n = n;
  stats.meanX += dx / n;
  stats.meanY += dy / n;
  const dyAfter = y - stats.meanY;
  stats.m2X += dx * (x - stats.meanX);
  stats.m2Y += dy * dyAfter;
  stats.cXY += dx * dyAfter;
  return stats;
}

/** Combines two disjoint sets of units (Chan et al.); neither input is modified. */
export function mergeStats(a: ArmStats, b: ArmStats): ArmStats {
  if (a.n === 0) return { ...b };
  if (b.n === 0) return { ...a };
  const n = a.n + b.n;
  const dx = b.meanX - a.meanX;
  const dy = b.meanY - a.meanY;
  const w = (a.n * b.n) / n;
  return {
    n,
    meanY: a.meanY + (dy * b.n) / n,
    meanX: a.meanX + (dx * b.n) / n,
    m2Y: a.m2Y + b.m2Y + dy * dy * w,
    m2X: a.m2X + b.m2X + dx * dx * w,
    cXY: a.cXY + b.cXY + dx * dy * w,
  };
}

/** Merges any number of arms' stats (e.g. all arms, for a pooled CUPED θ). */
export function mergeAll(parts: readonly ArmStats[]): ArmStats {
  return parts.reduce<ArmStats>((acc, s) => mergeStats(acc, s), emptyStats());
}

/** Builds stats from paired arrays (x optional), e.g. an offline CSV or a test fixture. */
export function statsFromValues(ys: ArrayLike<number>, xs?: ArrayLike<number>): ArmStats {
  if (xs !== undefined && xs.length !== ys.length) {
    throw new ValidationError("covariate", `has ${xs.length} values for ${ys.length} outcomes`);
  }
  const s = emptyStats();
  for (let i = 0; i < ys.length; i++) addObservation(s, ys[i]!, xs === undefined ? 0 : xs[i]!);
  return s;
}

/** Raw sums as a warehouse query returns them (SUM(y), SUM(y*y), ...). */
export interface RawSums {
  readonly n: number;
  readonly sumY: number;
  readonly sumY2: number;
  readonly sumX?: number;
  readonly sumX2?: number;
  readonly sumXY?: number;
}

/**
 * Imports raw sums. Accuracy is bounded by cancellation in Σy² − (Σy)²/n; negative results of
 * that cancellation are clamped to 0 rather than reported as a negative variance.
 */
export function fromSums(sums: RawSums): ArmStats {
  const { n } = sums;
  if (!Number.isInteger(n) || n < 0) throw new ValidationError("n", `must be a whole number >= 0, got ${n}`);
  for (const [k, v] of Object.entries(sums)) requireFinite(k, v as number);
  if (n === 0) return emptyStats();
  const sumX = sums.sumX ?? 0;
  const sumX2 = sums.sumX2 ?? 0;
  const sumXY = sums.sumXY ?? 0;
  return {
    n,
    meanY: sums.sumY / n,
    meanX: sumX / n,
    m2Y: Math.max(0, sums.sumY2 - (sums.sumY * sums.sumY) / n),
    m2X: Math.max(0, sumX2 - (sumX * sumX) / n),
    cXY: sumXY - (sums.sumY * sumX) / n,
  };
}

/** Σy, derived. */
export function sumOf(stats: ArmStats): number {
  return stats.meanY * stats.n;
}

/** Σy², derived. */
export function sumOfSquares(stats: ArmStats): number {
  return stats.m2Y + stats.n * stats.meanY * stats.meanY;
}

/** Stats of a proportion metric from counts: `successes` units with y = 1 out of `n`. */
export function fromProportion(n: number, successes: number): ArmStats {
  if (!Number.isInteger(n) || n < 0) throw new ValidationError("n", `must be a whole number >= 0, got ${n}`);
  if (!Number.isInteger(successes) || successes < 0 || successes > n) {
    throw new ValidationError("successes", `must be a whole number between 0 and n = ${n}, got ${successes}`);
  }
  if (n === 0) return emptyStats();
  const p = successes / n;
  return { n, meanY: p, m2Y: successes * (1 - p), meanX: 0, m2X: 0, cXY: 0 };
}

/** Successes of a 0/1 metric, recovered exactly (the mean is a float; the count is not). */
export function successesOf(stats: ArmStats, field = "arm"): number {
  const k = Math.round(stats.meanY * stats.n);
  const tolerance = 1e-7 * Math.max(1, stats.n);
  if (stats.n === 0) return 0;
  if (Math.abs(k - stats.meanY * stats.n) > tolerance || Math.abs(stats.m2Y - k * (1 - k / stats.n)) > tolerance) {
    throw new ValidationError(field, "is not a 0/1 metric: its values are not all 0 or 1");
  }
  return k;
}

/**
 * n, mean and sample variance of y for an arm, refusing arms that cannot support a variance
 * (fewer than 2 units) so nothing downstream divides by zero.
 */
export function summarize(stats: ArmStats, field = "arm"): ArmSummary {
  if (!(stats.n >= 2)) throw new ValidationError(field, `needs at least 2 units, has ${stats.n}`);
  return { n: stats.n, mean: stats.meanY, variance: stats.m2Y / (stats.n - 1) };
}

/** Sample variance of x (ddof = 1). */
export function varianceX(stats: ArmStats, field = "arm"): number {
  if (!(stats.n >= 2)) throw new ValidationError(field, `needs at least 2 units, has ${stats.n}`);
  return stats.m2X / (stats.n - 1);
}

/** Sample covariance of (x, y) (ddof = 1). */
export function covarianceXY(stats: ArmStats, field = "arm"): number {
  if (!(stats.n >= 2)) throw new ValidationError(field, `needs at least 2 units, has ${stats.n}`);
  return stats.cXY / (stats.n - 1);
}
