// Two-proportion comparison for conversion metrics: pooled z-test p-value, unpooled Wald CI
// for the difference, and the relative lift with a delta-method CI.

import { ValidationError } from "../../../lib/errors.js";
import { normalQuantile, normalSf } from "./distributions.js";
import { type Comparison, relativeLift, resolveAlpha } from "./effect.js";
import { type ArmStats, successesOf } from "./sufficient-stats.js";
import type { TestOptions } from "./welch.js";

export interface ProportionCounts {
  /** Units exposed. */
  readonly n: number;
  /** Units that converted. */
  readonly successes: number;
}

export interface ProportionComparison extends Comparison {
  /** Standard error under H0 (pooled rate), the one the z statistic and p-value use. */
  readonly pooledSe: number;
}

function checkCounts(field: string, c: ProportionCounts): void {
  if (!Number.isInteger(c.n) || c.n < 2) throw new ValidationError(`${field}.n`, `needs at least 2 units, has ${c.n}`);
  if (!Number.isInteger(c.successes) || c.successes < 0 || c.successes > c.n) {
    throw new ValidationError(`${field}.successes`, `must be a whole number between 0 and ${c.n}, got ${c.successes}`);
  }
}

/**
 * Treatment − control conversion rate.
 * - p-value: pooled two-proportion z-test, z = (pt − pc) / √(p(1 − p)(1/nt + 1/nc)) with
 *   p = (xt + xc)/(nt + nc) — statsmodels proportions_ztest([xt, xc], [nt, nc]);
 * - CI: unpooled Wald, (pt − pc) ± z₁₋α/₂ √(pt(1 − pt)/nt + pc(1 − pc)/nc) —
 *   statsmodels confint_proportions_2indep(..., method="wald", compare="diff");
 * - relative lift pt/pc − 1 with a delta-method CI (null when pc = 0).
 * Refuses data with no variation at all (every unit converted, or none did).
 */
export function twoProportionTest(
  control: ProportionCounts,
  treatment: ProportionCounts,
  options: TestOptions = {},
): ProportionComparison {
  checkCounts("control", control);
  checkCounts("treatment", treatment);
  const alpha = resolveAlpha(options.alpha);
  const pc = control.successes / control.n;
  const pt = treatment.successes / treatment.n;
  const pooled = (control.successes + treatment.successes) / (control.n + treatment.n);
  if (pooled === 0 || pooled === 1) {
    throw new ValidationError(
      "successes",
      pooled === 0 ? "no unit converted in either arm, so the rates cannot be compared" : "every unit converted in both arms, so the rates cannot be compared",
    );
  }
  const pooledSe = Math.sqrt(pooled * (1 - pooled) * (1 / control.n + 1 / treatment.n));
  const vc = (pc * (1 - pc)) / control.n;
  const vt = (pt * (1 - pt)) / treatment.n;
  const se = Math.sqrt(vc + vt);
  const diff = pt - pc;
  const statistic = diff / pooledSe;
  const z = normalQuantile(1 - alpha / 2);
  return {
    controlMean: pc,
    treatmentMean: pt,
    diff,
    se,
    pooledSe,
    statistic,
    df: Infinity,
    pValue: Math.min(1, 2 * normalSf(Math.abs(statistic))),
    ciLow: diff - z * se,
    ciHigh: diff + z * se,
    alpha,
    relative: relativeLift(pc, vc, pt, vt, alpha),
  };
}

/** The same test from running 0/1 sufficient statistics. */
export function proportionsFromStats(control: ArmStats, treatment: ArmStats, options: TestOptions = {}): ProportionComparison {
  return twoProportionTest(
    { n: control.n, successes: successesOf(control, "control") },
    { n: treatment.n, successes: successesOf(treatment, "treatment") },
    options,
  );
}
