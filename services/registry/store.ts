// The registry's repository over schema.ts: every mutation is one transaction that also
// writes its audit record and its events (outbox), so state, audit and events agree.
// Versions are handed out as ModelVersion messages; the stage-managed aliases `production`
// and `staging` are derived from the stage column, so they can never disagree with it.

import { and, asc, desc, eq, gt, lt, sql } from "drizzle-orm";
import type { BetterSQLite3Database } from "drizzle-orm/better-sqlite3";
import type Database from "better-sqlite3";
import { create, fromJsonString, toJson, toJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AliasMovedSchema,
  ModelVersionCreatedSchema,
  ModelVersionDeletedSchema,
  ModelVersionUpdatedSchema,
  PromotionPolicyChangedSchema,
  RegisteredModelDeletedSchema,
  StageChangedSchema,
} from "../../gen/mlmesh/events/v1/registry_events_pb.js";
import {
  ArtifactSchema,
  FeatureBindingSchema,
  LineageSchema,
  ModelCardSchema,
  ModelVersionSchema,
  PromotionPolicySchema,
  PromotionRuleSchema,
  ReferenceDistributionsSchema,
  SignatureSchema,
  Stage,
  type Artifact,
  type FeatureBinding,
  type Lineage,
  type ModelCard,
  type ModelVersion,
  type PromotionPolicy,
  type PromotionRule,
  type PromotionRuleResult,
  type ReferenceDistributions,
  type Signature,
} from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { UploadState } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { AuditLog, type AuditQuery } from "../../lib/audit.js";
import { ConflictError, NotFoundError, PreconditionError } from "../../lib/errors.js";
import type { Outbox } from "../../lib/outbox.js";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/paging.js";
import { AbortedError, PromotionRejectedError } from "./errors.js";
import { evaluatePolicy } from "./policy.js";
import { formatRef, type ModelRef } from "./refs.js";
import * as schema from "./schema.js";

export interface ModelRecord {
  readonly name: string;
  readonly description: string;
  readonly tags: Record<string, string>;
  readonly owner: string;
  readonly latestVersion: number;
  readonly aliases: Record<string, number>;
  readonly createdBy: string;
  readonly createTime: number;
  readonly updateTime: number;
}

export interface ModelPatch {
  readonly description?: string;
  readonly tags?: Record<string, string>;
  readonly owner?: string;
}

export interface VersionPatch {
  readonly description?: string;
  readonly tags?: Record<string, string>;
  readonly card?: ModelCard;
  readonly lineage?: Lineage;
  readonly featureBinding?: FeatureBinding;
}

export interface NewVersion {
  readonly modelName: string;
  readonly createModelIfMissing: boolean;
  readonly description: string;
  readonly tags: Record<string, string>;
  readonly artifact: Artifact;
  readonly signature: Signature;
  readonly featureBinding: FeatureBinding | undefined;
  readonly lineage: Lineage | undefined;
  readonly card: ModelCard | undefined;
  readonly reference: ReferenceDistributions | undefined;
  readonly uploadId: string;
  readonly principal: string;
  readonly reason: string;
}

export interface UploadRecord {
  readonly uploadId: string;
  readonly principal: string;
  readonly modelName: string;
  readonly state: UploadState;
  readonly receivedBytes: number;
  readonly expectedSizeBytes: number;
  readonly version: number;
  readonly errorMessage: string;
  readonly expireTime: number;
}

export interface PromotionOutcome {
  readonly version: ModelVersion;
  readonly displacedVersion: number;
  readonly results: PromotionRuleResult[];
  readonly overridden: boolean;
  readonly policyRevision: number;
}

type ModelRow = typeof schema.registeredModels.$inferSelect;
type VersionRow = typeof schema.modelVersions.$inferSelect;

const STAGE_ALIAS: Partial<Record<Stage, string>> = { [Stage.PRODUCTION]: "production", [Stage.STAGING]: "staging" };
const STAGE_NAME: Record<number, string> = { 1: "None", 2: "Staging", 3: "Production", 4: "Archived" };

function json<D extends DescMessage>(schemaDesc: D, msg: MessageShape<D> | undefined): string {
  return msg ? toJsonString(schemaDesc, msg) : "{}";
}

function parse<D extends DescMessage>(schemaDesc: D, text: string): MessageShape<D> {
  return fromJsonString(schemaDesc, text, { ignoreUnknownFields: true });
}

function toRecord(row: ModelRow, aliases: Record<string, number>): ModelRecord {
  return {
    name: row.name,
    description: row.description,
    tags: JSON.parse(row.tagsJson) as Record<string, string>,
    owner: row.owner,
    latestVersion: row.latestVersion,
    aliases,
    createdBy: row.createdBy,
    createTime: row.createTime,
    updateTime: row.updateTime,
  };
}

export class RegistryStore {
  readonly audit: AuditLog;

  constructor(
    private readonly db: BetterSQLite3Database<typeof schema>,
    private readonly sqlite: Database.Database,
    private readonly outbox: Outbox,
    private readonly clock: () => number = Date.now,
  ) {
    this.audit = new AuditLog(sqlite);
  }

