// Drift policies: a model's DriftPolicy with the configured defaults filled in, validated
// with the proto's field names, turned into the lib/drift alert policies, and persisted in
// the replica's SQLite (protobuf bytes) so a restart keeps them.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { eq } from "drizzle-orm";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  DriftPolicySchema,
  QualityMetric,
  QualityThresholdSchema,
  type DriftPolicy,
  type QualityThreshold,
} from "../../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import type { MonitoringConfig } from "../../../lib/config-monitoring.js";
import { openSqlite, type SqliteHandle } from "../../../lib/db.js";
import { resolveAlertPolicy, type AlertPolicy } from "../../../lib/drift/alerts.js";
import { ValidationError } from "../../../lib/errors.js";
import * as schema from "./schema.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");

/** Lower snake case name of a quality metric, as in QualityAlert.metric and the gauges. */
export const QUALITY_METRIC_NAMES: Readonly<Record<Exclude<QualityMetric, QualityMetric.UNSPECIFIED>, string>> = {
  [QualityMetric.AUC]: "auc",
  [QualityMetric.LOG_LOSS]: "log_loss",
  [QualityMetric.ACCURACY]: "accuracy",
  [QualityMetric.EXPECTED_CALIBRATION_ERROR]: "expected_calibration_error",
};

/** Whether a larger value of the metric is worse. */
export function higherIsWorse(metric: QualityMetric): boolean {
  return metric === QualityMetric.LOG_LOSS || metric === QualityMetric.EXPECTED_CALIBRATION_ERROR;
}

/** The default: AUC 0.03 (warn) / 0.05 (alert) below the version's baseline. */
function defaultQualityThresholds(): QualityThreshold[] {
  return [create(QualityThresholdSchema, { metric: QualityMetric.AUC, warn: 0.03, alert: 0.05, relativeToBaseline: true })];
}

/** The defaults a model without a policy gets. */
export function defaultPolicy(c: MonitoringConfig): DriftPolicy {
  return create(DriftPolicySchema, {
    psiWarn: c.psiWarn,
    psiAlert: c.psiAlert,
    minWindowCount: BigInt(c.minWindowCount),
    hysteresisMargin: c.hysteresisMargin,
    hysteresisEvaluations: c.hysteresisEvaluations,
    window: durationFromMs(c.windowMs),
    qualityThresholds: defaultQualityThresholds(),
    minLabelledCount: BigInt(c.minLabelledCount),
    qualityWindowCount: BigInt(c.qualityWindowCount),
  });
}

/**
 * A requested policy with zero fields taken from the defaults (proto3 scalars have no
 * presence; a zero threshold or window is never meaningful), validated. Field names in
 * errors are the request's (`policy.psi_warn`, ...).
 */
export function effectivePolicy(requested: DriftPolicy | undefined, c: MonitoringConfig): DriftPolicy {
  const d = defaultPolicy(c);
  const r = requested ?? create(DriftPolicySchema);
  const p = create(DriftPolicySchema, {
    psiWarn: r.psiWarn || d.psiWarn,
    psiAlert: r.psiAlert || d.psiAlert,
    minWindowCount: r.minWindowCount || d.minWindowCount,
    hysteresisMargin: r.hysteresisMargin || d.hysteresisMargin,
    hysteresisEvaluations: r.hysteresisEvaluations || d.hysteresisEvaluations,
    window: r.window && durationMs(r.window) > 0 ? r.window : d.window,
    qualityThresholds: r.qualityThresholds.length > 0 ? r.qualityThresholds : d.qualityThresholds,
    minLabelledCount: r.minLabelledCount || d.minLabelledCount,
    qualityWindowCount: r.qualityWindowCount || d.qualityWindowCount,
  });
  const finite = (v: number, field: string, min = 0) => {
    if (!Number.isFinite(v) || v < min) throw new ValidationError(`policy.${field}`, `must be a finite number >= ${min}, got ${v}`);
  };
  finite(p.psiWarn, "psi_warn");
  finite(p.psiAlert, "psi_alert");
  finite(p.hysteresisMargin, "hysteresis_margin");
  if (p.psiWarn > p.psiAlert) throw new ValidationError("policy.psi_warn", `${p.psiWarn} must be <= psi_alert ${p.psiAlert}`);
  if (p.minWindowCount < 1n) throw new ValidationError("policy.min_window_count", `must be >= 1, got ${p.minWindowCount}`);
  if (p.minWindowCount > BigInt(c.windowCount)) {
    throw new ValidationError("policy.min_window_count", `${p.minWindowCount} is more than a window holds (MLMESH_MONITORING_WINDOW_COUNT=${c.windowCount}); it would never be evaluated`);
  }
  if (p.hysteresisEvaluations < 1) throw new ValidationError("policy.hysteresis_evaluations", `must be >= 1, got ${p.hysteresisEvaluations}`);
  const windowMs = durationMs(p.window!);
  if (!(windowMs >= 1000)) throw new ValidationError("policy.window", `must be at least 1s, got ${windowMs} ms`);
  if (p.qualityWindowCount < 1n || p.qualityWindowCount > 10_000_000n) throw new ValidationError("policy.quality_window_count", `must be in [1, 10000000], got ${p.qualityWindowCount}`);
  if (p.minLabelledCount < 1n) throw new ValidationError("policy.min_labelled_count", `must be >= 1, got ${p.minLabelledCount}`);
  if (p.minLabelledCount > p.qualityWindowCount) {
    throw new ValidationError("policy.min_labelled_count", `${p.minLabelledCount} is more than quality_window_count ${p.qualityWindowCount}; it would never be evaluated`);
  }
  const seen = new Set<QualityMetric>();
  p.qualityThresholds.forEach((t, i) => {
    const f = `policy.quality_thresholds[${i}]`;
    if (!(t.metric in QUALITY_METRIC_NAMES)) throw new ValidationError(`${f}.metric`, "must be AUC, LOG_LOSS, ACCURACY or EXPECTED_CALIBRATION_ERROR");
    if (seen.has(t.metric)) throw new ValidationError(`${f}.metric`, "appears twice");
    seen.add(t.metric);
    if (!Number.isFinite(t.warn) || !Number.isFinite(t.alert)) throw new ValidationError(`${f}.warn`, "warn and alert must be finite");
    // Relative thresholds are changes for the worse (positive); absolute ones follow the metric's direction.
    const worseIsUp = t.relativeToBaseline || higherIsWorse(t.metric);
    if (worseIsUp ? t.warn > t.alert : t.warn < t.alert) {
      throw new ValidationError(`${f}.warn`, `${t.warn} must not be beyond alert ${t.alert} (${worseIsUp ? "higher" : "lower"} is worse)`);
    }
  });
  return p;
}

