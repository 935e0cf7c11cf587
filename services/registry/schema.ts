// Registry persistence (drizzle, SQLite). Migrations in ./migrations are generated from this
// file by `npm run db:generate` and applied at start.

import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

export { auditTable } from "../../lib/audit.js";
export { outboxTable } from "../../lib/outbox.js";

export const registeredModels = sqliteTable("registered_models", {
  name: text("name").primaryKey(),
  description: text("description").notNull().default(""),
  /** JSON object of string tags. */
  tagsJson: text("tags_json").notNull().default("{}"),
  owner: text("owner").notNull().default(""),
  /** Highest version number ever created; never decreases, so numbers are never reused. */
  latestVersion: integer("latest_version").notNull().default(0),
  createdBy: text("created_by").notNull(),
  createTime: integer("create_time").notNull(),
  updateTime: integer("update_time").notNull(),
});
