// CUPED (Deng, Xu, Kohavi & Walker 2013): variance reduction with a pre-experiment covariate,
// computed from per-arm sufficient statistics and then tested with the same Welch test.
//
// θ = cov(Y, X) / var(X) over all units of all arms (one θ per experiment and metric, so every
// comparison adjusts the same way), Y' = Y − θ(X − X̄) with X̄ the mean over all units. Per arm,
// mean(Y') = ȳ − θ(x̄ − X̄) and var(Y') = var(Y) − 2θ cov(X, Y) + θ² var(X), all from the
// running moments: no second pass over units.

import { ValidationError } from "../../../lib/errors.js";
import type { Comparison } from "./effect.js";
import { type ArmStats, type ArmSummary, mergeAll, summarize } from "./sufficient-stats.js";
import { type TestOptions, welchTest } from "./welch.js";

export interface CupedAdjustment {
  /** cov(Y, X) / var(X) over all units of all arms. */
  readonly theta: number;
  /** Mean of X over all units of all arms. */
  readonly grandMeanX: number;
  /** 1 − var(Y')/var(Y) over all units of all arms (= squared correlation of X and Y). */
  readonly varianceReduction: number;
}

export interface CupedComparison extends Comparison {
  readonly theta: number;
  /** 1 − var(Y')/var(Y) over all units of all arms. */
  readonly varianceReduction: number;
  /** 1 − se(diff of Y')² / se(diff of Y)²: how much narrower this comparison's CI became. */
  readonly estimatorVarianceReduction: number;
  /** The same comparison without adjustment, for reporting both. */
  readonly unadjusted: Comparison;
}

/** θ and X̄ pooled over every arm of the experiment. */
export function cupedAdjustment(arms: readonly ArmStats[]): CupedAdjustment {
  if (arms.length < 2) throw new ValidationError("arms", `CUPED needs at least 2 arms, got ${arms.length}`);
  arms.forEach((a, i) => {
    if (!(a.n >= 2)) throw new ValidationError(`arms[${i}]`, `needs at least 2 units, has ${a.n}`);
  });
  const all = mergeAll(arms);
  if (!(all.m2X > 0)) {
    throw new ValidationError("covariate", "has the same value for every unit, so it cannot explain any variance; drop it or pick another covariate");
  }
  if (!(all.m2Y > 0)) throw new ValidationError("value", "has the same value for every unit; there is no variance to reduce");
  const theta = all.cXY / all.m2X;
  const residual = Math.max(0, all.m2Y - theta * all.cXY);
  return { theta, grandMeanX: all.meanX, varianceReduction: 1 - residual / all.m2Y };
}

/** n, mean and variance (ddof = 1) of Y' = Y − θ(X − X̄) within one arm. */
export function adjustedSummary(arm: ArmStats, adjustment: CupedAdjustment, field = "arm"): ArmSummary {
  const base = summarize(arm, field);
  const { theta, grandMeanX } = adjustment;
  const m2 = Math.max(0, arm.m2Y - 2 * theta * arm.cXY + theta * theta * arm.m2X);
  return { n: base.n, mean: arm.meanY - theta * (arm.meanX - grandMeanX), variance: m2 / (arm.n - 1) };
}

/**
 * CUPED-adjusted Welch test of treatment − control. `allArms` are every arm of the experiment
 * (control and treatment included) so θ is the experiment's pooled θ.
 */
export function cupedTest(
  control: ArmStats,
  treatment: ArmStats,
  allArms: readonly ArmStats[],
  options: TestOptions = {},
): CupedComparison {
  const adjustment = cupedAdjustment(allArms);
  const unadjusted = welchTest(summarize(control, "control"), summarize(treatment, "treatment"), options);
  const adjusted = welchTest(adjustedSummary(control, adjustment, "control"), adjustedSummary(treatment, adjustment, "treatment"), options);
  return {
    ...adjusted,
    theta: adjustment.theta,
    varianceReduction: adjustment.varianceReduction,
    estimatorVarianceReduction: 1 - (adjusted.se * adjusted.se) / (unadjusted.se * unadjusted.se),
    unadjusted,
  };
}
