// The definition repository: feature views (every version) and feature sets over
// schema.ts, cached in memory for the read path. Every mutation is one transaction with
// its audit record and its event (outbox), so state, audit and events agree.

import { create } from "@bufbuild/protobuf";
import type Database from "better-sqlite3";
import { FeatureViewAppliedSchema, FeatureViewDeletedSchema } from "../../gen/mlmesh/events/v1/features_events_pb.js";
import type { AuditRecord } from "../../gen/mlmesh/types/v1/types_pb.js";
import { AuditLog } from "../../lib/audit.js";
import { NotFoundError, PreconditionError } from "../../lib/errors.js";
import type { Outbox } from "../../lib/outbox.js";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/paging.js";
import { diffFeatureSets, diffViews, validateFeatureSets, validateViews, type ViewInput } from "./definitions.js";
import { OUTCOME, viewToProto } from "./mapping.js";
import { parseRef } from "./names.js";
import type { OfflineStore } from "./offline-store.js";
import type { OnlineStore } from "./online-store.js";
import type { TransformRegistry } from "./transforms.js";
import type { ApplyResult, FeatureSetDef, StoredFeatureSet, StoredView, ViewDef } from "./types.js";

interface DefRow {
  name: string;
  version: number;
  def_json: string;
  create_time: number;
  update_time: number;
}

const viewFromRow = (r: DefRow): StoredView => ({ ...(JSON.parse(r.def_json) as ViewDef), version: r.version, createTime: r.create_time, updateTime: r.update_time });
const setFromRow = (r: DefRow): StoredFeatureSet => ({ ...(JSON.parse(r.def_json) as FeatureSetDef), version: r.version, createTime: r.create_time, updateTime: r.update_time });
const defOf = (v: StoredView): ViewDef => {
  const { version: _v, createTime: _c, updateTime: _u, ...def } = v;
  return def;
};
const setDefOf = (s: StoredFeatureSet): FeatureSetDef => {
  const { version: _v, createTime: _c, updateTime: _u, ...def } = s;
  return def;
};

export interface MutationContext {
  readonly principal: string;
  readonly reason: string;
  readonly validateOnly?: boolean;
}