  /** Run `fn` in one IMMEDIATE transaction (takes the write lock first, so two writers serialize), then nudge the outbox. */
  private tx<T>(fn: () => T): T {
    const result = this.sqlite.transaction(fn).immediate();
    this.outbox.flush();
    return result;
  }

  private event<D extends DescMessage>(kind: string, model: string, desc: D, init: Omit<MessageShape<D>, "$typeName" | "meta">, principal: string): void {
    this.outbox.record(`mlmesh.registry.${kind}.${model}`, desc, create(desc, init as never) as never, principal);
  }

  // --- models --------------------------------------------------------------------------

  createModel(input: { name: string; description: string; tags: Record<string, string>; owner: string; principal: string; reason: string }): ModelRecord {
    return this.tx(() => this.insertModel(input));
  }

  private insertModel(input: { name: string; description: string; tags: Record<string, string>; owner: string; principal: string; reason: string }): ModelRecord {
    const now = this.clock();
    const row: ModelRow = {
      name: input.name,
      description: input.description,
      tagsJson: JSON.stringify(input.tags),
      owner: input.owner || input.principal,
      latestVersion: 0,
      createdBy: input.principal,
      createTime: now,
      updateTime: now,
    };
    const existing = this.db.select().from(schema.registeredModels).where(eq(schema.registeredModels.name, input.name)).get();
    if (existing) throw new ConflictError(`model ${JSON.stringify(input.name)} already exists; push a new version to it instead`);
    this.db.insert(schema.registeredModels).values(row).run();
    const record = toRecord(row, {});
    this.audit.record({ principal: input.principal, action: "model.create", resource: `models/${input.name}`, scope: input.name, after: record, reason: input.reason });
    return record;
  }

  private modelRow(name: string): ModelRow {
    const row = this.db.select().from(schema.registeredModels).where(eq(schema.registeredModels.name, name)).get();
    if (!row) throw new NotFoundError("model", name, "ListModels shows the registered models");
    return row;
  }

