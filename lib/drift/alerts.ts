// Drift and quality alert levels per model as a pure state machine: thresholds, a minimum
// window size, and hysteresis so a value hovering at a threshold raises one alert, not many.

import { ValidationError } from "../errors.js";

export type AlertLevel = "OK" | "WARN" | "ALERT";

/**
 * Thresholds for one monitored value (PSI of a feature, AUC of a model version, ...).
 *
 * Hysteresis: a level is entered at once when the value reaches its threshold (`warn`,
 * `alert`), but left only after `clearAfter` consecutive evaluations beyond the threshold
 * by more than `margin` (for the PSI defaults: ALERT is entered at PSI >= 0.2 and left only
 * after 3 evaluations in a row with PSI < 0.18). One evaluation back inside the band resets
 * that count. Windows smaller than `minWindow` are not evaluated at all.
 *
 * `direction: "above"` means larger is worse (PSI, log loss); `"below"` means smaller is
 * worse (AUC, accuracy), in which case `warn` >= `alert` and the margin counts upward.
 */
export interface AlertPolicy {
  readonly warn: number;
  readonly alert: number;
  readonly direction: "above" | "below";
  readonly minWindow: number;
  readonly margin: number;
  readonly clearAfter: number;
}

/** PSI defaults from the monitoring issue (and common practice): warn 0.1, alert 0.2. */
export const DEFAULT_DRIFT_POLICY: AlertPolicy = Object.freeze({
  warn: 0.1,
  alert: 0.2,
  direction: "above",
  minWindow: 100,
  margin: 0.02,
  clearAfter: 3,
});

/** Builds a policy from defaults plus per-model overrides, rejecting inconsistent ones. */
export function resolveAlertPolicy(overrides: Partial<AlertPolicy> = {}, base: AlertPolicy = DEFAULT_DRIFT_POLICY): AlertPolicy {
  const p: AlertPolicy = { ...base, ...overrides };
  for (const k of ["warn", "alert", "margin"] as const) {
    if (!Number.isFinite(p[k])) throw new ValidationError(`policy.${k}`, `must be a finite number, got ${p[k]}`);
  }
  if (p.direction !== "above" && p.direction !== "below") {
    throw new ValidationError("policy.direction", `must be "above" or "below", got ${String(p.direction)}`);
  }
  if (p.direction === "above" ? p.warn > p.alert : p.warn < p.alert) {
    throw new ValidationError(
      "policy.warn",
      `${p.warn} must be ${p.direction === "above" ? "<=" : ">="} alert ${p.alert} when worse is ${p.direction}`,
    );
  }
  if (p.margin < 0) throw new ValidationError("policy.margin", `must be >= 0, got ${p.margin}`);
  if (!Number.isInteger(p.minWindow) || p.minWindow < 1) {
    throw new ValidationError("policy.minWindow", `must be a positive integer, got ${p.minWindow}`);
  }
  if (!Number.isInteger(p.clearAfter) || p.clearAfter < 1) {
    throw new ValidationError("policy.clearAfter", `must be a positive integer, got ${p.clearAfter}`);
  }
  return Object.freeze(p);
}

export interface AlertState {
  readonly level: AlertLevel;
  /** Consecutive evaluations that were clear of the current level's exit bound. */
  readonly clearStreak: number;
  /** Evaluations made (windows large enough). */
  readonly evaluations: number;
}

export const INITIAL_ALERT_STATE: AlertState = Object.freeze({ level: "OK", clearStreak: 0, evaluations: 0 });

export interface AlertTransition {
  readonly from: AlertLevel;
  readonly to: AlertLevel;
  readonly value: number;
}

export interface AlertEvaluation {
  readonly state: AlertState;
  /** Set when the level changed on this evaluation; publish it as an event. */
  readonly transition?: AlertTransition;
  /** Set when the observation was not evaluated, with why. */
  readonly skipped?: "window-too-small" | "not-a-number";
}

const RANK: Record<AlertLevel, number> = { OK: 0, WARN: 1, ALERT: 2 };

/** The level a value indicates on entry thresholds alone. */
export function levelOf(value: number, policy: AlertPolicy): AlertLevel {
  const worse = (t: number) => (policy.direction === "above" ? value >= t : value <= t);
  if (worse(policy.alert)) return "ALERT";
  if (worse(policy.warn)) return "WARN";
  return "OK";
}

/** True when `value` is clear of `level`'s threshold by more than the margin. */
function clearOf(level: AlertLevel, value: number, policy: AlertPolicy): boolean {
  const threshold = level === "ALERT" ? policy.alert : policy.warn;
  return policy.direction === "above" ? value < threshold - policy.margin : value > threshold + policy.margin;
}

/**
 * One evaluation of the state machine. Escalation is immediate (OK -> WARN -> ALERT, or
 * straight to ALERT); de-escalation needs `clearAfter` consecutive clear evaluations and then
 * drops to the level the latest value indicates.
 */
export function evaluateAlert(
  state: AlertState,
  observation: { readonly value: number; readonly windowSize: number },
  policy: AlertPolicy = DEFAULT_DRIFT_POLICY,
): AlertEvaluation {
  if (observation.windowSize < policy.minWindow) return { state, skipped: "window-too-small" };
  const { value } = observation;
  if (Number.isNaN(value)) return { state, skipped: "not-a-number" };
  const evaluations = state.evaluations + 1;
  const indicated = levelOf(value, policy);
  const from = state.level;
  if (RANK[indicated] > RANK[from]) {
    return { state: { level: indicated, clearStreak: 0, evaluations }, transition: { from, to: indicated, value } };
  }
  if (from === "OK") return { state: { level: "OK", clearStreak: 0, evaluations } };
  if (!clearOf(from, value, policy)) return { state: { level: from, clearStreak: 0, evaluations } };
  const clearStreak = state.clearStreak + 1;
  if (clearStreak < policy.clearAfter) return { state: { level: from, clearStreak, evaluations } };
  return { state: { level: indicated, clearStreak: 0, evaluations }, transition: { from, to: indicated, value } };
}

/** Runs a series of observations through the machine; returns the final state and every transition. */
export function replayAlerts(
  observations: Iterable<{ readonly value: number; readonly windowSize: number }>,
  policy: AlertPolicy = DEFAULT_DRIFT_POLICY,
  initial: AlertState = INITIAL_ALERT_STATE,
): { state: AlertState; transitions: AlertTransition[] } {
  let state = initial;
  const transitions: AlertTransition[] = [];
  for (const o of observations) {
    const r = evaluateAlert(state, o, policy);
    state = r.state;
    if (r.transition) transitions.push(r.transition);
  }
  return { state, transitions };
}
