// Ratio metrics (clicks per session, revenue per order) where the randomisation unit is not
// the analysis unit: Σ numerator / Σ denominator per arm, with its variance by the delta method.
//
// Per unit i the arm records numerator yᵢ and denominator xᵢ (sufficient stats with y, x).
// The arm's ratio r = ȳ / x̄ and, to first order (Deng, Knoblich & Lu 2018, "Applying the
// delta method in metric analytics"),
//   Var(r) ≈ [ var(y) / x̄² − 2 ȳ cov(x, y) / x̄³ + ȳ² var(x) / x̄⁴ ] / n,
// which respects the correlation of numerator and denominator within a unit. Arms are
// independent, so the difference is a z-test on r_t − r_c.

import { ValidationError } from "../../../lib/errors.js";
import { normalQuantile, normalSf } from "./distributions.js";
import { type Comparison, relativeLift, resolveAlpha } from "./effect.js";
import { type ArmStats, covarianceXY, summarize, varianceX } from "./sufficient-stats.js";
import type { TestOptions } from "./welch.js";

export interface RatioEstimate {
  readonly n: number;
  /** Σ numerator / Σ denominator (= ȳ / x̄). */
  readonly ratio: number;
  /** Delta-method variance of the ratio. */
  readonly variance: number;
}

/** The arm's ratio and its delta-method variance. */
export function ratioEstimate(arm: ArmStats, field = "arm"): RatioEstimate {
  const { n, mean: meanY, variance: varY } = summarize(arm, field);
  const meanX = arm.meanX;
  if (meanX === 0) throw new ValidationError(`${field}.denominator`, "sums to 0, so the ratio is undefined");
  const varX = varianceX(arm, field);
  const cov = covarianceXY(arm, field);
  const ratio = meanY / meanX;
  const x2 = meanX * meanX;
  const variance = Math.max(0, (varY / x2 - (2 * meanY * cov) / (x2 * meanX) + (meanY * meanY * varX) / (x2 * x2)) / n);
  return { n, ratio, variance };
}

/** z-test of the ratio in treatment − control, with the relative lift by the same method. */
export function ratioTest(control: ArmStats, treatment: ArmStats, options: TestOptions = {}): Comparison {
  const alpha = resolveAlpha(options.alpha);
  const c = ratioEstimate(control, "control");
  const t = ratioEstimate(treatment, "treatment");
  const variance = c.variance + t.variance;
  if (!(variance > 0)) {
    throw new ValidationError("variance", "the ratio has zero variance in both arms, so the difference has no standard error");
  }
  const se = Math.sqrt(variance);
  const diff = t.ratio - c.ratio;
  const statistic = diff / se;
  const z = normalQuantile(1 - alpha / 2);
  return {
    controlMean: c.ratio,
    treatmentMean: t.ratio,
    diff,
    se,
    statistic,
    df: Infinity,
    pValue: Math.min(1, 2 * normalSf(Math.abs(statistic))),
    ciLow: diff - z * se,
    ciHigh: diff + z * se,
    alpha,
    relative: relativeLift(c.ratio, c.variance, t.ratio, t.variance, alpha),
  };
}