  /** Every alias of a model, alias -> version, including the stage-managed ones. */
  private aliasesOf(name: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const a of this.db.select().from(schema.modelAliases).where(eq(schema.modelAliases.modelName, name)).all()) out[a.alias] = a.version;
    for (const [stage, alias] of Object.entries(STAGE_ALIAS)) {
      const v = this.stageHolder(name, Number(stage) as Stage);
      if (v) out[alias] = v.version;
    }
    return out;
  }

  getModel(name: string): ModelRecord {
    return toRecord(this.modelRow(name), this.aliasesOf(name));
  }

  listModels(q: { namePrefix: string; owner: string; pageSize: number; pageToken: string }): { models: ModelRecord[]; nextPageToken: string } {
    const size = Math.min(pageSize(q.pageSize || 50, "page_size"), 1000);
    const after = decodePageToken(q.pageToken, "page_token");
    const conds = [];
    if (q.namePrefix) conds.push(sql`${schema.registeredModels.name} LIKE ${`${q.namePrefix.replace(/[%_\\]/g, "\\$&")}%`} ESCAPE '\\'`);
    if (q.owner) conds.push(eq(schema.registeredModels.owner, q.owner));
    if (after !== undefined) conds.push(gt(schema.registeredModels.name, String(after)));
    const rows = this.db
      .select()
      .from(schema.registeredModels)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(asc(schema.registeredModels.name))
      .limit(size + 1)
      .all();
    const page = rows.slice(0, size);
    return {
      models: page.map((r) => toRecord(r, this.aliasesOf(r.name))),
      nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.name) : "",
    };
  }

  updateModel(name: string, patch: ModelPatch, principal: string, reason: string): ModelRecord {
    return this.tx(() => {
      const before = this.getModel(name);
      const set: Partial<ModelRow> = { updateTime: this.clock() };
      if (patch.description !== undefined) set.description = patch.description;
      if (patch.tags !== undefined) set.tagsJson = JSON.stringify(patch.tags);
      if (patch.owner !== undefined) set.owner = patch.owner;
      this.db.update(schema.registeredModels).set(set).where(eq(schema.registeredModels.name, name)).run();
      const after = this.getModel(name);
      this.audit.record({ principal, action: "model.update", resource: `models/${name}`, scope: name, before, after, reason });
      return after;
    });
  }

  /**
   * Deletes a model with its versions, aliases and policy. Returns the digests no version
   * references any more: the caller removes those files after the commit.
   */
  deleteModel(name: string, force: boolean, principal: string, reason: string): { deletedVersions: number; unreferencedSha256s: string[] } {
    return this.tx(() => {
      const before = this.getModel(name);
      const aliasCount = Object.keys(before.aliases).length;
      if (aliasCount > 0 && !force) {
        throw new PreconditionError(
          `model ${JSON.stringify(name)} still has versions in Production or holding aliases (${Object.entries(before.aliases).map(([a, v]) => `${a}=v${v}`).join(", ")}); pass force (with a reason) to delete anyway`,
        );
      }
      const versions = this.db.select().from(schema.modelVersions).where(eq(schema.modelVersions.modelName, name)).orderBy(asc(schema.modelVersions.version)).all();
      const unreferenced = new Set<string>();
      for (const row of versions) {
        const { artifactDeleted } = this.removeVersion(row, force, principal, reason);
        if (artifactDeleted) unreferenced.add(row.artifactSha256);
      }
      this.db.delete(schema.promotionPolicies).where(eq(schema.promotionPolicies.modelName, name)).run();
      this.db.delete(schema.registeredModels).where(eq(schema.registeredModels.name, name)).run();
      this.audit.record({ principal, action: "model.delete", resource: `models/${name}`, scope: name, before, reason });
      this.event("registered_model_deleted", name, RegisteredModelDeletedSchema, { modelName: name, deletedVersionCount: BigInt(versions.length), forced: force, reason }, principal);
      return { deletedVersions: versions.length, unreferencedSha256s: [...unreferenced] };
    });
  }

  // --- versions ------------------------------------------------------------------------

  private stageHolder(name: string, stage: Stage): VersionRow | undefined {
    return this.db
      .select()
      .from(schema.modelVersions)
      .where(and(eq(schema.modelVersions.modelName, name), eq(schema.modelVersions.stage, stage)))
      .get();
  }

  private versionRow(name: string, version: number): VersionRow {
    const row = this.db
      .select()
      .from(schema.modelVersions)
      .where(and(eq(schema.modelVersions.modelName, name), eq(schema.modelVersions.version, version)))
      .get();
    if (!row) {
      this.modelRow(name);
      throw new NotFoundError("model version", `${name}@${version}`, "ListModelVersions shows the versions");
    }
    return row;
  }

  private toVersion(row: VersionRow): ModelVersion {
    const aliases = this.db
      .select()
      .from(schema.modelAliases)
      .where(and(eq(schema.modelAliases.modelName, row.modelName), eq(schema.modelAliases.version, row.version)))
      .all()
      .map((a) => a.alias);
    const stageAlias = STAGE_ALIAS[row.stage as Stage];
    if (stageAlias) aliases.push(stageAlias);
    aliases.sort();
    const artifact = parse(ArtifactSchema, row.artifactJson);
    artifact.sha256 = row.artifactSha256;
    artifact.sizeBytes = BigInt(row.artifactSizeBytes);
    return create(ModelVersionSchema, {
      modelName: row.modelName,
      version: BigInt(row.version),
      description: row.description,
      artifact,
      signature: parse(SignatureSchema, row.signatureJson),
      featureBinding: row.featureBindingJson === "{}" ? undefined : parse(FeatureBindingSchema, row.featureBindingJson),
      lineage: parse(LineageSchema, row.lineageJson),
      card: parse(ModelCardSchema, row.cardJson),
      tags: JSON.parse(row.tagsJson) as Record<string, string>,
      stage: row.stage as Stage,
      aliases,
      hasReferenceDistributions: row.referenceJson !== null,
      createdBy: row.createdBy,
      createTime: timestampFromMs(row.createTime),
      updateTime: timestampFromMs(row.updateTime),
      stageUpdateTime: timestampFromMs(row.stageUpdateTime),
    });
  }

  /** Audit snapshot of a version: proto JSON without the bulky signature. */
  private snapshot(v: ModelVersion): unknown {
    const j = toJson(ModelVersionSchema, v) as Record<string, unknown>;
    delete j.signature;
    return j;
  }

  getVersion(name: string, version: number): ModelVersion {
    return this.toVersion(this.versionRow(name, version));
  }

  /** The version a parsed ref names now. NOT_FOUND for an absent model, version, alias or empty stage. */
  resolve(ref: ModelRef): ModelVersion {
    const model = this.modelRow(ref.name);
    const t = ref.target;
    const text = formatRef(ref.name, t);
    if (t.kind === "version") return this.getVersion(ref.name, t.version);
    if (t.kind === "latest") {
      const row = this.db.select().from(schema.modelVersions).where(eq(schema.modelVersions.modelName, model.name)).orderBy(desc(schema.modelVersions.version)).limit(1).get();
      if (!row) throw new NotFoundError("model version", text, `model ${model.name} has no versions yet; push one`);
      return this.toVersion(row);
    }
    const stage = t.alias === "production" ? Stage.PRODUCTION : t.alias === "staging" ? Stage.STAGING : undefined;
    if (stage !== undefined) {
      const row = this.stageHolder(model.name, stage);
      if (!row) throw new NotFoundError("model version", text, `no version of ${model.name} is in ${STAGE_NAME[stage]}`);
      return this.toVersion(row);
    }
    const a = this.db
      .select()
      .from(schema.modelAliases)
      .where(and(eq(schema.modelAliases.modelName, model.name), eq(schema.modelAliases.alias, t.alias)))
      .get();
    if (!a) throw new NotFoundError("alias", text, `no version of ${model.name} holds alias ${t.alias}`);
    return this.getVersion(model.name, a.version);
  }

  listVersions(q: { modelName: string; pageSize: number; pageToken: string; stage: Stage }): { versions: ModelVersion[]; nextPageToken: string } {
    this.modelRow(q.modelName);
    const size = Math.min(pageSize(q.pageSize || 50, "page_size"), 1000);
    const after = decodePageToken(q.pageToken, "page_token");
    const conds = [eq(schema.modelVersions.modelName, q.modelName)];
    if (q.stage) conds.push(eq(schema.modelVersions.stage, q.stage));
    if (after !== undefined) conds.push(lt(schema.modelVersions.version, Number(after)));
    const rows = this.db
      .select()
      .from(schema.modelVersions)
      .where(and(...conds))
      .orderBy(desc(schema.modelVersions.version))
      .limit(size + 1)
      .all();
    const page = rows.slice(0, size);
    return { versions: page.map((r) => this.toVersion(r)), nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.version) : "" };
  }

  /** How many versions (of any model) use this artifact. */
  artifactReferences(sha256: string): number {
    return (this.sqlite.prepare("SELECT count(*) AS n FROM model_versions WHERE artifact_sha256 = ?").get(sha256) as { n: number }).n;
  }

  /** Creates the next version of a model (and the model itself when asked) and completes the upload. */
  createVersion(input: NewVersion): { version: ModelVersion; modelCreated: boolean } {
    return this.tx(() => {
      let modelCreated = false;
      let model = this.db.select().from(schema.registeredModels).where(eq(schema.registeredModels.name, input.modelName)).get();
      if (!model) {
        if (!input.createModelIfMissing) throw new NotFoundError("model", input.modelName, "create it first, or set create_model_if_missing");
        this.insertModel({ name: input.modelName, description: "", tags: {}, owner: "", principal: input.principal, reason: input.reason });
        model = this.modelRow(input.modelName);
        modelCreated = true;
      }
      const now = this.clock();
      const number = model.latestVersion + 1;
      this.db
        .insert(schema.modelVersions)
        .values({
          modelName: input.modelName,
          version: number,
          description: input.description,
          tagsJson: JSON.stringify(input.tags),
          artifactSha256: input.artifact.sha256,
          artifactSizeBytes: Number(input.artifact.sizeBytes),
          artifactJson: json(ArtifactSchema, create(ArtifactSchema, { ...input.artifact, sha256: "", sizeBytes: 0n })),
          signatureJson: json(SignatureSchema, input.signature),
          featureBindingJson: input.featureBinding && (input.featureBinding.inputs.length || input.featureBinding.entityKeys.length) ? json(FeatureBindingSchema, input.featureBinding) : "{}",
          lineageJson: json(LineageSchema, input.lineage),
          cardJson: json(ModelCardSchema, input.card),
          referenceJson: input.reference ? json(ReferenceDistributionsSchema, input.reference) : null,
          stage: Stage.NONE,
          createdBy: input.principal,
          createTime: now,
          updateTime: now,
          stageUpdateTime: now,
        })
        .run();
      this.db.update(schema.registeredModels).set({ latestVersion: number, updateTime: now }).where(eq(schema.registeredModels.name, input.modelName)).run();
      if (input.uploadId) {
        this.db
          .update(schema.uploads)
          .set({ state: UploadState.COMPLETED, version: number, receivedBytes: Number(input.artifact.sizeBytes), updateTime: now, expireTime: now + UPLOAD_RECORD_TTL_MS })
          .where(eq(schema.uploads.uploadId, input.uploadId))
          .run();
      }
      const version = this.getVersion(input.modelName, number);
      this.audit.record({ principal: input.principal, action: "version.create", resource: `models/${input.modelName}/versions/${number}`, scope: input.modelName, after: this.snapshot(version), reason: input.reason });
      this.event(
        "model_version_created",
        input.modelName,
        ModelVersionCreatedSchema,
        {
          modelName: input.modelName,
          version: BigInt(number),
          artifactSha256: input.artifact.sha256,
          artifactSizeBytes: input.artifact.sizeBytes,
          tags: input.tags,
          modelCreated,
          hasReferenceDistributions: input.reference !== undefined,
        },
        input.principal,
      );
      return { version, modelCreated };
    });
  }

  updateVersion(name: string, version: number, patch: VersionPatch, principal: string, reason: string): ModelVersion {
    return this.tx(() => {
      const before = this.getVersion(name, version);
      if (patch.lineage !== undefined || patch.featureBinding !== undefined) {
        const freeAliases = before.aliases.filter((a) => a !== "production" && a !== "staging");
        if (before.stage === Stage.PRODUCTION || before.stage === Stage.ARCHIVED || freeAliases.length) {
          throw new PreconditionError(
            `lineage and feature_binding of ${name}@${version} are frozen: it is ${STAGE_NAME[before.stage]}${freeAliases.length ? ` and holds ${freeAliases.join(", ")}` : ""}, and gates or serving relied on them; push a new version instead`,
          );
        }
      }
      const set: Partial<VersionRow> = { updateTime: this.clock() };
      const fields: string[] = [];
      if (patch.description !== undefined) (set.description = patch.description), fields.push("description");
      if (patch.tags !== undefined) (set.tagsJson = JSON.stringify(patch.tags)), fields.push("tags");
      if (patch.card !== undefined) (set.cardJson = json(ModelCardSchema, patch.card)), fields.push("card");
      if (patch.lineage !== undefined) (set.lineageJson = json(LineageSchema, patch.lineage)), fields.push("lineage");
      if (patch.featureBinding !== undefined) (set.featureBindingJson = patch.featureBinding.inputs.length || patch.featureBinding.entityKeys.length ? json(FeatureBindingSchema, patch.featureBinding) : "{}"), fields.push("feature_binding");
      this.db
        .update(schema.modelVersions)
        .set(set)
        .where(and(eq(schema.modelVersions.modelName, name), eq(schema.modelVersions.version, version)))
        .run();
      const after = this.getVersion(name, version);
      this.audit.record({ principal, action: "version.update", resource: `models/${name}/versions/${version}`, scope: name, before: this.snapshot(before), after: this.snapshot(after), reason });
      this.event("model_version_updated", name, ModelVersionUpdatedSchema, { modelName: name, version: BigInt(version), updatedFields: fields, reason }, principal);
      return after;
    });
  }

  /**
   * Deletes one version. `artifactDeleted` is true when no version references its content
   * any more; the caller removes the file after the commit.
   */
  deleteVersion(name: string, version: number, force: boolean, principal: string, reason: string): { artifactDeleted: boolean; sha256: string; releasedAliases: string[] } {
    return this.tx(() => {
      const row = this.versionRow(name, version);
      const v = this.toVersion(row);
      if ((v.aliases.length || v.stage === Stage.PRODUCTION) && !force) {
        throw new PreconditionError(
          `${name}@${version} is ${STAGE_NAME[v.stage]} and holds ${v.aliases.join(", ")}; move them to another version first, or delete with force and a reason`,
        );
      }
      const out = this.removeVersion(row, force, principal, reason);
      return { ...out, sha256: row.artifactSha256 };
    });
  }

  /** Deletes a version row with its aliases, audit record and events (inside a transaction). */
  private removeVersion(row: VersionRow, force: boolean, principal: string, reason: string): { artifactDeleted: boolean; releasedAliases: string[] } {
    const v = this.toVersion(row);
    this.db.delete(schema.modelAliases).where(and(eq(schema.modelAliases.modelName, row.modelName), eq(schema.modelAliases.version, row.version))).run();
    this.db.delete(schema.modelVersions).where(and(eq(schema.modelVersions.modelName, row.modelName), eq(schema.modelVersions.version, row.version))).run();
    const artifactDeleted = this.artifactReferences(row.artifactSha256) === 0;
    const released = [...v.aliases];
    const forced = force && (released.length > 0 || v.stage === Stage.PRODUCTION);
    this.audit.record({ principal, action: "version.delete", resource: `models/${row.modelName}/versions/${row.version}`, scope: row.modelName, before: this.snapshot(v), reason });
    this.event(
      "model_version_deleted",
      row.modelName,
      ModelVersionDeletedSchema,
      { modelName: row.modelName, version: BigInt(row.version), stage: row.stage as Stage, artifactSha256: row.artifactSha256, artifactDeleted, releasedAliases: released, forced, reason },
      principal,
    );
    for (const alias of released) {
      this.event("alias_moved", row.modelName, AliasMovedSchema, { modelName: row.modelName, alias, previousVersion: BigInt(row.version), version: 0n, artifactSha256: "", reason }, principal);
    }
    return { artifactDeleted, releasedAliases: released };
  }

  // --- stages and aliases ----------------------------------------------------------------

  /**
   * Applies stage moves in order (displaced versions first), then emits StageChanged for
   * each and AliasMoved for each stage-managed alias whose holder changed, in that order.
   */
  private moveStages(
    name: string,
    moves: ReadonlyArray<{ row: VersionRow; to: Stage; displacedBy: number; overridden?: boolean; overriddenRules?: string[]; policyRevision?: number }>,
    principal: string,
    reason: string,
  ): void {
    const before = { production: this.stageHolder(name, Stage.PRODUCTION)?.version ?? 0, staging: this.stageHolder(name, Stage.STAGING)?.version ?? 0 };
    const now = this.clock();
    const where = (v: number) => and(eq(schema.modelVersions.modelName, name), eq(schema.modelVersions.version, v));
    // Park every moving version in None first, so the one-per-exclusive-stage index holds
    // at every statement, whatever the order of moves.
    for (const m of moves) this.db.update(schema.modelVersions).set({ stage: Stage.NONE }).where(where(m.row.version)).run();
    for (const m of moves) this.db.update(schema.modelVersions).set({ stage: m.to, stageUpdateTime: now, updateTime: now }).where(where(m.row.version)).run();
    for (const m of moves) {
      this.event(
        "stage_changed",
        name,
        StageChangedSchema,
        {
          modelName: name,
          version: BigInt(m.row.version),
          fromStage: m.row.stage as Stage,
          toStage: m.to,
          displacedByVersion: BigInt(m.displacedBy),
          overridden: m.overridden ?? false,
          overriddenRules: m.overriddenRules ?? [],
          policyRevision: BigInt(m.policyRevision ?? 0),
          reason,
        },
        principal,
      );
    }
    const after = { production: this.stageHolder(name, Stage.PRODUCTION), staging: this.stageHolder(name, Stage.STAGING) };
    for (const alias of ["production", "staging"] as const) {
      const now2 = after[alias];
      if ((now2?.version ?? 0) !== before[alias]) {
        this.event(
          "alias_moved",
          name,
          AliasMovedSchema,
          { modelName: name, alias, previousVersion: BigInt(before[alias]), version: BigInt(now2?.version ?? 0), artifactSha256: now2?.artifactSha256 ?? "", reason },
          principal,
        );
      }
    }
  }

  /** TransitionStage: None, Staging or Archived (Production only through promote). */
  transitionStage(input: { name: string; version: number; stage: Stage; expectedStage: Stage; displacedStage: Stage; principal: string; reason: string }): { version: ModelVersion; displacedVersion: number } {
    return this.tx(() => {
      const row = this.versionRow(input.name, input.version);
      if (input.expectedStage && row.stage !== input.expectedStage) {
        throw new AbortedError(`${input.name}@${input.version} is ${STAGE_NAME[row.stage]}, not ${STAGE_NAME[input.expectedStage]} as expected; re-read and retry`);
      }
      if (row.stage === input.stage) return { version: this.toVersion(row), displacedVersion: 0 };
      const before = this.toVersion(row);
      const moves: Array<{ row: VersionRow; to: Stage; displacedBy: number }> = [];
      let displaced = 0;
      if (input.stage === Stage.STAGING) {
        const holder = this.stageHolder(input.name, Stage.STAGING);
        if (holder) {
          moves.push({ row: holder, to: input.displacedStage || Stage.ARCHIVED, displacedBy: input.version });
          displaced = holder.version;
        }
      }
      moves.push({ row, to: input.stage, displacedBy: 0 });
      this.moveStages(input.name, moves, input.principal, input.reason);
      const after = this.getVersion(input.name, input.version);
      this.audit.record({
        principal: input.principal,
        action: "version.transition",
        resource: `models/${input.name}/versions/${input.version}`,
        scope: input.name,
        before: { stage: STAGE_NAME[before.stage], aliases: before.aliases },
        after: { stage: STAGE_NAME[after.stage], aliases: after.aliases, displacedVersion: displaced },
        reason: input.reason,
      });
      return { version: after, displacedVersion: displaced };
    });
  }

  /** Evaluates the policy without changing anything. */
  checkPromotion(name: string, version: number): { results: PromotionRuleResult[]; policyRevision: number; productionVersion: number } {
    const candidate = this.getVersion(name, version);
    const policy = this.getPolicy(name);
    const prodRow = this.stageHolder(name, Stage.PRODUCTION);
    const production = prodRow ? this.toVersion(prodRow) : undefined;
    return { results: evaluatePolicy(policy.rules, candidate, production), policyRevision: Number(policy.revision), productionVersion: prodRow?.version ?? 0 };
  }

  /**
   * Moves a version into Production. The policy is evaluated and the move committed in the
   * same IMMEDIATE transaction, so concurrent promotions are serialized: the later one sees
   * the earlier's result as its baseline (or fails its compare-and-set).
   */
  promote(input: { name: string; version: number; override: boolean; reason: string; expectedProductionVersion: number | undefined; displacedStage: Stage; principal: string }): PromotionOutcome {
    return this.tx(() => {
      const row = this.versionRow(input.name, input.version);
      const prod = this.stageHolder(input.name, Stage.PRODUCTION);
      if (input.expectedProductionVersion !== undefined && (prod?.version ?? 0) !== input.expectedProductionVersion) {
        throw new AbortedError(
          `expected ${input.expectedProductionVersion ? `v${input.expectedProductionVersion}` : "no version"} in Production of ${input.name}, but it is ${prod ? `v${prod.version}` : "empty"}; re-read and retry`,
        );
      }
      const { results, policyRevision, productionVersion } = this.checkPromotion(input.name, input.version);
      if (prod?.version === input.version) {
        return { version: this.toVersion(row), displacedVersion: 0, results, overridden: false, policyRevision };
      }
      const failed = results.filter((r) => !r.passed);
      if (failed.length && !input.override) {
        throw new PromotionRejectedError(input.name, input.version, policyRevision, productionVersion, failed);
      }
      const before = this.toVersion(row);
      const displacedStage = input.displacedStage || Stage.ARCHIVED;
      const moves: Array<{ row: VersionRow; to: Stage; displacedBy: number; overridden?: boolean; overriddenRules?: string[]; policyRevision?: number }> = [];
      if (prod) moves.push({ row: prod, to: displacedStage, displacedBy: input.version });
      if (displacedStage === Stage.STAGING && prod) {
        // The displaced version takes Staging, so whoever held Staging is archived.
        const staging = this.stageHolder(input.name, Stage.STAGING);
        if (staging && staging.version !== input.version) moves.unshift({ row: staging, to: Stage.ARCHIVED, displacedBy: prod.version });
      }
      const overridden = failed.length > 0;
      const overriddenRules = failed.map((r) => r.rule?.description ?? "");
      moves.push({ row, to: Stage.PRODUCTION, displacedBy: 0, overridden, overriddenRules, policyRevision });
      this.moveStages(input.name, moves, input.principal, input.reason);
      const after = this.getVersion(input.name, input.version);
      this.audit.record({
        principal: input.principal,
        action: "version.promote",
        resource: `models/${input.name}/versions/${input.version}`,
        scope: input.name,
        before: { stage: STAGE_NAME[before.stage], productionVersion: prod?.version ?? 0 },
        after: { stage: "Production", displacedVersion: prod?.version ?? 0, displacedStage: STAGE_NAME[displacedStage], policyRevision, overridden, overriddenRules },
        reason: input.reason,
      });
      return { version: after, displacedVersion: prod?.version ?? 0, results, overridden, policyRevision };
    });
  }

  /** Points a free alias at a version (compare-and-set optional). */
  setAlias(input: { name: string; alias: string; version: number; expectedVersion: number | undefined; principal: string; reason: string }): { version: ModelVersion; previousVersion: number } {
    return this.tx(() => {
      const row = this.versionRow(input.name, input.version);
      const where = and(eq(schema.modelAliases.modelName, input.name), eq(schema.modelAliases.alias, input.alias));
      const current = this.db.select().from(schema.modelAliases).where(where).get();
      const previous = current?.version ?? 0;
      if (input.expectedVersion !== undefined && previous !== input.expectedVersion) {
        throw new AbortedError(
          `alias ${input.alias} of ${input.name} is held by ${previous ? `v${previous}` : "no version"}, not ${input.expectedVersion ? `v${input.expectedVersion}` : "unassigned"} as expected; re-read and retry`,
        );
      }
      if (previous === input.version) return { version: this.toVersion(row), previousVersion: previous };
      const now = this.clock();
      if (current) this.db.update(schema.modelAliases).set({ version: input.version, updateTime: now }).where(where).run();
      else this.db.insert(schema.modelAliases).values({ modelName: input.name, alias: input.alias, version: input.version, updateTime: now }).run();
      this.audit.record({
        principal: input.principal,
        action: "alias.set",
        resource: `models/${input.name}/aliases/${input.alias}`,
        scope: input.name,
        before: { version: previous },
        after: { version: input.version },
        reason: input.reason,
      });
      this.event(
        "alias_moved",
        input.name,
        AliasMovedSchema,
        { modelName: input.name, alias: input.alias, previousVersion: BigInt(previous), version: BigInt(input.version), artifactSha256: row.artifactSha256, reason: input.reason },
        input.principal,
      );
      return { version: this.toVersion(row), previousVersion: previous };
    });
  }

  deleteAlias(input: { name: string; alias: string; expectedVersion: number | undefined; principal: string; reason: string }): { previousVersion: number } {
    return this.tx(() => {
      this.modelRow(input.name);
      const where = and(eq(schema.modelAliases.modelName, input.name), eq(schema.modelAliases.alias, input.alias));
      const current = this.db.select().from(schema.modelAliases).where(where).get();
      if (input.expectedVersion !== undefined && (current?.version ?? 0) !== input.expectedVersion) {
        throw new AbortedError(`alias ${input.alias} of ${input.name} is held by ${current ? `v${current.version}` : "no version"}, not v${input.expectedVersion} as expected; re-read and retry`);
      }
      if (!current) throw new NotFoundError("alias", `${input.name}@${input.alias}`, `no version of ${input.name} holds it`);
      this.db.delete(schema.modelAliases).where(where).run();
      this.audit.record({ principal: input.principal, action: "alias.delete", resource: `models/${input.name}/aliases/${input.alias}`, scope: input.name, before: { version: current.version }, reason: input.reason });
      this.event("alias_moved", input.name, AliasMovedSchema, { modelName: input.name, alias: input.alias, previousVersion: BigInt(current.version), version: 0n, artifactSha256: "", reason: input.reason }, input.principal);
      return { previousVersion: current.version };
    });
  }

  // --- promotion policy ------------------------------------------------------------------

  getPolicy(name: string): PromotionPolicy {
    this.modelRow(name);
    const row = this.db.select().from(schema.promotionPolicies).where(eq(schema.promotionPolicies.modelName, name)).get();
    if (!row) return create(PromotionPolicySchema, { modelName: name, rules: [], revision: 0n });
    const rules = (JSON.parse(row.rulesJson) as unknown[]).map((r) => fromJsonString(PromotionRuleSchema, JSON.stringify(r)));
    return create(PromotionPolicySchema, { modelName: name, rules, revision: BigInt(row.revision), updatedBy: row.updatedBy, updateTime: timestampFromMs(row.updateTime) });
  }

  setPolicy(input: { name: string; rules: PromotionRule[]; expectedRevision: number | undefined; principal: string; reason: string }): PromotionPolicy {
    return this.tx(() => {
      const before = this.getPolicy(input.name);
      if (input.expectedRevision !== undefined && Number(before.revision) !== input.expectedRevision) {
        throw new AbortedError(`policy of ${input.name} is at revision ${before.revision}, not ${input.expectedRevision} as expected; re-read and retry`);
      }
      const revision = Number(before.revision) + 1;
      const now = this.clock();
      const values = { modelName: input.name, rulesJson: JSON.stringify(input.rules.map((r) => toJson(PromotionRuleSchema, r))), revision, updatedBy: input.principal, updateTime: now };
      if (before.revision === 0n) this.db.insert(schema.promotionPolicies).values(values).run();
      else this.db.update(schema.promotionPolicies).set(values).where(eq(schema.promotionPolicies.modelName, input.name)).run();
      const after = this.getPolicy(input.name);
      this.audit.record({
        principal: input.principal,
        action: "policy.set",
        resource: `models/${input.name}/policy`,
        scope: input.name,
        before: { revision: Number(before.revision), rules: before.rules.map((r) => r.description) },
        after: { revision, rules: after.rules.map((r) => r.description) },
        reason: input.reason,
      });
      this.event("promotion_policy_changed", input.name, PromotionPolicyChangedSchema, { modelName: input.name, policy: after, previousRevision: before.revision, reason: input.reason }, input.principal);
      return after;
    });
  }

  // --- reference distributions -------------------------------------------------------------

  getReference(name: string, version: number): ReferenceDistributions | undefined {
    const row = this.versionRow(name, version);
    return row.referenceJson === null ? undefined : parse(ReferenceDistributionsSchema, row.referenceJson);
  }

  setReference(input: { name: string; version: number; reference: ReferenceDistributions; principal: string; reason: string }): ReferenceDistributions {
    return this.tx(() => {
      const row = this.versionRow(input.name, input.version);
      this.db
        .update(schema.modelVersions)
        .set({ referenceJson: json(ReferenceDistributionsSchema, input.reference), updateTime: this.clock() })
        .where(and(eq(schema.modelVersions.modelName, input.name), eq(schema.modelVersions.version, input.version)))
        .run();
      this.audit.record({
        principal: input.principal,
        action: "reference.set",
        resource: `models/${input.name}/versions/${input.version}`,
        scope: input.name,
        before: { hasReferenceDistributions: row.referenceJson !== null },
        after: { sampleSize: Number(input.reference.sampleSize), columns: input.reference.features.map((f) => f.column), scoreSource: input.reference.scoreSource },
        reason: input.reason,
      });
      this.event("model_version_updated", input.name, ModelVersionUpdatedSchema, { modelName: input.name, version: BigInt(input.version), updatedFields: ["reference_distributions"], reason: input.reason }, input.principal);
      return input.reference;
    });
  }

  // --- uploads -------------------------------------------------------------------------------

  getUpload(uploadId: string): UploadRecord | undefined {
    const row = this.db.select().from(schema.uploads).where(eq(schema.uploads.uploadId, uploadId)).get();
    return row ? { ...row, state: row.state as UploadState } : undefined;
  }

  /** Records a new upload (RECEIVING); ABORTED when another request created the same id meanwhile. */
  beginUpload(input: { uploadId: string; principal: string; modelName: string; expectedSizeBytes: number; expireTime: number }): void {
    const now = this.clock();
    try {
      this.db.insert(schema.uploads).values({ ...input, state: UploadState.RECEIVING, receivedBytes: 0, updateTime: now }).run();
    } catch (err) {
      if (this.getUpload(input.uploadId)) throw new AbortedError(`upload ${input.uploadId} was started by another stream meanwhile; ask GetUploadStatus`);
      throw err;
    }
  }

  /** Progress of a RECEIVING upload (bytes fsynced), and its new expiry. */
  touchUpload(uploadId: string, receivedBytes: number, expectedSizeBytes: number, expireTime: number): void {
    this.db.update(schema.uploads).set({ receivedBytes, expectedSizeBytes, expireTime, updateTime: this.clock() }).where(eq(schema.uploads.uploadId, uploadId)).run();
  }

  failUpload(uploadId: string, message: string): void {
    const now = this.clock();
    this.db
      .update(schema.uploads)
      .set({ state: UploadState.FAILED, errorMessage: message.slice(0, 2000), receivedBytes: 0, updateTime: now, expireTime: now + UPLOAD_RECORD_TTL_MS })
      .where(eq(schema.uploads.uploadId, uploadId))
      .run();
  }

  abortUpload(upload: UploadRecord, principal: string, reason: string): void {
    this.tx(() => {
      this.db.delete(schema.uploads).where(eq(schema.uploads.uploadId, upload.uploadId)).run();
      this.audit.record({ principal, action: "upload.abort", resource: `uploads/${upload.uploadId}`, scope: upload.modelName, before: { receivedBytes: upload.receivedBytes }, reason });
    });
  }

  /** Upload records past their expiry (RECEIVING ones have bytes to discard). */
  expiredUploads(now: number): UploadRecord[] {
    return this.db
      .select()
      .from(schema.uploads)
      .where(lt(schema.uploads.expireTime, now))
      .all()
      .map((r) => ({ ...r, state: r.state as UploadState }));
  }

  forgetUpload(uploadId: string): void {
    this.db.delete(schema.uploads).where(eq(schema.uploads.uploadId, uploadId)).run();
  }

  listAudit(q: AuditQuery) {
    if (q.scope) {
      const existed = this.sqlite.prepare("SELECT 1 FROM registered_models WHERE name = ? UNION ALL SELECT 1 FROM audit_log WHERE scope = ? LIMIT 1").get(q.scope, q.scope);
      if (!existed) throw new NotFoundError("model", q.scope, "it never existed");
    }
    return this.audit.list(q);
  }
}

/** How long a finished upload's status stays queryable. */
export const UPLOAD_RECORD_TTL_MS = 24 * 3600 * 1000;
