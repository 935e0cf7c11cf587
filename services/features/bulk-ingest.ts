// IngestFeatures (streamed batch files): the header is checked, every chunk is checked
// with the same checkRows as WriteFeatures and staged in `ingest_staging` in its own
// transaction (so an upload is never held in memory). The server commits only after the
// client's end-of-upload marker: then the staged rows move to the stores in ONE
// transaction (online newest-wins merge, offline append, audit, idempotency record,
// staging clean-up) that is executed in slices of rows across event-loop ticks, so the
// process keeps serving reads while a million-row upload commits. Other writes wait on the
// WriteGate meanwhile; reads use the read-only connection and see the upload all at once
// when it commits, or not at all. With Redis the online merge runs first in batches
// (idempotent, as in FeatureWriter.write), then the same SQLite transaction. Any error or
// cancellation before the commit deletes the staged rows, so nothing is left behind.

import { randomUUID } from "node:crypto";
import type Database from "better-sqlite3";
import type { AuditLog } from "../../lib/audit.js";
import { ValidationError } from "../../lib/errors.js";
import { checkRows, featurePositions, type FeatureWriter, type RowInput, type WriteResult, type WriterOptions } from "./ingest.js";
import type { FeatureMetrics } from "./metrics.js";
import type { OnlineStore } from "./online-store.js";
import type { DefinitionStore } from "./store.js";
import type { CheckedRow, StoredView } from "./types.js";
import type { WriteGate } from "./write-gate.js";

export interface IngestHeaderInput {
  readonly view: string;
  readonly featureNames: readonly string[];
  readonly source: string;
  readonly offlineOnly: boolean;
  readonly requestId: string;
  /** 0: unknown. */
  readonly expectedRows: number;
  /** What source lines count, as errors name them: "line" or "row". */
  readonly sourceUnit: "line" | "row";
  readonly principal: string;
}

/** Rows read back from staging per online batch (Redis path). */
const ONLINE_BATCH = 5000;
/** Staged rows moved per slice of the commit transaction (~10-30 ms each). */
const COMMIT_SLICE = 10_000;

const nextTick = () => new Promise<void>((r) => setImmediate(r));

/** `line 1042.values[1]` -> field `line 1042`, problem `spend_7d: ...`; other fields kept. */
function relabel(err: unknown): unknown {
  if (!(err instanceof ValidationError)) return err;
  const m = /^((?:(?:line|row) \d+)|(?:rows\[\d+\]))(?:\.(.*))?$/.exec(err.field);
  if (!m) return err;
  const problem = err.message.slice(err.field.length + 2);
  const rest = m[2];
  if (rest === undefined || /^values\[\d+\]$/.test(rest)) return new ValidationError(m[1]!, problem);
  return new ValidationError(m[1]!, `${rest}: ${problem}`);
}

export class Upload {
  readonly id = randomUUID();
  private rows = 0;
  private min = Infinity;
  private max = -Infinity;
  private done = false;

  constructor(
    private readonly ingestor: BulkIngestor,
    readonly header: IngestHeaderInput,
    private readonly view: StoredView,
  ) {}

  get rowCount(): number {
    return this.rows;
  }

  /**
   * Check a chunk (all of it, before anything is staged) and stage it in one transaction.
   * `lines`: the source line of each row, or empty (rows are then named by their index
   * in the upload).
   */
  stage(rows: readonly RowInput[], lines: readonly number[]): void {
    if (this.done) throw new Error("upload already finished");
    const offset = this.rows;
    const unit = this.header.sourceUnit;
    const label = lines.length ? (i: number) => `${unit} ${lines[i]}` : (i: number) => `rows[${offset + i}]`;
    let checked: CheckedRow[];
    try {
      checked = checkRows(
        this.view,
        { view: this.view.name, featureNames: this.header.featureNames, rows, offlineOnly: this.header.offlineOnly, requestId: "", principal: this.header.principal, source: "ingest", rowLabel: label },
        this.ingestor.clock(),
        this.ingestor.opts,
      );
    } catch (err) {
      throw relabel(err);
    }
    for (const r of checked) {
      if (r.eventTime < this.min) this.min = r.eventTime;
      if (r.eventTime > this.max) this.max = r.eventTime;
    }
    this.ingestor.stageRows(this.id, offset, checked);
    this.rows += checked.length;
  }

