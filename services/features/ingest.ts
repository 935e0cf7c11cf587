// Writing feature rows: every row checked against the view before anything is stored
// (one bad row fails the whole call), then merged into the online store and appended to
// the offline store. The online merge goes first because it is idempotent (a newer-wins
// merge), so a call that fails between the two stores converges when the caller retries.

import type Database from "better-sqlite3";
import type { AuditLog } from "../../lib/audit.js";
import { ResourceExhaustedError, ValidationError } from "../../lib/errors.js";
import { encodeValue, entityKeyOf } from "./codec.js";
import type { FeatureMetrics } from "./metrics.js";
import type { OfflineStore } from "./offline-store.js";
import type { OnlineStore } from "./online-store.js";
import type { DefinitionStore } from "./store.js";
import type { CheckedRow, Scalar, StoredView } from "./types.js";
import type { WriteGate } from "./write-gate.js";

export interface RowInput {
  readonly entityKey: Readonly<Record<string, Scalar>>;
  /** Epoch ms, already parsed (a missing or invalid timestamp never gets here). */
  readonly eventTime: number;
  readonly values: readonly Scalar[];
}

export interface WriteInput {
  readonly view: string;
  /** Empty: all stored features in definition order. */
  readonly featureNames: readonly string[];
  readonly rows: readonly RowInput[];
  readonly offlineOnly: boolean;
  readonly requestId: string;
  readonly principal: string;
  /** "write" (WriteFeatures), "ingest" (IngestFeatures) or "stream" (NATS); metrics and audit. */
  readonly source: "write" | "ingest" | "stream";
  /** Name of each row in errors: `rows[3]` by default, `line 1042` for files. */
  readonly rowLabel?: (index: number) => string;
}

export interface WriteResult {
  readonly rowsWritten: number;
  readonly onlineRowsUpdated: number;
  readonly minEventTime: number;
  readonly maxEventTime: number;
}

export interface WriterOptions {
  /** How far in the future an event time may be (clock skew between producers). */
  readonly maxFutureSkewMs: number;
  readonly maxRowsPerWrite: number;
}

const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;

/** Positions of the named features in a view's stored features (INVALID_ARGUMENT naming the bad one). */
export function featurePositions(view: StoredView, names: readonly string[], field: string): number[] {
  if (names.length === 0) return view.features.map((_, i) => i);
  const seen = new Set<string>();
  return names.map((name, j) => {
    const i = view.features.findIndex((f) => f.name === name);
    if (i < 0) {
      const od = view.onDemand.some((o) => o.name === name);
      throw new ValidationError(
        `${field}[${j}]`,
        od ? `${view.name}:${name} is an on-demand feature; it is computed at read time and cannot be written` : `view ${view.name} has no feature ${JSON.stringify(name)} (features: ${view.features.map((f) => f.name).join(", ")})`,
      );
    }
    if (seen.has(name)) throw new ValidationError(`${field}[${j}]`, `${name} appears twice`);
    seen.add(name);
    return i;
  });
}

/** Check every row against the view and encode it for storage; throws on the first bad row. */
export function checkRows(view: StoredView, input: WriteInput, now: number, opts: WriterOptions): CheckedRow[] {
  if (input.rows.length > opts.maxRowsPerWrite) {
    throw new ResourceExhaustedError(`at most ${opts.maxRowsPerWrite} rows per call, got ${input.rows.length}; split the write or use IngestFeatures`);
  }
  const positions = featurePositions(view, input.featureNames, "feature_names");
  const label = input.rowLabel ?? ((i: number) => `rows[${i}]`);
  const width = view.features.length;
  const latest = now + opts.maxFutureSkewMs;
  const out = new Array<CheckedRow>(input.rows.length);
  for (let i = 0; i < input.rows.length; i++) {
    const row = input.rows[i]!;
    const at = label(i);
    if (row.eventTime > latest) {
      throw new ValidationError(`${at}.event_time`, `${new Date(row.eventTime).toISOString()} is more than ${opts.maxFutureSkewMs / 1000}s in the future`);
    }
    const entityKey = entityKeyOf(view.entities, row.entityKey, `${at}.entity_key`, true, view.name);
    if (row.values.length !== positions.length) {
      throw new ValidationError(`${at}.values`, `expected ${positions.length} values (one per feature name), got ${row.values.length}`);
    }
    const stored = new Array<unknown>(width).fill(null);
    for (let j = 0; j < positions.length; j++) {
      const p = positions[j]!;
      stored[p] = encodeValue(row.values[j]!, view.features[p]!, `${at}.values[${j}]`);
    }
    out[i] = { entityKey, eventTime: row.eventTime, valuesJson: JSON.stringify(stored) };
  }
  return out;
}

