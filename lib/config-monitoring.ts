// MLMESH_MONITORING_* variables: the live drift and quality monitor inside the inference
// service (services/inference/monitoring). Per-model drift policies (SetDriftPolicy) override
// the thresholds here; these are the defaults a model without a policy gets.

import { ConfigError, readBool, readDurationMs, readInt, readNumber, type Env } from "./config-read.js";

export interface MonitoringConfig {
  /** Consume the prediction log and compute drift/quality at all. */
  readonly enabled: boolean;
  /** Most observations per feature window (count-based sliding window). */
  readonly windowCount: number;
  /** Default time width of a window (DriftPolicy.window overrides per model), ms. */
  readonly windowMs: number;
  /** How often dirty windows are evaluated (metrics, states, alerts), ms. */
  readonly evaluateIntervalMs: number;
  readonly psiWarn: number;
  readonly psiAlert: number;
  /** Observations a window needs before it is evaluated. */
  readonly minWindowCount: number;
  /** A level is left only below its threshold minus this margin... */
  readonly hysteresisMargin: number;
  /** ...for this many consecutive evaluations. */
  readonly hysteresisEvaluations: number;
  /** Recent predictions kept for joining delayed labels (by request id). */
  readonly predictionIndexSize: number;
  /** Outcomes kept waiting for their prediction to arrive from the log. */
  readonly pendingOutcomes: number;
  readonly qualityWindowCount: number;
  readonly minLabelledCount: number;
  /** Model versions monitored at once; the least recently seen is dropped past this. */
  readonly maxVersions: number;
  /** How long "this version has no reference distributions" is believed before asking again, ms. */
  readonly referenceRetryMs: number;
}

export function readMonitoringConfig(env: Env): MonitoringConfig {
  const c = readMonitoringValues(env);
  if (c.psiWarn > c.psiAlert) throw new ConfigError("MLMESH_MONITORING_PSI_WARN", `at most MLMESH_MONITORING_PSI_ALERT (${c.psiAlert})`, String(c.psiWarn));
  if (c.minWindowCount > c.windowCount) {
    throw new ConfigError("MLMESH_MONITORING_MIN_WINDOW_COUNT", `at most MLMESH_MONITORING_WINDOW_COUNT (${c.windowCount}), else no window is ever evaluated`, String(c.minWindowCount));
  }
  return c;
}

function readMonitoringValues(env: Env): MonitoringConfig {
  return Object.freeze({
    enabled: readBool(env, "MLMESH_MONITORING_ENABLED", true),
    windowCount: readInt(env, "MLMESH_MONITORING_WINDOW_COUNT", 5000, 10, 10_000_000),
    windowMs: readDurationMs(env, "MLMESH_MONITORING_WINDOW", 3_600_000, 1000, 30 * 24 * 3_600_000),
    evaluateIntervalMs: readDurationMs(env, "MLMESH_MONITORING_EVALUATE_INTERVAL", 5000, 50, 3_600_000),
    psiWarn: readNumber(env, "MLMESH_MONITORING_PSI_WARN", 0.1, 0, 100),
    psiAlert: readNumber(env, "MLMESH_MONITORING_PSI_ALERT", 0.2, 0, 100),
    minWindowCount: readInt(env, "MLMESH_MONITORING_MIN_WINDOW_COUNT", 100, 1, 10_000_000),
    hysteresisMargin: readNumber(env, "MLMESH_MONITORING_HYSTERESIS_MARGIN", 0.02, 0, 100),
    hysteresisEvaluations: readInt(env, "MLMESH_MONITORING_HYSTERESIS_EVALUATIONS", 3, 1, 1000),
    predictionIndexSize: readInt(env, "MLMESH_MONITORING_PREDICTION_INDEX", 200_000, 100, 50_000_000),
    pendingOutcomes: readInt(env, "MLMESH_MONITORING_PENDING_OUTCOMES", 50_000, 0, 50_000_000),
    qualityWindowCount: readInt(env, "MLMESH_MONITORING_QUALITY_WINDOW_COUNT", 5000, 10, 10_000_000),
    minLabelledCount: readInt(env, "MLMESH_MONITORING_MIN_LABELLED_COUNT", 200, 1, 10_000_000),
    maxVersions: readInt(env, "MLMESH_MONITORING_MAX_VERSIONS", 64, 1, 10_000),
    referenceRetryMs: readDurationMs(env, "MLMESH_MONITORING_REFERENCE_RETRY", 10_000, 100, 3_600_000),
  });
}

export const MONITORING_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: "MLMESH_MONITORING_ENABLED", default: "true", meaning: "Consume the prediction log for live drift and quality (inference service)." },
  { name: "MLMESH_MONITORING_WINDOW_COUNT", default: "5000", meaning: "Most observations per feature in a sliding drift window." },
  { name: "MLMESH_MONITORING_WINDOW", default: "1h", meaning: "Default time width of a drift window (DriftPolicy.window overrides)." },
  { name: "MLMESH_MONITORING_EVALUATE_INTERVAL", default: "5s", meaning: "How often changed windows are evaluated into gauges, states and alerts." },
  { name: "MLMESH_MONITORING_PSI_WARN", default: "0.1", meaning: "Default PSI at which a feature is WARN." },
  { name: "MLMESH_MONITORING_PSI_ALERT", default: "0.2", meaning: "Default PSI at which a feature is ALERT." },
  { name: "MLMESH_MONITORING_MIN_WINDOW_COUNT", default: "100", meaning: "Default observations a window needs before it is evaluated." },
  { name: "MLMESH_MONITORING_HYSTERESIS_MARGIN", default: "0.02", meaning: "Default margin below a threshold needed to leave its level." },
  { name: "MLMESH_MONITORING_HYSTERESIS_EVALUATIONS", default: "3", meaning: "Default consecutive clear evaluations needed to leave a level." },
  { name: "MLMESH_MONITORING_PREDICTION_INDEX", default: "200000", meaning: "Recent predictions kept to join delayed labels by request id." },
  { name: "MLMESH_MONITORING_PENDING_OUTCOMES", default: "50000", meaning: "Outcomes kept waiting for their prediction to arrive." },
  { name: "MLMESH_MONITORING_QUALITY_WINDOW_COUNT", default: "5000", meaning: "Default labelled predictions in the rolling quality window." },
  { name: "MLMESH_MONITORING_MIN_LABELLED_COUNT", default: "200", meaning: "Default labelled predictions needed before quality is evaluated." },
  { name: "MLMESH_MONITORING_MAX_VERSIONS", default: "64", meaning: "Model versions monitored at once (least recently seen dropped)." },
  { name: "MLMESH_MONITORING_REFERENCE_RETRY", default: "10s", meaning: "How long a missing reference distribution is cached before asking the registry again." },
];
