// Welch's unequal-variance t-test for a mean metric: two-sided p-value, CI for the difference
// with Welch–Satterthwaite degrees of freedom, and the relative lift with a delta-method CI.

import { ValidationError } from "../../../lib/errors.js";
import { studentTQuantile, studentTSf } from "./distributions.js";
import { type Comparison, relativeLift, resolveAlpha } from "./effect.js";
import { type ArmStats, type ArmSummary, summarize } from "./sufficient-stats.js";
import { requireFinite, requireNonNegative } from "./validate.js";

export interface TestOptions {
  /** Two-sided significance level; the CI has coverage 1 − alpha. Default 0.05. */
  readonly alpha?: number;
}

function checkSummary(field: string, s: ArmSummary): void {
  if (!Number.isInteger(s.n) || s.n < 2) throw new ValidationError(`${field}.n`, `needs at least 2 units, has ${s.n}`);
  requireFinite(`${field}.mean`, s.mean);
  requireNonNegative(`${field}.variance`, s.variance);
}

/**
 * Welch's t-test of treatment − control from per-arm n, mean and sample variance (ddof = 1);
 * matches scipy.stats.ttest_ind(treatment, control, equal_var=False) and statsmodels'
 * CompareMeans(...).tconfint_diff(usevar="unequal").
 *
 * df = (vt/nt + vc/nc)² / ((vt/nt)²/(nt − 1) + (vc/nc)²/(nc − 1)). One arm may have zero
 * variance; both may not (the difference would have no standard error).
 */
export function welchTest(control: ArmSummary, treatment: ArmSummary, options: TestOptions = {}): Comparison {
  checkSummary("control", control);
  checkSummary("treatment", treatment);
  const alpha = resolveAlpha(options.alpha);
  const vc = control.variance / control.n;
  const vt = treatment.variance / treatment.n;
  const variance = vc + vt;
  if (!(variance > 0)) {
    throw new ValidationError("variance", "both arms have zero variance, so the difference has no standard error; check that the metric varies");
  }
  const se = Math.sqrt(variance);
  const df = (variance * variance) / ((vc * vc) / (control.n - 1) + (vt * vt) / (treatment.n - 1));
  const diff = treatment.mean - control.mean;
  const statistic = diff / se;
  const pValue = Math.min(1, 2 * studentTSf(Math.abs(statistic), df));
  const q = studentTQuantile(1 - alpha / 2, df);
  return {
    controlMean: control.mean,
    treatmentMean: treatment.mean,
    diff,
    se,
    statistic,
    df,
    pValue,
    ciLow: diff - q * se,
    ciHigh: diff + q * se,
    alpha,
    relative: relativeLift(control.mean, vc, treatment.mean, vt, alpha),
  };
}

/** Welch's test straight from running sufficient statistics (y only). */
export function welchFromStats(control: ArmStats, treatment: ArmStats, options: TestOptions = {}): Comparison {
  return welchTest(summarize(control, "control"), summarize(treatment, "treatment"), options);
}
