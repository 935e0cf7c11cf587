// The result every two-arm comparison returns (Welch, proportions, CUPED, ratio), and the
// delta-method relative lift they share.

import { normalQuantile } from "./distributions.js";
import { requireOpenUnit } from "./validate.js";

/** Relative lift treatment/control − 1 with a delta-method standard error and CI. */
export interface RelativeLift {
  readonly lift: number;
  readonly se: number;
  readonly ciLow: number;
  readonly ciHigh: number;
}

/** Treatment minus control, tested against 0. */
export interface Comparison {
  readonly controlMean: number;
  readonly treatmentMean: number;
  /** treatmentMean − controlMean. */
  readonly diff: number;
  /** Standard error of diff. */
  readonly se: number;
  /** t or z statistic diff / se. */
  readonly statistic: number;
  /** Degrees of freedom of the reference distribution; Infinity for z tests. */
  readonly df: number;
  /** Two-sided p-value. */
  readonly pValue: number;
  /** Two-sided (1 − alpha) confidence interval for diff. */
  readonly ciLow: number;
  readonly ciHigh: number;
  readonly alpha: number;
  /** Null when the control mean is 0: a relative change from zero is undefined, not infinite. */
  readonly relative: RelativeLift | null;
}

export const DEFAULT_ALPHA = 0.05;

export function resolveAlpha(alpha: number | undefined): number {
  return alpha === undefined ? DEFAULT_ALPHA : requireOpenUnit("alpha", alpha);
}

/**
 * Relative lift T/C − 1 by the delta method (first-order Taylor expansion of the ratio of two
 * independent estimates): Var ≈ Vt / C² + T² · Vc / C⁴, where Vt and Vc are the variances of
 * the two estimates (variance / n for a mean). The CI uses the normal quantile, as the delta
 * method is itself a large-sample approximation.
 */
export function relativeLift(
  controlMean: number,
  controlVarianceOfMean: number,
  treatmentMean: number,
  treatmentVarianceOfMean: number,
  alpha: number,
): RelativeLift | null {
  if (controlMean === 0) return null;
  const c2 = controlMean * controlMean;
  const lift = treatmentMean / controlMean - 1;
  const variance = treatmentVarianceOfMean / c2 + (treatmentMean * treatmentMean * controlVarianceOfMean) / (c2 * c2);
  const se = Math.sqrt(variance);
  const z = normalQuantile(1 - alpha / 2);
  return { lift, se, ciLow: lift - z * se, ciHigh: lift + z * se };
}
