// Prometheus metrics of the live monitor, on the inference service's /metrics. Names are
// referenced by deploy/prometheus rules and deploy/grafana dashboards (checked by tests).

import { Counter, Gauge, type Registry } from "prom-client";

export interface MonitoringMetrics {
  /** Drift statistic of a feature (or `__score__`) window vs the version's reference; metric: psi, kl, js, hellinger, wasserstein, chi_square_p_value. */
  readonly driftValue: Gauge<"model" | "version" | "feature" | "metric">;
  /** Alert level of a feature: 0 OK, 1 WARN, 2 ALERT, -1 insufficient data. */
  readonly driftState: Gauge<"model" | "version" | "feature">;
  readonly driftWindow: Gauge<"model" | "version" | "feature">;
  readonly driftAlerts: Counter<"model" | "state">;
  /** Quality on delayed labels; metric: auc, log_loss, accuracy, expected_calibration_error. */
  readonly qualityValue: Gauge<"model" | "version" | "metric">;
  readonly qualityBaseline: Gauge<"model" | "version" | "metric">;
  readonly qualityState: Gauge<"model" | "version">;
  readonly qualityLabelled: Gauge<"model" | "version">;
  readonly qualityAlerts: Counter<"model" | "state">;
  /** Outcomes by what became of them: joined, pending, duplicate, dropped (pending evicted), not_a_probability. */
  readonly outcomes: Counter<"result">;
  readonly records: Counter<"model">;
  /** Age of the newest prediction log record processed when it was processed (consumer lag). */
  readonly lag: Gauge;
}

export function createMonitoringMetrics(registry: Registry): MonitoringMetrics {
  const r = [registry];
  return {
    driftValue: new Gauge({ name: "mlmesh_inference_drift_value", help: "Drift of a model version's feature (or __score__) window against its reference distribution, by statistic.", labelNames: ["model", "version", "feature", "metric"] as const, registers: r }),
    driftState: new Gauge({ name: "mlmesh_inference_drift_state", help: "Drift alert level of a feature: 0 OK, 1 WARN, 2 ALERT, -1 insufficient data.", labelNames: ["model", "version", "feature"] as const, registers: r }),
    driftWindow: new Gauge({ name: "mlmesh_inference_drift_window_count", help: "Observations in a feature's drift window.", labelNames: ["model", "version", "feature"] as const, registers: r }),
    driftAlerts: new Counter({ name: "mlmesh_inference_drift_alerts_total", help: "Drift state transitions published as DriftAlert events, by new state.", labelNames: ["model", "state"] as const, registers: r }),
    qualityValue: new Gauge({ name: "mlmesh_inference_quality_value", help: "Quality of a model version on delayed labels over its rolling window, by metric.", labelNames: ["model", "version", "metric"] as const, registers: r }),
    qualityBaseline: new Gauge({ name: "mlmesh_inference_quality_baseline", help: "Quality of a model version on its first evaluated window (baseline for relative thresholds).", labelNames: ["model", "version", "metric"] as const, registers: r }),
    qualityState: new Gauge({ name: "mlmesh_inference_quality_state", help: "Quality alert level of a model version: 0 OK, 1 WARN, 2 ALERT, -1 insufficient data.", labelNames: ["model", "version"] as const, registers: r }),
    qualityLabelled: new Gauge({ name: "mlmesh_inference_quality_labelled_count", help: "Labelled predictions in a model version's rolling quality window.", labelNames: ["model", "version"] as const, registers: r }),
    qualityAlerts: new Counter({ name: "mlmesh_inference_quality_alerts_total", help: "Quality state transitions published as QualityAlert events, by new state.", labelNames: ["model", "state"] as const, registers: r }),
    outcomes: new Counter({ name: "mlmesh_inference_outcomes_total", help: "Delayed labels by what became of them: joined (once per prediction labelled), pending, duplicate, dropped (pending evicted), not_a_probability.", labelNames: ["result"] as const, registers: r }),
    records: new Counter({ name: "mlmesh_inference_monitoring_records_total", help: "Prediction log records consumed by the monitor (all replicas' traffic).", labelNames: ["model"] as const, registers: r }),
    lag: new Gauge({ name: "mlmesh_inference_monitoring_lag_seconds", help: "Age of the newest prediction log record when the monitor consumed it.", registers: r }),
  };
}
