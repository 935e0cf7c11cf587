// Guardrail non-inferiority tests and the one decision per experiment — SHIP, DO_NOT_SHIP,
// KEEP_RUNNING or INVALID — with a reason a person can read. SRM always wins: never a "win".

import { ValidationError } from "../../../lib/errors.js";
import { normalCdf, normalQuantile, normalSf, studentTCdf, studentTQuantile, studentTSf } from "./distributions.js";
import { resolveAlpha } from "./effect.js";
import { requireClosedUnit, requireFinite, requireList, requireNonNegative, requirePositive } from "./validate.js";

export type Decision = "SHIP" | "DO_NOT_SHIP" | "KEEP_RUNNING" | "INVALID";

/** Which way the metric should move: "increase" for revenue, "decrease" for latency. */
export type Direction = "increase" | "decrease";

export type GuardrailStatus = "PASS" | "FAIL" | "INCONCLUSIVE";

export interface NonInferiorityInput {
  /** Treatment − control (or the relative lift), on the same scale as `margin`. */
  readonly estimate: number;
  readonly se: number;
  /** Degrees of freedom of the t reference (Welch df); Infinity (default) for a z-test. */
  readonly df?: number;
  /** Tolerated degradation δ ≥ 0 in the bad direction, same units as `estimate`. */
  readonly margin: number;
  readonly direction: Direction;
  /** One-sided level of each test; default 0.05. */
  readonly alpha?: number;
}

export interface NonInferiorityResult {
  readonly status: GuardrailStatus;
  /** p of H0 "degraded by more than δ" (small → non-inferior, PASS). */
  readonly pValue: number;
  /** p of H0 "degraded by at most δ" (small → worse than tolerated, FAIL). */
  readonly inferiorityPValue: number;
  /** The one-sided (1 − α) confidence bound on the bad side of the estimate. */
  readonly worstCaseBound: number;
  readonly margin: number;
  readonly direction: Direction;
}

/**
 * Non-inferiority of a guardrail. For "increase": H0 θ ≤ −δ against H1 θ > −δ, statistic
 * (θ̂ + δ)/se, p = P(T > statistic) — statsmodels ttest_ind(treatment, control,
 * alternative="larger", usevar="unequal", value=−δ) for means. "decrease" mirrors it with +δ.
 * PASS when that p < α; FAIL when the mirror test shows the degradation exceeds δ; else
 * INCONCLUSIVE (not enough data yet).
 */
export function nonInferiorityTest(input: NonInferiorityInput): NonInferiorityResult {
  const estimate = requireFinite("estimate", input.estimate);
  const se = requirePositive("se", input.se);
  const margin = requireNonNegative("margin", input.margin);
  const df = input.df ?? Infinity;
  if (!(df > 0)) throw new ValidationError("df", `must be > 0, got ${df}`);
  if (input.direction !== "increase" && input.direction !== "decrease") {
    throw new ValidationError("direction", `must be "increase" or "decrease", got ${String(input.direction)}`);
  }
  const alpha = resolveAlpha(input.alpha);
  const upper = (x: number): number => (df === Infinity ? normalSf(x) : studentTSf(x, df));
  const lower = (x: number): number => (df === Infinity ? normalCdf(x) : studentTCdf(x, df));
  const q = df === Infinity ? normalQuantile(1 - alpha) : studentTQuantile(1 - alpha, df);
  let pValue: number;
  let inferiorityPValue: number;
  let worstCaseBound: number;
  if (input.direction === "increase") {
    const statistic = (estimate + margin) / se;
    pValue = upper(statistic);
    inferiorityPValue = lower(statistic);
    worstCaseBound = estimate - q * se;
  } else {
    const statistic = (estimate - margin) / se;
    pValue = lower(statistic);
    inferiorityPValue = upper(statistic);
    worstCaseBound = estimate + q * se;
  }
  const status: GuardrailStatus = pValue < alpha ? "PASS" : inferiorityPValue < alpha ? "FAIL" : "INCONCLUSIVE";
  return { status, pValue, inferiorityPValue, worstCaseBound, margin, direction: input.direction };
}

export interface PrimaryEvidence {
  readonly metric: string;
  /** Treatment − control (or relative lift). */
  readonly estimate: number;
  /** Two-sided p-value, already corrected across arms × metrics (Holm or BH) or always-valid. */
  readonly pValue: number;
  readonly direction: Direction;
}

export interface GuardrailEvidence {
  readonly metric: string;
  readonly result: NonInferiorityResult;
}

export interface InvariantEvidence {
  readonly metric: string;
  /** Two-sided p-value of the treatment − control difference. */
  readonly pValue: number;
}

export interface ArmEvidence {
  readonly arm: string;
  readonly primary: PrimaryEvidence;
  readonly guardrails?: readonly GuardrailEvidence[];
  /** Metrics the treatment must not move (e.g. page-load counts); a significant move invalidates. */
  readonly invariants?: readonly InvariantEvidence[];
}

const NONE_INVARIANT: readonly InvariantEvidence[] = [];
const NONE_GUARDRAIL: readonly GuardrailEvidence[] = [];

export interface DecisionInput {
  readonly srm: { readonly flagged: boolean; readonly pValue: number };
  readonly arms: readonly ArmEvidence[];
  /** Significance level for the primary metric and invariants; default 0.05. */
  readonly alpha?: number;
  /** True once the planned sample size is reached or the experiment is stopped. */
  readonly sampleComplete: boolean;
}

