// Sample ratio mismatch: Pearson's chi-square goodness of fit of the exposure counts per arm
// against the planned weights. A flagged experiment's results are invalid, whatever they say.

import { ValidationError } from "../../../lib/errors.js";
import { chiSquareSf } from "./distributions.js";
import { requireCount, requireList, requireOpenUnit, requireWeights } from "./validate.js";

/** The conventional SRM threshold (Kohavi et al.; GrowthBook, Eppo and Statsig use it too). */
export const SRM_THRESHOLD = 0.001;

export interface SrmResult {
  readonly chi2: number;
  readonly dof: number;
  readonly pValue: number;
  /** Expected count per arm, N · weight. */
  readonly expected: readonly number[];
  /** True when pValue < threshold: the assignment or the exposure logging is broken. */
  readonly flagged: boolean;
  readonly threshold: number;
}

/**
 * chi2 = Σ (observedᵢ − N·wᵢ)² / (N·wᵢ), dof = arms − 1, p = P(χ²_dof > chi2) — as
 * scipy.stats.chisquare(observed, N * weights). Weights must be positive and sum to 1
 * (within 1e-6; they are renormalised).
 */
export function sampleRatioMismatch(
  observed: readonly number[],
  weights: readonly number[],
  threshold: number = SRM_THRESHOLD,
): SrmResult {
  requireList("observed", observed, 2, "arms' exposure counts");
  observed.forEach((o, i) => requireCount(`observed[${i}]`, o));
  const w = requireWeights("weights", weights, observed.length);
  requireOpenUnit("threshold", threshold);
  const total = observed.reduce((a, b) => a + b, 0);
  if (total === 0) throw new ValidationError("observed", "no exposures yet, so there is no ratio to check");
  const expected = w.map((wi) => total * wi);
  let chi2 = 0;
  observed.forEach((o, i) => {
    const e = expected[i]!;
    chi2 += ((o - e) * (o - e)) / e;
  });
  const dof = observed.length - 1;
  const pValue = chiSquareSf(chi2, dof);
  return { chi2, dof, pValue, expected, flagged: pValue < threshold, threshold };
}
