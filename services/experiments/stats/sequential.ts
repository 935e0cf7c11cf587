// Always-valid p-values and CIs for experiments watched continuously: the mixture sequential
// probability ratio test (mSPRT) with a normal mixture.
//
// As in Johari, Koomen, Pekelis & Walsh (2017, "Peeking at A/B tests") and Optimizely's Stats
// Engine. At each look the estimate θ̂ (treatment − control) has variance V. Mixing the alternative
// over θ ~ N(θ₀, τ²) gives the likelihood ratio
//   Λ = √(V / (V + τ²)) · exp( τ² (θ̂ − θ₀)² / (2 V (V + τ²)) ),
// and p = min over looks so far of min(1, 1/Λ) is a p-value that stays valid however often it
// is read (Ville's inequality). Inverting Λ < 1/α gives the always-valid CI
//   θ̂ ± √( V (V + τ²) / τ² · (ln((V + τ²)/V) − 2 ln α) ),
// intersected over looks. τ² (the mixing variance) is the caller's choice, on the scale of the
// effect: roughly the square of the smallest effect worth detecting; larger τ² favours large
// effects, smaller τ² favours small ones detected late.

import { ValidationError } from "../../../lib/errors.js";
import { resolveAlpha } from "./effect.js";
import { type ArmStats, summarize } from "./sufficient-stats.js";
import { requireFinite, requirePositive } from "./validate.js";

export interface MsprtOptions {
  /** τ² of the normal mixture, in squared units of the effect. Required, > 0. */
  readonly mixingVariance: number;
  /** Level of the always-valid CI and of `significant`; default 0.05. */
  readonly alpha?: number;
  /** θ₀, the null effect; default 0. */
  readonly nullValue?: number;
}

/** One look: the current estimate and its variance. */
export interface SequentialLook {
  readonly diff: number;
  /** Variance of diff (e.g. var_t/n_t + var_c/n_c), > 0. */
  readonly variance: number;
}

export interface SequentialState {
  readonly looks: number;
  /** Running minimum of the instantaneous mSPRT p-values. */
  readonly pValue: number;
  /** The instantaneous p-value at the latest look. */
  readonly lastPValue: number;
  /** Running intersection of always-valid CIs. */
  readonly ciLow: number;
  readonly ciHigh: number;
  readonly significant: boolean;
  /** True if a CI stopped overlapping the running intersection (the effect drifted); the newest CI is kept. */
  readonly drift: boolean;
}

function resolve(options: MsprtOptions): { tau2: number; alpha: number; theta0: number } {
  return {
    tau2: requirePositive("mixingVariance", options.mixingVariance),
    alpha: resolveAlpha(options.alpha),
    theta0: requireFinite("nullValue", options.nullValue ?? 0),
  };
}

function checkLook(look: SequentialLook): void {
  requireFinite("diff", look.diff);
  requirePositive("variance", look.variance);
}

/** ln Λ of one look. */
export function msprtLogLikelihoodRatio(look: SequentialLook, options: MsprtOptions): number {
  checkLook(look);
  const { tau2, theta0 } = resolve(options);
  const v = look.variance;
  const d = look.diff - theta0;
  return 0.5 * Math.log(v / (v + tau2)) + (tau2 * d * d) / (2 * v * (v + tau2));
}

/** min(1, 1/Λ) at one look (not yet the running minimum). */
export function msprtPValue(look: SequentialLook, options: MsprtOptions): number {
  return Math.min(1, Math.exp(-msprtLogLikelihoodRatio(look, options)));
}

/** The always-valid (1 − α) CI at one look (not yet intersected). */
export function msprtInterval(look: SequentialLook, options: MsprtOptions): { low: number; high: number } {
  checkLook(look);
  const { tau2, alpha } = resolve(options);
  const v = look.variance;
  const half = Math.sqrt(((v * (v + tau2)) / tau2) * (Math.log((v + tau2) / v) - 2 * Math.log(alpha)));
  return { low: look.diff - half, high: look.diff + half };
}

/** Folds one more look into the running state (pass undefined for the first look). */
export function updateSequential(state: SequentialState | undefined, look: SequentialLook, options: MsprtOptions): SequentialState {
  const { alpha } = resolve(options);
  const p = msprtPValue(look, options);
  const ci = msprtInterval(look, options);
  if (state === undefined) {
    return { looks: 1, pValue: p, lastPValue: p, ciLow: ci.low, ciHigh: ci.high, significant: p < alpha, drift: false };
  }
  if (!Number.isInteger(state.looks) || state.looks < 1) throw new ValidationError("state.looks", `must be a whole number >= 1, got ${state.looks}`);
  const pValue = Math.min(state.pValue, p);
  let ciLow = Math.max(state.ciLow, ci.low);
  let ciHigh = Math.min(state.ciHigh, ci.high);
  let drift = state.drift;
  if (ciLow > ciHigh) {
    ciLow = ci.low;
    ciHigh = ci.high;
    drift = true;
  }
  return { looks: state.looks + 1, pValue, lastPValue: p, ciLow, ciHigh, significant: pValue < alpha, drift };
}

/** A look from running sufficient statistics: diff of means and its Welch variance. */
export function lookFromStats(control: ArmStats, treatment: ArmStats): SequentialLook {
  const c = summarize(control, "control");
  const t = summarize(treatment, "treatment");
  const variance = c.variance / c.n + t.variance / t.n;
  if (!(variance > 0)) throw new ValidationError("variance", "both arms have zero variance; the look carries no information");
  return { diff: t.mean - c.mean, variance };
}