export class FeatureWriter {
  private readonly seenRequest: Database.Statement;
  private readonly recordRequest: Database.Statement;
  private readonly purgeRequests: Database.Statement;
  private lastPurge = 0;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly defs: DefinitionStore,
    private readonly offline: OfflineStore,
    private readonly online: OnlineStore,
    private readonly audit: AuditLog,
    private readonly metrics: FeatureMetrics,
    private readonly opts: WriterOptions,
    private readonly clock: () => number,
    private readonly gate: WriteGate,
  ) {
    this.seenRequest = sqlite.prepare("SELECT response_json FROM write_requests WHERE request_id = ? AND time >= ?").pluck();
    this.recordRequest = sqlite.prepare("INSERT OR REPLACE INTO write_requests (request_id, response_json, time) VALUES (?, ?, ?)");
    this.purgeRequests = sqlite.prepare("DELETE FROM write_requests WHERE time < ?");
  }

  /** The answer already given to `requestId` within the idempotency window, if any. */
  seenResult(requestId: string, now: number): WriteResult | undefined {
    if (!requestId) return undefined;
    const seen = this.seenRequest.get(requestId, now - IDEMPOTENCY_WINDOW_MS) as string | undefined;
    return seen ? (JSON.parse(seen) as WriteResult) : undefined;
  }

  /** Remember the answer to `requestId`; must run inside the transaction of the write. */
  recordResult(requestId: string, result: WriteResult, now: number): void {
    if (!requestId) return;
    if (now - this.lastPurge > 3600_000) {
      this.purgeRequests.run(now - IDEMPOTENCY_WINDOW_MS);
      this.lastPurge = now;
    }
    this.recordRequest.run(requestId, JSON.stringify(result), now);
  }

  /** Check and write; waits while a sliced upload commit holds the connection. */
  write(input: WriteInput): Promise<WriteResult> {
    return this.gate.run(() => this.writeNow(input));
  }

  private async writeNow(input: WriteInput): Promise<WriteResult> {
    const now = this.clock();
    const seen = this.seenResult(input.requestId, now);
    if (seen) return seen;
    const view = this.defs.requireView(input.view);
    const rows = checkRows(view, input, now, this.opts);
    let min = Infinity;
    let max = -Infinity;
    for (const r of rows) {
      if (r.eventTime < min) min = r.eventTime;
      if (r.eventTime > max) max = r.eventTime;
    }
    const onlineRowsUpdated = input.offlineOnly || rows.length === 0 ? 0 : await this.online.writeLatest(view.name, rows, now);
    const result: WriteResult = { rowsWritten: rows.length, onlineRowsUpdated, minEventTime: min, maxEventTime: max };
    this.sqlite.transaction(() => {
      // The view may have been deleted while the online write was in flight.
      this.defs.requireView(view.name);
      this.offline.append(view.name, rows, now);
      this.audit.record({
        principal: input.principal,
        action: `features.${input.source}`,
        resource: `feature_views/${view.name}/rows`,
        scope: view.name,
        after: { rows: rows.length, onlineRowsUpdated, offlineOnly: input.offlineOnly, minEventTime: rows.length ? min : null, maxEventTime: rows.length ? max : null },
      });
      this.recordResult(input.requestId, result, now);
    })();
    if (rows.length > 0) {
      this.metrics.ingestRows.inc({ view: view.name, source: input.source }, rows.length);
      this.metrics.ingestLag.observe({ view: view.name }, Math.max(0, (now - max) / 1000));
      this.metrics.noteWrite(view.name, max);
    }
    return result;
  }
}
