// The registry's repository over schema.ts: every mutation is one transaction that also
// writes its audit record and its events (outbox), so state, audit and events agree.

import { and, asc, eq, gt, like } from "drizzle-orm";
import type { BetterSQLite3Database } from "drizzle-orm/better-sqlite3";
import type Database from "better-sqlite3";
import { create } from "@bufbuild/protobuf";
import { RegisteredModelDeletedSchema } from "../../gen/mlmesh/events/v1/registry_events_pb.js";
import { AuditLog, type AuditQuery } from "../../lib/audit.js";
import { ConflictError, NotFoundError, PreconditionError } from "../../lib/errors.js";
import type { Outbox } from "../../lib/outbox.js";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/paging.js";
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

type Row = typeof schema.registeredModels.$inferSelect;

function toRecord(row: Row): ModelRecord {
  return {
    name: row.name,
    description: row.description,
    tags: JSON.parse(row.tagsJson) as Record<string, string>,
    owner: row.owner,
    latestVersion: row.latestVersion,
    aliases: {},
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

  createModel(input: { name: string; description: string; tags: Record<string, string>; owner: string; principal: string; reason: string }): ModelRecord {
    const now = this.clock();
    const row: Row = {
      name: input.name,
      description: input.description,
      tagsJson: JSON.stringify(input.tags),
      owner: input.owner || input.principal,
      latestVersion: 0,
      createdBy: input.principal,
      createTime: now,
      updateTime: now,
    };
    return this.sqlite.transaction(() => {
      const existing = this.db.select().from(schema.registeredModels).where(eq(schema.registeredModels.name, input.name)).get();
      if (existing) throw new ConflictError(`model ${JSON.stringify(input.name)} already exists; push a new version to it instead`);
      this.db.insert(schema.registeredModels).values(row).run();
      const record = toRecord(row);
      this.audit.record({
        principal: input.principal,
        action: "model.create",
        resource: `models/${input.name}`,
        scope: input.name,
        after: record,
        reason: input.reason,
      });
      return record;
    })();
  }

  getModel(name: string): ModelRecord {
    const row = this.db.select().from(schema.registeredModels).where(eq(schema.registeredModels.name, name)).get();
    if (!row) throw new NotFoundError("model", name, "ListModels shows the registered models");
    return toRecord(row);
  }

  listModels(q: { namePrefix: string; owner: string; pageSize: number; pageToken: string }): { models: ModelRecord[]; nextPageToken: string } {
    const size = pageSize(q.pageSize, "page_size");
    const after = decodePageToken(q.pageToken, "page_token");
    const conds = [];
    if (q.namePrefix) conds.push(like(schema.registeredModels.name, `${q.namePrefix.replace(/[%_\\]/g, "\\$&")}%`));
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
      models: page.map(toRecord),
      nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.name) : "",
    };
  }

  updateModel(name: string, patch: ModelPatch, principal: string, reason: string): ModelRecord {
    return this.sqlite.transaction(() => {
      const before = this.getModel(name);
      const set: Partial<Row> = { updateTime: this.clock() };
      if (patch.description !== undefined) set.description = patch.description;
      if (patch.tags !== undefined) set.tagsJson = JSON.stringify(patch.tags);
      if (patch.owner !== undefined) set.owner = patch.owner;
      this.db.update(schema.registeredModels).set(set).where(eq(schema.registeredModels.name, name)).run();
      const after = this.getModel(name);
      this.audit.record({ principal, action: "model.update", resource: `models/${name}`, scope: name, before, after, reason });
      return after;
    })();
  }

  deleteModel(name: string, force: boolean, principal: string, reason: string): { deletedVersions: number } {
    const result = this.sqlite.transaction(() => {
      const before = this.getModel(name);
      const aliasCount = Object.keys(before.aliases).length;
      if (aliasCount > 0 && !force) {
        throw new PreconditionError(`model ${JSON.stringify(name)} still has versions holding aliases; pass force to delete anyway`);
      }
      this.db.delete(schema.registeredModels).where(eq(schema.registeredModels.name, name)).run();
      this.audit.record({ principal, action: "model.delete", resource: `models/${name}`, scope: name, before, reason });
      this.outbox.record(
        `mlmesh.registry.registered_model_deleted.${name}`,
        RegisteredModelDeletedSchema,
        create(RegisteredModelDeletedSchema, { modelName: name, deletedVersionCount: 0n, forced: force, reason }),
        principal,
      );
      return { deletedVersions: 0 };
    })();
    this.outbox.flush();
    return result;
  }

  listAudit(q: AuditQuery) {
    return this.audit.list(q);
  }
}
