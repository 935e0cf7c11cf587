// Batch job records of the inference service (drizzle, SQLite `<data dir>/inference/batch-jobs.db`).
// Migrations in ./migrations: `MLMESH_DB_SERVICE=inference/batch npx drizzle-kit generate`.

import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** One row per job; the job itself is the BatchJob message as proto3 JSON. */
export const batchJobs = sqliteTable(
  "batch_jobs",
  {
    jobId: text("job_id").primaryKey(),
    /** Creation order (epoch ms, then id): ListBatchJobs pages newest first on it. */
    createMs: integer("create_ms").notNull(),
    state: integer("state").notNull(),
    jobJson: text("job_json").notNull(),
  },
  (t) => [index("batch_jobs_create_idx").on(t.createMs, t.jobId)],
);
