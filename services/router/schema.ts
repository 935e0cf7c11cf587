// Router persistence (drizzle, SQLite): endpoints with their live serving plan and its
// revision, rollouts with their full state, plus audit and outbox. Specs and rollouts are
// stored as protobuf binary (the contract), columns only for what is queried.
// Migrations in ./migrations are generated from this file.

import { blob, index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

export { auditTable } from "../../lib/audit.js";
export { outboxTable } from "../../lib/outbox.js";

/** One row per endpoint: the applied spec (without status and plan), and the live plan. */
export const endpoints = sqliteTable(
  "endpoints",
  {
    name: text("name").primaryKey(),
    model: text("model").notNull(),
    /** mlmesh.router.v1.Endpoint binary, with `status` and `serving_plan` cleared. */
    spec: blob("spec", { mode: "buffer" }).notNull(),
    generation: integer("generation").notNull(),
    /** mlmesh.router.v1.ServingPlan binary. */
    plan: blob("plan", { mode: "buffer" }).notNull(),
    planRevision: integer("plan_revision").notNull(),
    planUpdateTime: integer("plan_update_time").notNull(),
    activeRolloutId: text("active_rollout_id").notNull(),
    createTime: integer("create_time").notNull(),
    updateTime: integer("update_time").notNull(),
  },
  (t) => [index("endpoints_model_idx").on(t.model, t.name)],
);

/** One row per rollout: the mlmesh.router.v1.Rollout message, with history. */
export const rollouts = sqliteTable(
  "rollouts",
  {
    id: text("id").primaryKey(),
    endpoint: text("endpoint").notNull(),
    state: integer("state").notNull(),
    terminal: integer("terminal").notNull(),
    rollout: blob("rollout", { mode: "buffer" }).notNull(),
    createTime: integer("create_time").notNull(),
  },
  (t) => [index("rollouts_endpoint_idx").on(t.endpoint, t.createTime), index("rollouts_terminal_idx").on(t.terminal)],
);