/** The PSI alert policy of lib/drift for a DriftPolicy. */
export function psiAlertPolicy(p: DriftPolicy): AlertPolicy {
  return resolveAlertPolicy({
    warn: p.psiWarn,
    alert: p.psiAlert,
    direction: "above",
    minWindow: Number(p.minWindowCount),
    margin: p.hysteresisMargin,
    clearAfter: p.hysteresisEvaluations,
  });
}

/**
 * The alert policy of one quality threshold, given the version's baseline. A relative
 * threshold becomes absolute here: AUC warn 0.03 with baseline 0.9 is "below 0.87". The
 * margin is the drift policy's hysteresis margin scaled to the metric (a tenth of the gap
 * between warn and alert, at least 0.005) so quality states do not flap either.
 */
export function qualityAlertPolicy(t: QualityThreshold, p: DriftPolicy, baseline: number): AlertPolicy {
  const up = higherIsWorse(t.metric);
  const at = (x: number) => (t.relativeToBaseline ? (up ? baseline + x : baseline - x) : x);
  return resolveAlertPolicy({
    warn: at(t.warn),
    alert: at(t.alert),
    direction: up ? "above" : "below",
    minWindow: Number(p.minLabelledCount),
    margin: Math.max(0.005, Math.abs(t.alert - t.warn) / 10),
    clearAfter: p.hysteresisEvaluations,
  });
}

export interface StoredAlertState {
  readonly level: "OK" | "WARN" | "ALERT";
  readonly clearStreak: number;
  readonly evaluations: number;
  readonly transitions: number;
  readonly baseline: number | null;
}

/** The replica's monitoring database: policies and alert states. */
export class MonitoringStore {
  private readonly h: SqliteHandle<typeof schema>;
  private readonly policies = new Map<string, DriftPolicy>();

  constructor(dataDir: string) {
    this.h = openSqlite({ dataDir, file: "inference-monitoring.db", schema, migrationsFolder: MIGRATIONS });
    for (const row of this.h.db.select().from(schema.driftPolicies).all()) {
      this.policies.set(row.modelName, fromBinary(DriftPolicySchema, row.policy));
    }
  }

  /** The stored policy of a model, or undefined (then the defaults apply). */
  policy(model: string): DriftPolicy | undefined {
    return this.policies.get(model);
  }

  setPolicy(model: string, p: DriftPolicy): void {
    const bytes = Buffer.from(toBinary(DriftPolicySchema, p));
    const now = Date.now();
    this.h.db
      .insert(schema.driftPolicies)
      .values({ modelName: model, policy: bytes, updateTimeMs: now })
      .onConflictDoUpdate({ target: schema.driftPolicies.modelName, set: { policy: bytes, updateTimeMs: now } })
      .run();
    this.policies.set(model, p);
  }

  /** Alert states of one version, keyed `${kind}|${subject}`. */
  alertStates(model: string, version: number): Map<string, StoredAlertState> {
    const out = new Map<string, StoredAlertState>();
    const rows = this.h.db.select().from(schema.alertStates).where(eq(schema.alertStates.modelName, model)).all();
    for (const r of rows) {
      if (r.version !== version) continue;
      const level = r.level === "WARN" || r.level === "ALERT" ? r.level : "OK";
      out.set(`${r.kind}|${r.subject}`, { level, clearStreak: r.clearStreak, evaluations: r.evaluations, transitions: r.transitions, baseline: r.baseline });
    }
    return out;
  }

  saveAlertState(model: string, version: number, kind: "drift" | "quality", subject: string, s: StoredAlertState): void {
    const values = { level: s.level, clearStreak: s.clearStreak, evaluations: s.evaluations, transitions: s.transitions, baseline: s.baseline };
    this.h.db
      .insert(schema.alertStates)
      .values({ modelName: model, version, kind, subject, ...values })
      .onConflictDoUpdate({ target: [schema.alertStates.modelName, schema.alertStates.version, schema.alertStates.kind, schema.alertStates.subject], set: values })
      .run();
  }

  close(): void {
    this.h.close();
  }
}
