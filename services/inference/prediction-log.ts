// The prediction log: every scored row becomes a PredictionLogged record, buffered per model
// and published in PredictionLogBatch events off the response path (msg id = the batch's
// event id). When NATS does not ack in time, batches go to a local append-only spool file
// (4-byte big-endian length + PredictionLogBatch bytes per batch, fsync'd per write) and are
// replayed in order, with their original msg ids, once NATS answers again; the spool is
// truncated only after every batch in it is acked. A start with a non-empty spool replays
// it before anything new is sent. How far a replay got (bytes of the spool acked) is kept
// in a sidecar file, fsync'd after every ack, so a restart in the middle of a replay goes on
// from there instead of re-sending what JetStream already has (its dedup window is finite).

import { createHmac, randomUUID } from "node:crypto";
import { mkdir, open, readFile, stat, truncate, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { INVALID_TRACEID as INVALID_TRACE_ID, trace, type SpanContext } from "@opentelemetry/api";
import { Counter, Gauge, type Registry } from "prom-client";
import { PredictionLogBatchSchema, type PredictionLogBatch } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import type { Row, RowOutputSchema } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import type { FeatureBinding } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { ValueSchema } from "../../gen/mlmesh/types/v1/types_pb.js";
import type { EventBus } from "../../lib/events.js";
import type { Logger } from "../../lib/logger.js";
import { PbWriter } from "../../lib/pb-writer.js";
import { spansRecorded } from "../../lib/telemetry.js";
import { traceIdOf } from "../../lib/trace-ids-only.js";
import { NO_PII, type PiiPolicy } from "./pii.js";
import { writeBatchMeta, writeBatchRecord } from "./prediction-log-wire.js";
import { product, type DenseTensor } from "./tensors.js";

export interface PredictionLogOptions {
  /** Records per batch before a flush (default 500). */
  readonly maxBatchRecords?: number;
  /** Flush interval, ms (default 100). */
  readonly flushIntervalMs?: number;
  /** A publish not acked within this is taken as NATS unavailable: spool (default 1500 ms). */
  readonly publishTimeoutMs?: number;
  /** While spooling, how often to try NATS again when no probe is outstanding (default 1000 ms). */
  readonly retryIntervalMs?: number;
  /** Input columns always treated as PII, on top of the feature views' tags. Default: none. */
  readonly piiColumns?: ReadonlySet<string>;
  /** Salt (HMAC key) for PII hashing; main.ts gives the configured or a persisted random one. */
  readonly piiSalt?: string;
}

export interface PredictionLogMetrics {
  readonly records: Counter<"model">;
  readonly batches: Counter<"model">;
  readonly spooled: Counter;
  readonly spoolBytes: Gauge;
}

export function createPredictionLogMetrics(registry: Registry): PredictionLogMetrics {
  return {
    records: new Counter({ name: "mlmesh_inference_prediction_log_records_total", help: "Prediction records logged (buffered for publishing).", labelNames: ["model"] as const, registers: [registry] }),
    batches: new Counter({ name: "mlmesh_inference_prediction_log_batches_published_total", help: "Prediction log batches acked by JetStream.", labelNames: ["model"] as const, registers: [registry] }),
    spooled: new Counter({ name: "mlmesh_inference_prediction_log_records_spooled_total", help: "Prediction records written to the local spool while NATS was unavailable.", registers: [registry] }),
    spoolBytes: new Gauge({ name: "mlmesh_inference_prediction_log_spool_bytes", help: "Size of the local prediction log spool file.", registers: [registry] }),
  };
}

export const predictionSubject = (model: string) => `mlmesh.inference.predictions.${model}`;

type ValueInit = MessageInitShape<typeof ValueSchema>;
type RowOutputInit = MessageInitShape<typeof RowOutputSchema>;

/** What one scoring call hands to the log; turned into records after the response is sent. */
export interface ScoredCall {
  readonly requestId: string;
  readonly modelName: string;
  readonly version: number;
  readonly latencyUs: number;
  readonly timeMs: number;
  readonly servedAs?: string;
  readonly endpoint?: string;
  /** Named rows (Score rows), or dense feeds to slice per row. */
  readonly rows?: readonly Row[];
  readonly feeds?: Record<string, DenseTensor>;
  readonly rowCount: number;
  readonly outputs: readonly RowOutputInit[] | (() => readonly RowOutputInit[]);
  /** The version's feature binding: with the views' PII tags it says which inputs to hash. */
  readonly binding?: FeatureBinding;
}

/** Where the log learns which bound features are PII (services/inference/pii.ts). */
export interface PiiSource {
  policyFor(binding: FeatureBinding | undefined): PiiPolicy;
}

/** The salted HMAC-SHA256 (hex) a PII value is logged as: joinable across records, not reversible without the salt. */
export function hashPii(salt: string, clear: string): string {
  return createHmac("sha256", salt).update(clear).digest("hex");
}

/**
 * Per-row values of dense feeds: a scalar per [N] or [N, 1] input, else a float vector. An
 * input with PII columns (`pii.dense`) is logged column by column under its feature refs
 * instead, the PII ones as salted hashes, so no PII value is ever written in clear.
 */
export function inputsFromFeeds(feeds: Record<string, DenseTensor>, rows: number, pii: PiiPolicy = NO_PII, salt = ""): Array<Record<string, ValueInit>> {
  const result: Array<Record<string, ValueInit>> = Array.from({ length: rows }, () => ({}));
  for (const [name, t] of Object.entries(feeds)) {
    const per = product(t.dims.slice(1)) || 1;
    const cols = pii.dense.get(name);
    if (cols && cols.refs.length === per) {
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < per; c++) {
          const x = t.data[r * per + c]!;
          const clear = typeof x === "bigint" ? x.toString() : t.type === "bool" ? String(x !== 0) : String(x);
          result[r]![cols.refs[c]!] = cols.pii[c]
            ? { kind: { case: "stringValue", value: hashPii(salt, clear) } }
            : t.type === "int64" || t.type === "int32"
              ? { kind: { case: "int64Value", value: BigInt(x) } }
              : t.type === "bool"
                ? { kind: { case: "boolValue", value: x !== 0 } }
                : { kind: { case: "doubleValue", value: Number(x) } };
        }
      }
      continue;
    }
    if (cols) {
      // Columns do not line up with the binding: hash the whole input rather than guess.
      for (let r = 0; r < rows; r++) {
        const slice = Array.from(t.data.subarray(r * per, (r + 1) * per) as ArrayLike<number | bigint>, Number);
        result[r]![name] = { kind: { case: "stringValue", value: hashPii(salt, slice.join(",")) } };
      }
      continue;
    }
    for (let r = 0; r < rows; r++) {
      const slice = t.data.subarray(r * per, (r + 1) * per) as ArrayLike<number | bigint>;
      let v: ValueInit;
      if (per === 1) {
        const x = slice[0]!;
        v = t.type === "int64" || t.type === "int32" ? { kind: { case: "int64Value", value: BigInt(x) } } : t.type === "bool" ? { kind: { case: "boolValue", value: x !== 0 } } : { kind: { case: "doubleValue", value: Number(x) } };
      } else {
        v = { kind: { case: "floatVectorValue", value: { values: Array.from(slice, Number) } } };
      }
      result[r]![name] = v;
    }
  }
  return result;
}

