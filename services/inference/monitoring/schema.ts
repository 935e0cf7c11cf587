// Monitoring persistence (drizzle, SQLite, `<dataDir>/inference-monitoring.db`): drift
// policies per model and the alert state of every monitored value, so a restarted replica
// neither forgets a policy nor raises an alert that is already standing. Migrations in
// ./migrations are generated from this file (MLMESH_DB_SERVICE=inference/monitoring).

import { blob, integer, primaryKey, real, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** The effective DriftPolicy of a model, as protobuf bytes (the contract's own encoding). */
export const driftPolicies = sqliteTable("drift_policies", {
  modelName: text("model_name").primaryKey(),
  policy: blob("policy", { mode: "buffer" }).notNull(),
  updateTimeMs: integer("update_time_ms").notNull(),
});

/**
 * Alert level of one watched value: a feature's PSI (`kind` "drift", `subject` the feature)
 * or a quality metric (`kind` "quality", `subject` the metric), with its hysteresis streak
 * and how many transitions it has had (part of the alert's msg id, see alerts.ts).
 */
export const alertStates = sqliteTable(
  "alert_states",
  {
    modelName: text("model_name").notNull(),
    version: integer("version").notNull(),
    kind: text("kind").notNull(),
    subject: text("subject").notNull(),
    level: text("level").notNull(),
    clearStreak: integer("clear_streak").notNull(),
    evaluations: integer("evaluations").notNull(),
    transitions: integer("transitions").notNull(),
    /** Quality baseline of the metric (NaN-free; null until set). */
    baseline: real("baseline"),
  },
  (t) => [primaryKey({ columns: [t.modelName, t.version, t.kind, t.subject] })],
);
