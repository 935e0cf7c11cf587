// The audit log every stateful service keeps: one row per mutation (who, what, when,
// before/after as proto3 JSON, reason), written in the mutation's own transaction, so the
// log and the state can never disagree.

import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type Database from "better-sqlite3";
import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { AuditRecordSchema, type AuditRecord } from "../gen/mlmesh/types/v1/types_pb.js";
import { ValidationError } from "./errors.js";
import { decodePageToken, encodePageToken, pageSize } from "./paging.js";

export const auditTable = sqliteTable(
  "audit_log",
  {
    sequence: integer("sequence").primaryKey({ autoIncrement: true }),
    time: integer("time").notNull(),
    principal: text("principal").notNull(),
    action: text("action").notNull(),
    resource: text("resource").notNull(),
    /** The top-level object the record belongs to (model name, view name, ...), for filtering. */
    scope: text("scope").notNull(),
    beforeJson: text("before_json").notNull(),
    afterJson: text("after_json").notNull(),
    reason: text("reason").notNull(),
  },
  (t) => [index("audit_log_scope_idx").on(t.scope, t.sequence)],
);

export interface AuditEntry {
  readonly principal: string;
  readonly action: string;
  readonly resource: string;
  readonly scope: string;
  readonly before?: unknown;
  readonly after?: unknown;
  readonly reason?: string;
}

export interface AuditQuery {
  readonly scope?: string;
  /** Only records whose resource starts with this (e.g. "feature_views/user_stats"). */
  readonly resourcePrefix?: string;
  readonly action?: string;
  readonly startTime?: Timestamp;
  readonly endTime?: Timestamp;
  readonly newestFirst?: boolean;
  readonly pageSize?: number;
  readonly pageToken?: string;
}

interface AuditRow {
  sequence: number;
  time: number;
  principal: string;
  action: string;
  resource: string;
  before_json: string;
  after_json: string;
  reason: string;
}

export class AuditLog {
  private readonly insert: Database.Statement;

  constructor(private readonly sqlite: Database.Database) {
    this.insert = sqlite.prepare(
      "INSERT INTO audit_log (time, principal, action, resource, scope, before_json, after_json, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
  }

  /** Append a record; must run inside the transaction of the change it describes. */
  record(entry: AuditEntry): void {
    if (!this.sqlite.inTransaction) throw new Error("AuditLog.record must run inside the transaction of the change");
    this.insert.run(
      Date.now(),
      entry.principal,
      entry.action,
      entry.resource,
      entry.scope,
      entry.before === undefined ? "" : JSON.stringify(entry.before),
      entry.after === undefined ? "" : JSON.stringify(entry.after),
      entry.reason ?? "",
    );
  }

  list(q: AuditQuery): { records: AuditRecord[]; nextPageToken: string } {
    const size = pageSize(q.pageSize, "page_size");
    const after = decodePageToken(q.pageToken, "page_token");
    if (after !== undefined && typeof after !== "number") throw new ValidationError("page_token", "is not a token returned by a previous page; start again without it");
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.scope) {
      where.push("scope = ?");
      args.push(q.scope);
    }
    if (q.resourcePrefix) {
      where.push("substr(resource, 1, ?) = ?");
      args.push(q.resourcePrefix.length, q.resourcePrefix);
    }
    if (q.action) {
      where.push("action = ?");
      args.push(q.action);
    }
    if (q.startTime) {
      where.push("time >= ?");
      args.push(timestampDate(q.startTime).getTime());
    }
    if (q.endTime) {
      where.push("time < ?");
      args.push(timestampDate(q.endTime).getTime());
    }
    if (after !== undefined) {
      where.push(q.newestFirst ? "sequence < ?" : "sequence > ?");
      args.push(after);
    }
    const sql = `SELECT sequence, time, principal, action, resource, before_json, after_json, reason FROM audit_log ${
      where.length ? `WHERE ${where.join(" AND ")}` : ""
    } ORDER BY sequence ${q.newestFirst ? "DESC" : "ASC"} LIMIT ?`;
    const rows = this.sqlite.prepare(sql).all(...args, size + 1) as AuditRow[];
    const page = rows.slice(0, size);
    return {
      records: page.map((r) =>
        create(AuditRecordSchema, {
          sequence: BigInt(r.sequence),
          time: timestampFromMs(r.time),
          principal: r.principal,
          action: r.action,
          resource: r.resource,
          beforeJson: r.before_json,
          afterJson: r.after_json,
          reason: r.reason,
        }),
      ),
      nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.sequence) : "",
    };
  }
}
