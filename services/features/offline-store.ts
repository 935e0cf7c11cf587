// The offline store: every row ever written to a view, kept in SQLite with its event time
// and write order. It answers the point-in-time join (an entity's history in a time range)
// and freshness (newest event time per view).

import type Database from "better-sqlite3";
import type { CheckedRow } from "./types.js";

export interface OfflineRow {
  readonly seq: number;
  readonly eventTime: number;
  readonly valuesJson: string;
}

export class OfflineStore {
  private readonly insert: Database.Statement;
  private readonly historyStmt: Database.Statement;
  private readonly removeView: Database.Statement;
  private readonly beforeStmt: Database.Statement;
  private readonly countStmt: Database.Statement;
  private readonly newestStmt: Database.Statement;

  /** `reader`: a read-only connection for the queries (see SqliteOnlineStore); defaults to `sqlite`. */
  constructor(
    private readonly sqlite: Database.Database,
    reader: Database.Database = sqlite,
  ) {
    this.insert = sqlite.prepare("INSERT INTO offline_rows (view, entity_key, event_time, write_time, values_json) VALUES (?, ?, ?, ?, ?)");
    this.historyStmt = reader.prepare(
      `SELECT seq, event_time AS eventTime, values_json AS valuesJson FROM offline_rows
       WHERE view = ? AND entity_key = ? AND event_time >= ? AND event_time <= ? ORDER BY event_time, seq`,
    );
    this.beforeStmt = reader.prepare(
      `SELECT seq, event_time AS eventTime, values_json AS valuesJson FROM offline_rows
       WHERE view = ? AND entity_key = ? AND event_time < ? ORDER BY event_time DESC, seq DESC LIMIT 1`,
    );
    this.removeView = sqlite.prepare("DELETE FROM offline_rows WHERE view = ?");
    this.countStmt = reader.prepare("SELECT count(*) FROM offline_rows WHERE view = ?").pluck();
    this.newestStmt = reader.prepare("SELECT max(event_time) FROM offline_rows WHERE view = ?").pluck();
  }

  /** Append rows; must run inside the caller's transaction (so the write is all-or-nothing). */
  append(view: string, rows: readonly CheckedRow[], writeTime: number): void {
    if (!this.sqlite.inTransaction) throw new Error("OfflineStore.append must run inside a transaction");
    for (const r of rows) this.insert.run(view, r.entityKey, r.eventTime, writeTime, r.valuesJson);
  }

  /** An entity's rows with event time in [from, to], by event time then write order. */
  history(view: string, entityKey: string, from: number, to: number): OfflineRow[] {
    return this.historyStmt.all(view, entityKey, from, to) as OfflineRow[];
  }

  /** The latest row of an entity with event time before `t`. */
  latestBefore(view: string, entityKey: string, t: number): OfflineRow | undefined {
    return this.beforeStmt.get(view, entityKey, t) as OfflineRow | undefined;
  }

  deleteView(view: string): number {
    return this.removeView.run(view).changes;
  }

  count(view: string): number {
    return this.countStmt.get(view) as number;
  }

  /** Newest event time of a view, or undefined when it has no rows. */
  newestEventTime(view: string): number | undefined {
    return (this.newestStmt.get(view) as number | null) ?? undefined;
  }
}
