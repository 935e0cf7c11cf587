// Feature service persistence (drizzle, SQLite): definitions, the offline store (every
// row), the SQLite online store (latest row per entity), write idempotency, audit, outbox.
// Migrations in ./migrations are generated from this file and applied at start.

import { index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

export { auditTable } from "../../lib/audit.js";
export { outboxTable } from "../../lib/outbox.js";

/** Every version of every view; the latest is the highest version of a name. */
export const featureViews = sqliteTable(
  "feature_views",
  {
    name: text("name").notNull(),
    version: integer("version").notNull(),
    /** The ViewDef as JSON. */
    defJson: text("def_json").notNull(),
    createTime: integer("create_time").notNull(),
    updateTime: integer("update_time").notNull(),
  },
  (t) => [primaryKey({ columns: [t.name, t.version] })],
);

export const featureSets = sqliteTable("feature_sets", {
  name: text("name").primaryKey(),
  version: integer("version").notNull(),
  /** The FeatureSetDef as JSON. */
  defJson: text("def_json").notNull(),
  createTime: integer("create_time").notNull(),
  updateTime: integer("update_time").notNull(),
});

/** The offline store: every row ever written, in write order (seq breaks event-time ties). */
export const offlineRows = sqliteTable(
  "offline_rows",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    view: text("view").notNull(),
    entityKey: text("entity_key").notNull(),
    /** Event time, epoch ms. */
    eventTime: integer("event_time").notNull(),
    /** Wall clock of the write, epoch ms. */
    writeTime: integer("write_time").notNull(),
    /** JSON array positional to the view's stored features. */
    valuesJson: text("values_json").notNull(),
  },
  (t) => [
    index("offline_rows_entity_idx").on(t.view, t.entityKey, t.eventTime, t.seq),
    index("offline_rows_time_idx").on(t.view, t.eventTime),
  ],
);

/** The SQLite online store: the row with the newest event time per entity. */
export const onlineRows = sqliteTable(
  "online_rows",
  {
    view: text("view").notNull(),
    entityKey: text("entity_key").notNull(),
    eventTime: integer("event_time").notNull(),
    writeTime: integer("write_time").notNull(),
    valuesJson: text("values_json").notNull(),
  },
  (t) => [primaryKey({ columns: [t.view, t.entityKey] })],
);

/** WriteFeatures/IngestFeatures request ids seen in the last 24 h, with their answers. */
export const writeRequests = sqliteTable("write_requests", {
  requestId: text("request_id").primaryKey(),
  responseJson: text("response_json").notNull(),
  time: integer("time").notNull(),
});

/**
 * IngestFeatures uploads in flight: rows checked and staged per chunk (one transaction
 * each), moved to the stores in one step when the stream ends, deleted on any failure.
 * Rows left by a process that died mid-upload are dropped at start.
 */
export const ingestStaging = sqliteTable(
  "ingest_staging",
  {
    uploadId: text("upload_id").notNull(),
    /** Arrival order within the upload (equal event times: the later row wins). */
    seq: integer("seq").notNull(),
    entityKey: text("entity_key").notNull(),
    eventTime: integer("event_time").notNull(),
    valuesJson: text("values_json").notNull(),
  },
  (t) => [primaryKey({ columns: [t.uploadId, t.seq] })],
);

/**
 * Materialization jobs (offline -> online copies). The job and its per-view progress,
 * including the resume cursor (last entity key done), are kept as JSON and rewritten after
 * every page, so a job interrupted by a restart resumes where it stopped.
 */
export const materializationJobs = sqliteTable(
  "materialization_jobs",
  {
    jobId: text("job_id").primaryKey(),
    /** PENDING, RUNNING, SUCCEEDED, FAILED (lower case). */
    state: text("state").notNull(),
    jobJson: text("job_json").notNull(),
    createTime: integer("create_time").notNull(),
    updateTime: integer("update_time").notNull(),
  },
  (t) => [index("materialization_jobs_state_idx").on(t.state, t.createTime)],
);

/**
 * Per view, where the last successful materialization ended: rows with an event time
 * before `event_time` and written (offline seq) at or before `seq` are in the online store.
 * An incremental job copies what lies past either bound.
 */
export const materializationWatermarks = sqliteTable("materialization_watermarks", {
  view: text("view").primaryKey(),
  eventTime: integer("event_time").notNull(),
  seq: integer("seq").notNull(),
  jobId: text("job_id").notNull(),
  updateTime: integer("update_time").notNull(),
});
