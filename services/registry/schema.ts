// Registry persistence (drizzle, SQLite). Migrations in ./migrations are generated from this
// file by `npm run db:generate` and applied at start.

import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

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

/**
 * One version of a model. Structured parts (signature, binding, lineage, card, artifact
 * metadata, reference distributions) are kept as proto3 JSON of their messages: they are
 * read and written whole, and proto JSON is the stable, documented encoding of the contract.
 */
export const modelVersions = sqliteTable(
  "model_versions",
  {
    modelName: text("model_name").notNull(),
    version: integer("version").notNull(),
    description: text("description").notNull().default(""),
    tagsJson: text("tags_json").notNull().default("{}"),
    artifactSha256: text("artifact_sha256").notNull(),
    artifactSizeBytes: integer("artifact_size_bytes").notNull(),
    /** Artifact message (ir version, opsets, producer, metadata props) as proto JSON. */
    artifactJson: text("artifact_json").notNull(),
    signatureJson: text("signature_json").notNull(),
    featureBindingJson: text("feature_binding_json").notNull().default("{}"),
    lineageJson: text("lineage_json").notNull().default("{}"),
    cardJson: text("card_json").notNull().default("{}"),
    /** ReferenceDistributions as proto JSON; null when none were captured. */
    referenceJson: text("reference_json"),
    /** mlmesh.registry.v1.Stage number. */
    stage: integer("stage").notNull(),
    createdBy: text("created_by").notNull(),
    createTime: integer("create_time").notNull(),
    updateTime: integer("update_time").notNull(),
    stageUpdateTime: integer("stage_update_time").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.modelName, t.version] }),
    index("model_versions_sha_idx").on(t.artifactSha256),
    // At most one version per model in each exclusive stage, enforced by the database too.
    uniqueIndex("model_versions_exclusive_stage_idx").on(t.modelName, t.stage).where(sql`stage IN (2, 3)`),
  ],
);

/**
 * Free aliases (`champion`, `canary`, ...). The stage-managed `production` and `staging`
 * are derived from model_versions.stage, so they can never disagree with the stage.
 */
export const modelAliases = sqliteTable(
  "model_aliases",
  {
    modelName: text("model_name").notNull(),
    alias: text("alias").notNull(),
    version: integer("version").notNull(),
    updateTime: integer("update_time").notNull(),
  },
  (t) => [primaryKey({ columns: [t.modelName, t.alias] })],
);

export const promotionPolicies = sqliteTable("promotion_policies", {
  modelName: text("model_name").primaryKey(),
  /** PromotionRule[] as proto JSON (canonical descriptions filled in). */
  rulesJson: text("rules_json").notNull(),
  revision: integer("revision").notNull(),
  updatedBy: text("updated_by").notNull(),
  updateTime: integer("update_time").notNull(),
});

/** Resumable uploads: partial bytes live in `<data>/registry/uploads/<id>.part`. */
export const uploads = sqliteTable("uploads", {
  uploadId: text("upload_id").primaryKey(),
  principal: text("principal").notNull(),
  modelName: text("model_name").notNull(),
  /** mlmesh.registry.v1.UploadState number. */
  state: integer("state").notNull(),
  receivedBytes: integer("received_bytes").notNull().default(0),
  expectedSizeBytes: integer("expected_size_bytes").notNull().default(0),
  version: integer("version").notNull().default(0),
  errorMessage: text("error_message").notNull().default(""),
  expireTime: integer("expire_time").notNull(),
  updateTime: integer("update_time").notNull(),
});
