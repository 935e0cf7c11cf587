// Experiment service persistence (drizzle, SQLite): definitions, exposures, per-unit metric
// values and the per-arm sufficient statistics they feed, the outcome and covariate logs,
// audit and outbox. Migrations in ./migrations are generated from this file.

import { sql } from "drizzle-orm";
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export { auditTable } from "../../lib/audit.js";
export { outboxTable } from "../../lib/outbox.js";

/** One row per experiment; the definition is the Experiment message as proto3 JSON. */
export const experiments = sqliteTable(
  "experiments",
  {
    key: text("key").primaryKey(),
    status: integer("status").notNull(),
    layer: text("layer").notNull(),
    unitType: integer("unit_type").notNull(),
    revision: integer("revision").notNull(),
    defJson: text("def_json").notNull(),
  },
  (t) => [index("experiments_status_idx").on(t.status, t.key)],
);

/** The first exposure of each unit in each experiment (later ones are duplicates). */
export const exposures = sqliteTable(
  "exposures",
  {
    experimentKey: text("experiment_key").notNull(),
    unitId: text("unit_id").notNull(),
    arm: text("arm").notNull(),
    /** Exposure time, epoch ms. */
    time: integer("time").notNull(),
    phase: integer("phase").notNull(),
  },
  // Unit first: the one key serves both the uniqueness and the by-unit lookups of ingest, so
  // an exposure is one b-tree insert (the migration also makes the table WITHOUT ROWID).
  (t) => [primaryKey({ columns: [t.unitId, t.experimentKey] })],
);

/** Every accepted outcome, so an exposure that arrives later can pick up earlier outcomes. */
export const outcomes = sqliteTable(
  "outcomes",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    unitId: text("unit_id").notNull(),
    unitType: integer("unit_type").notNull(),
    metric: text("metric").notNull(),
    value: real("value").notNull(),
    time: integer("time").notNull(),
    /** "" when the caller gave none. */
    outcomeId: text("outcome_id").notNull(),
    experimentKey: text("experiment_key").notNull(),
  },
  // outcome_id is unique when given: ingest finds redelivered ids with it (IN lookups of 64
  // ids), and a repeat could never be stored twice.
  (t) => [index("outcomes_unit_idx").on(t.unitId), uniqueIndex("outcomes_id_uidx").on(t.outcomeId).where(sql`${t.outcomeId} <> ''`)],
);

/** Last covariate value per (unit, name, experiment); experiment "" applies to all. */
export const covariates = sqliteTable(
  "covariates",
  {
    unitId: text("unit_id").notNull(),
    name: text("name").notNull(),
    experimentKey: text("experiment_key").notNull(),
    unitType: integer("unit_type").notNull(),
    value: real("value").notNull(),
  },
  (t) => [primaryKey({ columns: [t.unitId, t.name, t.experimentKey] })],
);

/**
 * Per exposed unit and metric: the unit's aggregates (what its contribution is made of).
 * WITHOUT ROWID (set in migration 0002; drizzle cannot say it): the row lives in its key's
 * b-tree, one write per upsert instead of two.
 */
export const unitMetrics = sqliteTable(
  "unit_metrics",
  {
    experimentKey: text("experiment_key").notNull(),
    metric: text("metric").notNull(),
    unitId: text("unit_id").notNull(),
    arm: text("arm").notNull(),
    /** Sum of the (numerator) outcome values. */
    num: real("num").notNull(),
    /** RATIO: sum of the denominator outcome values. */
    den: real("den").notNull(),
    /** CUPED covariate, null when the unit has none. */
    cov: real("cov"),
  },
  (t) => [primaryKey({ columns: [t.experimentKey, t.metric, t.unitId] })],
);

/**
 * Running sufficient statistics per experiment, metric, arm and part ("cov": units with the
 * covariate, "plain": without), as ArmStats JSON.
 */
export const armStats = sqliteTable(
  "arm_stats",
  {
    experimentKey: text("experiment_key").notNull(),
    metric: text("metric").notNull(),
    arm: text("arm").notNull(),
    part: text("part").notNull(),
    statsJson: text("stats_json").notNull(),
  },
  (t) => [primaryKey({ columns: [t.experimentKey, t.metric, t.arm, t.part] })],
);

/** Deduplicated exposed units per experiment, phase and arm (SRM reads these, O(arms)). */
export const exposureCounts = sqliteTable(
  "exposure_counts",
  {
    experimentKey: text("experiment_key").notNull(),
    phase: integer("phase").notNull(),
    arm: text("arm").notNull(),
    units: integer("units").notNull(),
  },
  (t) => [primaryKey({ columns: [t.experimentKey, t.phase, t.arm] })],
);

/** Last guardrail status per experiment, metric and arm: GuardrailBreached fires on a transition into FAILED. */
export const guardrailStates = sqliteTable(
  "guardrail_states",
  {
    experimentKey: text("experiment_key").notNull(),
    metric: text("metric").notNull(),
    arm: text("arm").notNull(),
    status: integer("status").notNull(),
  },
  (t) => [primaryKey({ columns: [t.experimentKey, t.metric, t.arm] })],
);

/** Snapshots of each comparison over time: the report's history and the mSPRT running minimum. */
export const comparisonHistory = sqliteTable(
  "comparison_history",
  {
    experimentKey: text("experiment_key").notNull(),
    metric: text("metric").notNull(),
    arm: text("arm").notNull(),
    /** Epoch ms of the analysis. */
    time: integer("time").notNull(),
    n: integer("n").notNull(),
    diff: real("diff").notNull(),
    pValue: real("p_value").notNull(),
    sequentialPValue: real("sequential_p_value").notNull(),
  },
  (t) => [primaryKey({ columns: [t.experimentKey, t.metric, t.arm, t.time] })],
);