export interface ArmDecision {
  readonly arm: string;
  readonly decision: Exclude<Decision, "INVALID">;
  readonly reason: string;
}

export interface ExperimentDecision {
  readonly decision: Decision;
  readonly reason: string;
  /** The arm to ship (largest improvement among shippable arms) when decision is SHIP. */
  readonly arm: string | null;
  readonly arms: readonly ArmDecision[];
}

function fmt(p: number): string {
  return p < 1e-4 ? p.toExponential(2) : p.toPrecision(3);
}

function decideArm(e: ArmEvidence, alpha: number, sampleComplete: boolean): ArmDecision {
  const failed = (e.guardrails ?? NONE_GUARDRAIL).filter((g) => g.result.status === "FAIL");
  if (failed.length > 0) {
    return { arm: e.arm, decision: "DO_NOT_SHIP", reason: `guardrail ${failed.map((g) => g.metric).join(", ")} degraded beyond its tolerance` };
  }
  const { primary } = e;
  const improves = primary.direction === "increase" ? primary.estimate > 0 : primary.estimate < 0;
  if (primary.pValue < alpha && !improves) {
    return { arm: e.arm, decision: "DO_NOT_SHIP", reason: `${primary.metric} is significantly worse (p = ${fmt(primary.pValue)})` };
  }
  if (primary.pValue < alpha) {
    const open = (e.guardrails ?? NONE_GUARDRAIL).filter((g) => g.result.status !== "PASS");
    if (open.length === 0) {
      return { arm: e.arm, decision: "SHIP", reason: `${primary.metric} improved significantly (p = ${fmt(primary.pValue)}) and every guardrail is non-inferior` };
    }
    const names = open.map((g) => g.metric).join(", ");
    return sampleComplete
      ? { arm: e.arm, decision: "DO_NOT_SHIP", reason: `${primary.metric} improved but guardrail ${names} could not be shown non-inferior at the planned sample size` }
      : { arm: e.arm, decision: "KEEP_RUNNING", reason: `${primary.metric} improved; waiting for guardrail ${names} to be shown non-inferior` };
  }
  return sampleComplete
    ? { arm: e.arm, decision: "DO_NOT_SHIP", reason: `no significant change in ${primary.metric} at the planned sample size (p = ${fmt(primary.pValue)})` }
    : { arm: e.arm, decision: "KEEP_RUNNING", reason: `${primary.metric} not significant yet (p = ${fmt(primary.pValue)}); planned sample size not reached` };
}

/**
 * The experiment's decision. In order: INVALID on a sample ratio mismatch or a moved
 * invariant (the data cannot be trusted, whatever the metrics say); then per arm — a failed
 * guardrail → DO_NOT_SHIP; a significant improvement with all guardrails PASS → SHIP;
 * a significant harm → DO_NOT_SHIP; otherwise KEEP_RUNNING until the sample is complete, then
 * DO_NOT_SHIP. The experiment ships its best shippable arm, else keeps running while any arm
 * may still ship, else does not ship.
 */
export function decideExperiment(input: DecisionInput): ExperimentDecision {
  const alpha = resolveAlpha(input.alpha);
  requireClosedUnit("srm.pValue", input.srm.pValue);
  requireList("arms", input.arms, 1, "treatment arms");
  input.arms.forEach((a, i) => {
    requireFinite(`arms[${i}].primary.estimate`, a.primary.estimate);
    requireClosedUnit(`arms[${i}].primary.pValue`, a.primary.pValue);
    (a.invariants ?? NONE_INVARIANT).forEach((v, j) => requireClosedUnit(`arms[${i}].invariants[${j}].pValue`, v.pValue));
  });
  if (input.srm.flagged) {
    return {
      decision: "INVALID",
      reason: `sample ratio mismatch (p = ${fmt(input.srm.pValue)}): exposures do not match the planned split, so no result can be trusted; fix assignment or exposure logging and restart`,
      arm: null,
      arms: [],
    };
  }
  for (const a of input.arms) {
    const moved = (a.invariants ?? NONE_INVARIANT).filter((v) => v.pValue < alpha);
    if (moved.length > 0) {
      return {
        decision: "INVALID",
        reason: `invariant ${moved.map((v) => v.metric).join(", ")} moved in arm ${a.arm} (p = ${fmt(Math.min(...moved.map((v) => v.pValue)))}); the experiment is broken`,
        arm: null,
        arms: [],
      };
    }
  }
  const arms = input.arms.map((a) => decideArm(a, alpha, input.sampleComplete));
  const shippable = input.arms.filter((_, i) => arms[i]!.decision === "SHIP");
  if (shippable.length > 0) {
    const gain = (a: ArmEvidence): number => (a.primary.direction === "increase" ? a.primary.estimate : -a.primary.estimate);
    const best = shippable.reduce((x, y) => (gain(y) > gain(x) ? y : x));
    const reason = arms.find((d) => d.arm === best.arm)!.reason;
    return { decision: "SHIP", reason: `ship ${best.arm}: ${reason}`, arm: best.arm, arms };
  }
  const running = arms.filter((d) => d.decision === "KEEP_RUNNING");
  if (running.length > 0) return { decision: "KEEP_RUNNING", reason: running.map((d) => `${d.arm}: ${d.reason}`).join("; "), arm: null, arms };
  return { decision: "DO_NOT_SHIP", reason: arms.map((d) => `${d.arm}: ${d.reason}`).join("; "), arm: null, arms };
}