  /** Move the staged rows to the stores; see the file comment. */
  async commit(): Promise<WriteResult> {
    if (this.done) throw new Error("upload already finished");
    try {
      const { expectedRows } = this.header;
      if (expectedRows > 0 && expectedRows !== this.rows) {
        throw new ValidationError("header.expected_rows", `the client announced ${expectedRows} rows but sent ${this.rows}; the upload looks truncated, nothing was written`);
      }
      const result = await this.ingestor.commit(this, { min: this.min, max: this.max });
      this.done = true; // the commit deleted the staged rows in its transaction
      return result;
    } finally {
      await this.discard();
    }
  }

  /** Delete whatever was staged (idempotent; after a commit there is nothing left). */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.ingestor.dropStaged(this.id, this.rows);
  }
}

export class BulkIngestor {
  private readonly insertStaged: Database.Statement;
  private readonly deleteStaged: Database.Statement;
  private readonly batchStaged: Database.Statement;
  private readonly mergeOnline: Database.Statement;
  private readonly appendOffline: Database.Statement;
  private readonly stageTx: (id: string, offset: number, rows: readonly CheckedRow[]) => void;
  private readonly deleteStagedSlice: Database.Statement;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly defs: DefinitionStore,
    private readonly online: OnlineStore,
    private readonly audit: AuditLog,
    private readonly metrics: FeatureMetrics,
    private readonly writer: FeatureWriter,
    readonly opts: WriterOptions,
    readonly clock: () => number,
    readonly gate: WriteGate,
  ) {
    // Uploads of a previous process can never complete.
    sqlite.prepare("DELETE FROM ingest_staging").run();
    this.insertStaged = sqlite.prepare("INSERT INTO ingest_staging (upload_id, seq, entity_key, event_time, values_json) VALUES (?, ?, ?, ?, ?)");
    this.deleteStaged = sqlite.prepare("DELETE FROM ingest_staging WHERE upload_id = ?");
    this.batchStaged = sqlite.prepare(
      `SELECT seq, entity_key AS entityKey, event_time AS eventTime, values_json AS valuesJson FROM ingest_staging
       WHERE upload_id = ? AND seq >= ? ORDER BY seq LIMIT ?`,
    );
    // The same newest-wins rule as SqliteOnlineStore (equal times: the later row wins; seq
    // order is arrival order), applied by SQLite to every staged row.
    this.mergeOnline = sqlite.prepare(
      `INSERT INTO online_rows (view, entity_key, event_time, write_time, values_json)
       SELECT ?, entity_key, event_time, ?, values_json FROM ingest_staging WHERE upload_id = ? AND seq >= ? AND seq < ? ORDER BY seq
       ON CONFLICT (view, entity_key) DO UPDATE SET event_time = excluded.event_time, write_time = excluded.write_time,
         values_json = excluded.values_json WHERE excluded.event_time >= online_rows.event_time`,
    );
    this.appendOffline = sqlite.prepare(
      `INSERT INTO offline_rows (view, entity_key, event_time, write_time, values_json)
       SELECT ?, entity_key, event_time, ?, values_json FROM ingest_staging WHERE upload_id = ? AND seq >= ? AND seq < ? ORDER BY seq`,
    );
    this.deleteStagedSlice = sqlite.prepare("DELETE FROM ingest_staging WHERE upload_id = ? AND seq >= ? AND seq < ?");
    this.stageTx = sqlite.transaction((id: string, offset: number, rows: readonly CheckedRow[]) => {
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i]!;
        this.insertStaged.run(id, offset + i, r.entityKey, r.eventTime, r.valuesJson);
      }
    });
  }

  /**
   * Check a header. Returns the answer already given when its request id was seen, else
   * a new upload. NOT_FOUND: unknown view; INVALID_ARGUMENT: unknown feature names.
   */
  begin(header: IngestHeaderInput): { replay: WriteResult } | { upload: Upload } {
    const replay = this.writer.seenResult(header.requestId, this.clock());
    if (replay) return { replay };
    const view = this.defs.requireView(header.view);
    featurePositions(view, header.featureNames, "header.feature_names");
    return { upload: new Upload(this, header, view) };
  }

  stageRows(id: string, offset: number, rows: readonly CheckedRow[]): void {
    if (rows.length) this.stageTx(id, offset, rows);
  }

  /** Delete an upload's staged rows in slices (they are invisible; nothing waits on this). */
  async dropStaged(id: string, rows: number): Promise<void> {
    for (let from = 0; from < rows; from += COMMIT_SLICE) {
      await this.gate.run(() => this.deleteStagedSlice.run(id, from, from + COMMIT_SLICE));
      if (from + COMMIT_SLICE < rows) await nextTick();
    }
    // Anything staged past the count (a chunk that failed half-way cannot, but be sure).
    await this.gate.run(() => this.deleteStaged.run(id));
  }

  async commit(upload: Upload, range: { min: number; max: number }): Promise<WriteResult> {
    return this.gate.exclusively(() => this.commitAlone(upload, range));
  }

  private async commitAlone(upload: Upload, range: { min: number; max: number }): Promise<WriteResult> {
    const h = upload.header;
    const now = this.clock();
    // A retry racing the first upload with the same request id.
    const replay = this.writer.seenResult(h.requestId, now);
    if (replay) {
      this.deleteStaged.run(upload.id);
      return replay;
    }
    const rows = upload.rowCount;
    const name = h.view;
    const inSqlite = this.online.kind === "sqlite";
    let onlineRowsUpdated = 0;
    this.defs.requireView(name);
    if (!h.offlineOnly && !inSqlite && rows > 0) {
      for (let from = 0; ; ) {
        const batch = this.batchStaged.all(upload.id, from, ONLINE_BATCH) as Array<CheckedRow & { seq: number }>;
        if (batch.length === 0) break;
        onlineRowsUpdated += await this.online.writeLatest(name, batch, now);
        from = batch[batch.length - 1]!.seq + 1;
      }
    }
    const result = (): WriteResult => ({ rowsWritten: rows, onlineRowsUpdated, minEventTime: range.min, maxEventTime: range.max });
    // One transaction, run in slices: between slices other callbacks run, but the gate
    // keeps every other write out of it and readers (the read-only connection) see none
    // of it until COMMIT.
    this.sqlite.exec("BEGIN IMMEDIATE");
    try {
      for (let from = 0; from < rows; from += COMMIT_SLICE) {
        const to = from + COMMIT_SLICE;
        if (!h.offlineOnly && inSqlite) onlineRowsUpdated += this.mergeOnline.run(name, now, upload.id, from, to).changes;
        this.appendOffline.run(name, now, upload.id, from, to);
        this.deleteStagedSlice.run(upload.id, from, to);
        if (to < rows) await nextTick();
      }
      // The view cannot have been deleted meanwhile (deletes wait on the gate), but check.
      this.defs.requireView(name);
      this.audit.record({
        principal: h.principal,
        action: "features.ingest",
        resource: `feature_views/${name}/rows`,
        scope: name,
        after: {
          rows,
          onlineRowsUpdated,
          offlineOnly: h.offlineOnly,
          source: h.source,
          minEventTime: rows ? range.min : null,
          maxEventTime: rows ? range.max : null,
        },
      });
      this.writer.recordResult(h.requestId, result(), now);
      this.sqlite.exec("COMMIT");
    } catch (err) {
      if (this.sqlite.inTransaction) this.sqlite.exec("ROLLBACK");
      throw err;
    }
    if (rows > 0) {
      this.metrics.ingestRows.inc({ view: name, source: "ingest" }, rows);
      this.metrics.ingestLag.observe({ view: name }, Math.max(0, (now - range.max) / 1000));
      this.metrics.noteWrite(name, range.max);
    }
    return result();
  }
}