export class DefinitionStore {
  readonly audit: AuditLog;
  private readonly views = new Map<string, StoredView>();
  private readonly sets = new Map<string, StoredFeatureSet>();
  private readonly listeners: Array<() => void> = [];
  private readonly stmts;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly outbox: Outbox,
    private readonly transforms: TransformRegistry,
    private readonly offline: OfflineStore,
    private readonly online: OnlineStore,
    private readonly clock: () => number = Date.now,
  ) {
    this.audit = new AuditLog(sqlite);
    this.stmts = {
      latestViews: sqlite.prepare(
        "SELECT v.* FROM feature_views v JOIN (SELECT name, max(version) AS version FROM feature_views GROUP BY name) m USING (name, version)",
      ),
      viewVersion: sqlite.prepare("SELECT * FROM feature_views WHERE name = ? AND version = ?"),
      insertView: sqlite.prepare("INSERT INTO feature_views (name, version, def_json, create_time, update_time) VALUES (?, ?, ?, ?, ?)"),
      deleteView: sqlite.prepare("DELETE FROM feature_views WHERE name = ?"),
      allSets: sqlite.prepare("SELECT * FROM feature_sets"),
      upsertSet: sqlite.prepare(
        `INSERT INTO feature_sets (name, version, def_json, create_time, update_time) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, def_json = excluded.def_json, update_time = excluded.update_time`,
      ),
      deleteSet: sqlite.prepare("DELETE FROM feature_sets WHERE name = ?"),
    };
    for (const r of this.stmts.latestViews.all() as DefRow[]) this.views.set(r.name, viewFromRow(r));
    for (const r of this.stmts.allSets.all() as DefRow[]) this.sets.set(r.name, setFromRow(r));
  }

  /** Called after every committed definition change (read plans are rebuilt). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  view(name: string): StoredView | undefined {
    return this.views.get(name);
  }

  requireView(name: string): StoredView {
    const v = this.views.get(name);
    if (!v) throw new NotFoundError("feature view", name, "ListFeatureViews shows the views");
    return v;
  }

  viewNames(): string[] {
    return [...this.views.keys()].sort();
  }

  set(name: string): StoredFeatureSet | undefined {
    return this.sets.get(name);
  }

  requireSet(name: string): StoredFeatureSet {
    const s = this.sets.get(name);
    if (!s) throw new NotFoundError("feature set", name, "ListFeatureSets shows the sets");
    return s;
  }

  applyViews(inputs: readonly ViewInput[], ctx: MutationContext): ApplyResult<StoredView>[] {
    const defs = validateViews(inputs, (n) => this.views.get(n), this.transforms);
    const now = this.clock();
    const plan = defs.map((def): ApplyResult<StoredView> => {
      const old = this.views.get(def.name);
      if (!old) return { name: def.name, outcome: "created", stored: { ...def, version: 1, createTime: now, updateTime: now }, changes: [] };
      const changes = diffViews(old, def);
      if (changes.length === 0) return { name: def.name, outcome: "unchanged", stored: old, changes };
      return { name: def.name, outcome: "updated", stored: { ...def, version: old.version + 1, createTime: old.createTime, updateTime: now }, changes };
    });
    if (ctx.validateOnly || plan.every((p) => p.outcome === "unchanged")) return plan;
    this.sqlite.transaction(() => {
      for (const p of plan) {
        if (p.outcome === "unchanged") continue;
        const v = p.stored;
        this.stmts.insertView.run(v.name, v.version, JSON.stringify(defOf(v)), v.createTime, v.updateTime);
        const before = this.views.get(v.name);
        this.audit.record({
          principal: ctx.principal,
          action: p.outcome === "created" ? "feature_view.create" : "feature_view.update",
          resource: `feature_views/${v.name}`,
          scope: v.name,
          before,
          after: v,
          reason: ctx.reason,
        });
        this.outbox.record(
          `mlmesh.features.feature_view_applied.${v.name}`,
          FeatureViewAppliedSchema,
          create(FeatureViewAppliedSchema, { view: viewToProto(v), outcome: OUTCOME[p.outcome], changes: [...p.changes], reason: ctx.reason }),
          ctx.principal,
        );
      }
    })();
    for (const p of plan) if (p.outcome !== "unchanged") this.views.set(p.name, p.stored);
    this.outbox.flush();
    this.changed();
    return plan;
  }

  getView(name: string, version: number): StoredView {
    if (version === 0) return this.requireView(name);
    const row = this.stmts.viewVersion.get(name, version) as DefRow | undefined;
    if (!row) {
      const latest = this.requireView(name);
      throw new NotFoundError("feature view version", `${name}@${version}`, `the latest version is ${latest.version}`);
    }
    return viewFromRow(row);
  }

  listViews(q: { namePrefix: string; pageSize: number; pageToken: string }): { views: StoredView[]; nextPageToken: string } {
    const size = pageSize(q.pageSize, "page_size");
    const after = decodePageToken(q.pageToken, "page_token");
    const names = this.viewNames().filter((n) => n.startsWith(q.namePrefix) && (after === undefined || n > String(after)));
    const page = names.slice(0, size);
    return {
      views: page.map((n) => this.views.get(n)!),
      nextPageToken: names.length > size ? encodePageToken(page[page.length - 1]!) : "",
    };
  }

  /** Who still refers to a view: feature sets and on-demand features of other views. */
  private dependentsOf(view: string): string[] {
    const out: string[] = [];
    for (const s of this.sets.values()) if (s.refs.some((r) => r.startsWith(`${view}:`))) out.push(`feature set ${s.name}`);
    for (const v of this.views.values()) {
      if (v.name === view) continue;
      for (const o of v.onDemand) {
        if (o.inputs.some((i) => "featureRef" in i && i.featureRef.startsWith(`${view}:`))) out.push(`on-demand feature ${v.name}:${o.name}`);
      }
    }
    return out;
  }

  async deleteView(name: string, ctx: MutationContext): Promise<StoredView> {
    const check = () => {
      const v = this.requireView(name);
      const deps = this.dependentsOf(name);
      if (deps.length > 0) {
        throw new PreconditionError(`feature view ${JSON.stringify(name)} is still in use; delete or change these first`, deps.map((d) => ({ subject: name, description: d })));
      }
      return v;
    };
    check();
    // Online data goes first: if it failed after the definition was gone, a view re-created
    // under this name could serve the old values.
    await this.online.deleteView(name);
    const before = this.sqlite.transaction(() => {
      const v = check();
      this.stmts.deleteView.run(name);
      this.offline.deleteView(name);
      this.audit.record({ principal: ctx.principal, action: "feature_view.delete", resource: `feature_views/${name}`, scope: name, before: v, reason: ctx.reason });
      this.outbox.record(
        `mlmesh.features.feature_view_deleted.${name}`,
        FeatureViewDeletedSchema,
        create(FeatureViewDeletedSchema, { view: name, version: BigInt(v.version), reason: ctx.reason }),
        ctx.principal,
      );
      return v;
    })();
    this.views.delete(name);
    this.outbox.flush();
    this.changed();
    return before;
  }

  /** Checks that a ref names an existing stored or on-demand feature (NOT_FOUND otherwise). */
  resolveRef(ref: string, field: string): { view: StoredView; feature: string; onDemand: boolean } {
    const { view, feature } = parseRef(ref, field);
    const v = this.views.get(view);
    if (!v) throw new NotFoundError("feature view", view, `named by ${field} (${ref})`);
    if (v.features.some((f) => f.name === feature)) return { view: v, feature, onDemand: false };
    if (v.onDemand.some((f) => f.name === feature)) return { view: v, feature, onDemand: true };
    throw new NotFoundError("feature", ref, `view ${view} has ${[...v.features, ...v.onDemand].map((f) => f.name).join(", ") || "no features"}`);
  }

  applySets(inputs: readonly FeatureSetDef[], ctx: MutationContext): ApplyResult<StoredFeatureSet>[] {
    const defs = validateFeatureSets(inputs, (ref, field) => void this.resolveRef(ref, field));
    const now = this.clock();
    const plan = defs.map((def): ApplyResult<StoredFeatureSet> => {
      const old = this.sets.get(def.name);
      if (!old) return { name: def.name, outcome: "created", stored: { ...def, version: 1, createTime: now, updateTime: now }, changes: [] };
      const changes = diffFeatureSets(old, def);
      if (changes.length === 0) return { name: def.name, outcome: "unchanged", stored: old, changes };
      return { name: def.name, outcome: "updated", stored: { ...def, version: old.version + 1, createTime: old.createTime, updateTime: now }, changes };
    });
    if (ctx.validateOnly || plan.every((p) => p.outcome === "unchanged")) return plan;
    this.sqlite.transaction(() => {
      for (const p of plan) {
        if (p.outcome === "unchanged") continue;
        const s = p.stored;
        this.stmts.upsertSet.run(s.name, s.version, JSON.stringify(setDefOf(s)), s.createTime, s.updateTime);
        this.audit.record({
          principal: ctx.principal,
          action: p.outcome === "created" ? "feature_set.create" : "feature_set.update",
          resource: `feature_sets/${s.name}`,
          scope: s.name,
          before: this.sets.get(s.name),
          after: s,
          reason: ctx.reason,
        });
      }
    })();
    for (const p of plan) if (p.outcome !== "unchanged") this.sets.set(p.name, p.stored);
    this.changed();
    return plan;
  }

  listSets(q: { pageSize: number; pageToken: string }): { sets: StoredFeatureSet[]; nextPageToken: string } {
    const size = pageSize(q.pageSize, "page_size");
    const after = decodePageToken(q.pageToken, "page_token");
    const names = [...this.sets.keys()].sort().filter((n) => after === undefined || n > String(after));
    const page = names.slice(0, size);
    return { sets: page.map((n) => this.sets.get(n)!), nextPageToken: names.length > size ? encodePageToken(page[page.length - 1]!) : "" };
  }

  deleteSet(name: string, ctx: MutationContext): StoredFeatureSet {
    const before = this.sqlite.transaction(() => {
      const s = this.requireSet(name);
      this.stmts.deleteSet.run(name);
      this.audit.record({ principal: ctx.principal, action: "feature_set.delete", resource: `feature_sets/${name}`, scope: name, before: s, reason: ctx.reason });
      return s;
    })();
    this.sets.delete(name);
    this.changed();
    return before;
  }

  /** Audit records, newest first, whose resource starts with `prefix`. */
  listAudit(q: { resourcePrefix: string; pageSize: number; pageToken: string }): { records: AuditRecord[]; nextPageToken: string } {
    return this.audit.list({ resourcePrefix: q.resourcePrefix, pageSize: q.pageSize, pageToken: q.pageToken, newestFirst: true });
  }
}