interface Pending {
  readonly subject: string;
  readonly msgId: string;
  readonly model: string;
  readonly records: number;
  readonly data: Uint8Array;
  /** Request spans linked from the producer span (not spooled: a replayed batch has none). */
  readonly links?: readonly SpanContext[];
}

/** Request spans a batch's producer span links, at most. */
const MAX_LINKS = 128;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class PredictionLog {
  /** Per model: records encoded since its last batch was cut. */
  private readonly buffers = new Map<string, { writer: PbWriter; records: number }>();
  private readonly metaWriter = new PbWriter(256);
  private readonly hashOf = (clear: string) => hashPii(this.salt, clear);
  /** Calls logged but not yet turned into records (see log()). */
  private calls: Array<{ call: ScoredCall; traceId: string; span: SpanContext | undefined }> = [];
  /** Per model: the request spans whose records wait in its buffer (linked from the batch's producer span). */
  private readonly bufferSpans = new Map<string, SpanContext[]>();
  private callRows = 0;
  private buildScheduled = false;
  private readonly queue: Pending[] = [];
  private readonly spoolPath: string;
  /** 8 bytes, big-endian: the replay offset of the spool (see the header). */
  private readonly offsetPath: string;
  private spoolMode = false;
  private spoolSize = 0;
  /** Bytes of the spool already acked in the current replay. */
  private replayOffset = 0;
  private recoveryWanted = false;
  private probing = false;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private closeDeadline = Infinity;
  private sequence = 0n;
  private readonly maxBatch: number;
  private readonly publishTimeoutMs: number;
  private readonly retryIntervalMs: number;
  private readonly pii: ReadonlySet<string>;
  private readonly salt: string;

  private constructor(
    private readonly bus: EventBus,
    dataDir: string,
    private readonly metrics: PredictionLogMetrics,
    private readonly logger: Logger,
    private readonly opts: PredictionLogOptions,
    private readonly piiSource: PiiSource | undefined,
  ) {
    this.spoolPath = path.join(dataDir, "inference", "prediction-log.spool");
    this.offsetPath = `${this.spoolPath}.offset`;
    this.maxBatch = opts.maxBatchRecords ?? 500;
    this.publishTimeoutMs = opts.publishTimeoutMs ?? 1500;
    this.retryIntervalMs = opts.retryIntervalMs ?? 1000;
    this.pii = opts.piiColumns ?? new Set();
    this.salt = opts.piiSalt ?? "";
  }

  /** Opens the log; a spool left by an earlier run is replayed before anything new. */
  static async open(deps: { bus: EventBus; dataDir: string; metrics: PredictionLogMetrics; logger: Logger; options?: PredictionLogOptions; pii?: PiiSource }): Promise<PredictionLog> {
    const log = new PredictionLog(deps.bus, deps.dataDir, deps.metrics, deps.logger, deps.options ?? {}, deps.pii);
    await mkdir(path.dirname(log.spoolPath), { recursive: true });
    const size = await stat(log.spoolPath).then((s) => s.size, () => 0);
    if (size > 0) {
      log.replayOffset = await log.readOffset(size);
      log.spoolSize = size;
      log.spoolMode = true;
      log.recoveryWanted = true;
      deps.logger.info({ spool: log.spoolPath, bytes: size, from: log.replayOffset }, "prediction log: replaying the spool of an earlier run");
      log.kick();
    }
    log.metrics.spoolBytes.set(log.spoolSize);
    log.timer = setInterval(() => log.flush(), deps.options?.flushIntervalMs ?? 100);
    log.timer.unref();
    return log;
  }

  /**
   * Records a scored call. The records are built with the next flush (timer, or a full
   * batch's worth of rows), not on the next tick: building them costs more than the response,
   * and on the tick after the handler it would run before the response leaves.
   */
  log(call: ScoredCall): void {
    if (this.closing) return;
    const active = trace.getActiveSpan();
    const traceId = active ? traceIdOf(active) : "";
    if (traceId === "" || traceId === INVALID_TRACE_ID) this.calls.push({ call, traceId: "", span: undefined });
    // Links to the requests are only worth a span id when spans are recorded.
    else this.calls.push({ call, traceId, span: spansRecorded() ? active!.spanContext() : undefined });
    this.callRows += call.rowCount;
    if (this.callRows >= this.maxBatch && !this.buildScheduled) {
      this.buildScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Turns the calls logged since the last flush into records in their model's buffer. */
  private build(): void {
    this.buildScheduled = false;
    if (this.calls.length === 0) return;
    const calls = this.calls;
    this.calls = [];
    this.callRows = 0;
    for (const { call, traceId, span } of calls) {
      try {
        if (span) {
          let spans = this.bufferSpans.get(call.modelName);
          if (!spans) this.bufferSpans.set(call.modelName, (spans = []));
          // Bounded: a producer span links at most this many requests.
          if (spans.length < MAX_LINKS) spans.push(span);
        }
        this.append(call, traceId);
      } catch (err) {
        this.logger.error({ err, model: call.modelName }, "prediction log: could not build records");
      }
    }
  }

  private append(call: ScoredCall, traceId: string): void {
    const outputs = typeof call.outputs === "function" ? call.outputs() : call.outputs;
    const policy = this.piiSource?.policyFor(call.binding) ?? NO_PII;
    const columns = this.pii.size === 0 ? policy.columns : policy.columns.size === 0 ? this.pii : new Set([...this.pii, ...policy.columns]);
    const dense = call.rows ? undefined : call.feeds ? inputsFromFeeds(call.feeds, call.rowCount, policy, this.salt) : undefined;
    // Dense inputs had the views' tags applied column by column above; hashing again would break joins.
    const maskColumns = call.rows ? columns : this.pii;
    const masking = maskColumns.size === 0 ? undefined : { columns: maskColumns, hash: this.hashOf };
    const time = timestampFromMs(call.timeMs);
    const latencyUs = Math.round(call.latencyUs);
    for (let r = 0; r < call.rowCount; r++) {
      const row = call.rows?.[r];
      let buf = this.buffers.get(call.modelName);
      if (!buf) this.buffers.set(call.modelName, (buf = { writer: new PbWriter(), records: 0 }));
      writeBatchRecord(
        buf.writer,
        {
          requestId: call.requestId,
          traceId,
          entity: row?.entity,
          modelName: call.modelName,
          version: call.version,
          inputs: row ? row.values : (dense?.[r] ?? {}),
          output: outputs[r],
          latencyUs,
          time,
          servedAs: call.servedAs ?? "",
          rowIndex: r,
          endpoint: call.endpoint ?? "",
        },
        masking,
      );
      buf.records++;
      if (buf.records >= this.maxBatch) this.cut(call.modelName);
    }
    this.metrics.records.inc({ model: call.modelName }, call.rowCount);
  }

  /** Moves every buffered record into batches and starts sending. */
  flush(): void {
    this.build();
    for (const model of this.buffers.keys()) this.cut(model);
  }

  private cut(model: string): void {
    const buf = this.buffers.get(model);
    if (!buf || buf.records === 0) return;
    const links = this.bufferSpans.get(model);
    this.bufferSpans.delete(model);
    const eventId = randomUUID();
    // PredictionLogBatch: meta (field 1) first, then the records (field 2) as appended.
    const head = this.metaWriter;
    head.reset();
    writeBatchMeta(head, { eventId, occurredAt: timestampFromMs(Date.now()), producer: "inference", sequence: ++this.sequence });
    const data = new Uint8Array(head.pos + buf.writer.pos);
    data.set(head.view(), 0);
    data.set(buf.writer.view(), head.pos);
    this.queue.push({ subject: predictionSubject(model), msgId: eventId, model, records: buf.records, data, links });
    buf.writer.reset();
    buf.records = 0;
    this.kick();
  }

  private kick(): void {
    if (this.running) return;
    let failed = false;
    this.running = this.run()
      .catch((err) => {
        failed = true;
        this.logger.error({ err, spool: this.spoolPath }, "prediction log: sender failed; retrying");
      })
      .finally(() => {
        this.running = undefined;
        if (failed) {
          if (!this.closing) setTimeout(() => this.kick(), this.retryIntervalMs).unref();
        } else if (this.queue.length > 0 || (this.recoveryWanted && !this.closing)) this.kick();
      });
  }

  /** Publishes with a timeout; on timeout the publish stays queued in the bus and becomes the probe. */
  private async tryPublish(p: Pending): Promise<boolean> {
    const publish = this.bus.publishEncoded(p.subject, p.data, { msgId: p.msgId, trace: p.links ? { links: p.links } : undefined });
    const limit = Math.max(0, Math.min(this.publishTimeoutMs, this.closeDeadline - Date.now()));
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      publish.then(() => "acked" as const, () => "failed" as const),
      new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), limit))),
    ]);
    clearTimeout(timer);
    if (outcome === "acked") {
      this.metrics.batches.inc({ model: p.model });
      return true;
    }
    this.enterSpoolMode(outcome === "timeout" ? publish : undefined);
    return false;
  }

  private enterSpoolMode(probe: Promise<unknown> | undefined): void {
    if (!this.spoolMode) this.logger.warn({ spool: this.spoolPath }, "prediction log: NATS not acking; spooling batches locally");
    this.spoolMode = true;
    this.recoveryWanted = false;
    if (probe && !this.probing) {
      this.probing = true;
      probe.then(
        () => {
          this.probing = false;
          this.recoveryWanted = true;
          this.kick();
        },
        () => {
          this.probing = false;
          this.scheduleRetry();
        },
      );
    } else if (!this.probing) this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.closing || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.recoveryWanted = true;
      this.kick();
    }, this.retryIntervalMs);
    this.retryTimer.unref();
  }

  private async run(): Promise<void> {
    for (;;) {
      if (!this.spoolMode) {
        const p = this.queue[0];
        if (!p) return;
        if (this.closing && Date.now() >= this.closeDeadline) {
          this.spoolMode = true;
          continue;
        }
        if (await this.tryPublish(p)) this.queue.shift();
        continue;
      }
      if (this.queue.length > 0) await this.spoolQueued();
      if (!this.recoveryWanted || this.closing) return;
      if (!(await this.replay())) return;
    }
  }

  /** The persisted replay offset; 0 when there is none or it cannot be right (then JetStream's dedup covers the re-send). */
  private async readOffset(spoolSize: number): Promise<number> {
    const bytes = await readFile(this.offsetPath).catch(() => undefined);
    if (!bytes || bytes.length !== 8) return 0;
    const at = Number(Buffer.from(bytes).readBigUInt64BE(0));
    if (at > spoolSize) {
      this.logger.warn({ offset: at, spool_bytes: spoolSize }, "prediction log: replay offset past the end of the spool; replaying all of it");
      return 0;
    }
    return at;
  }

  private async writeOffset(fh: FileHandle, at: number): Promise<void> {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(at));
    await fh.write(b, 0, 8, 0);
    await fh.datasync();
  }

  /** Appends every queued batch to the spool in one write, fsync'd. */
  private async spoolQueued(): Promise<void> {
    const batches = this.queue.slice();
    const parts: Buffer[] = [];
    for (const p of batches) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(p.data.length);
      parts.push(len, Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength));
    }
    const bytes = Buffer.concat(parts);
    const fh = await open(this.spoolPath, "a");
    try {
      await fh.write(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.queue.splice(0, batches.length);
    this.spoolSize += bytes.length;
    this.metrics.spoolBytes.set(this.spoolSize);
    this.metrics.spooled.inc(batches.reduce((n, p) => n + p.records, 0));
  }

  /**
   * Sends the spool from the replay offset, in order, with the original msg ids. True when it
   * is empty afterwards (truncated, back to direct publishing); false when NATS stopped acking.
   */
  private async replay(): Promise<boolean> {
    // "a+" creates the offset file; positional writes need "r+" (Linux appends ignore the position).
    await (await open(this.offsetPath, "a+")).close();
    const offsetFh = await open(this.offsetPath, "r+");
    try {
      const fh = await open(this.spoolPath, "r").catch(() => undefined);
      let size = 0;
      let at = this.replayOffset;
      try {
        size = fh ? (await fh.stat()).size : 0;
        const head = Buffer.alloc(4);
        while (fh && at + 4 <= size) {
          await fh.read(head, 0, 4, at);
          const len = head.readUInt32BE(0);
          if (at + 4 + len > size) break; // torn tail of a crash: dropped below
          const bytes = Buffer.alloc(len);
          await fh.read(bytes, 0, len, at + 4);
          let batch: PredictionLogBatch;
          try {
            batch = fromBinary(PredictionLogBatchSchema, bytes);
          } catch (err) {
            this.logger.error({ err, offset: at }, "prediction log: unreadable spool entry; dropping the rest of the spool");
            break;
          }
          const model = batch.records[0]?.modelName ?? "";
          const ok = model === "" || (await this.tryPublish({ subject: predictionSubject(model), msgId: batch.meta?.eventId ?? randomUUID(), model, records: batch.records.length, data: bytes }));
          if (!ok) return false;
          at += 4 + len;
          this.replayOffset = at;
          await this.writeOffset(offsetFh, at);
          // New batches keep their place: behind what is spooled.
          if (this.queue.length > 0) await this.spoolQueued();
        }
      } finally {
        await fh?.close();
      }
      if (this.queue.length > 0) await this.spoolQueued();
      // Appended while replaying: go round again. Truncate only once everything in it is acked.
      const now = await stat(this.spoolPath).then((st) => st.size, () => 0);
      if (now !== size) return true;
      // Offset first: a crash between the two then re-sends (deduplicated) rather than skipping new records.
      await this.writeOffset(offsetFh, 0);
    } finally {
      await offsetFh.close();
    }
    await truncate(this.spoolPath, 0).catch(() => undefined);
    this.spoolSize = 0;
    this.replayOffset = 0;
    this.spoolMode = false;
    this.recoveryWanted = false;
    this.metrics.spoolBytes.set(0);
    this.logger.info("prediction log: spool replayed; publishing directly again");
    return true;
  }

  /** Batches cut but neither acked nor spooled yet. */
  pendingBatches(): number {
    return this.queue.length;
  }

  /** Flushes (bounded by timeoutMs); what is not acked by then is spooled for the next start. */
  async close(timeoutMs = 3000): Promise<void> {
    // Records scheduled with setImmediate land first.
    await new Promise((r) => setImmediate(r));
    this.closing = true;
    this.closeDeadline = Date.now() + timeoutMs;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.flush();
    while (this.running) await this.running;
    if (this.queue.length > 0) await this.spoolQueued();
    if (this.spoolSize > 0) this.logger.warn({ spool: this.spoolPath, bytes: this.spoolSize }, "prediction log: batches left spooled for the next start");
    await sleep(0);
  }
}
