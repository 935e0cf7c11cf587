// FeatureService handlers: validate, call the domain, map the result. Definitions,
// writes, streamed uploads, online and historical reads, materialization, freshness and
// audit are served here.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, type TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { FeatureStatus, FeatureValueSchema } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import type { FeatureService, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse, IngestFeaturesRequest, OnlineFeatureColumn } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { acceptsPreEncoded, answerPreEncoded, rawRequests } from "../../lib/pre-encoded.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { ValidationError } from "../../lib/errors.js";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/paging.js";
import { principalOf } from "../../lib/principal.js";
import type { BulkIngestor, Upload } from "./bulk-ingest.js";
import type { FeatureWriter, RowInput } from "./ingest.js";
import type { Materializer } from "./materialize.js";
import {
  durationFromMs,
  entityKeyFromProto,
  kindToProto,
  OUTCOME,
  requestDataFromProto,
  scalarFromValue,
  setFromProto,
  setToProto,
  STATUS,
  timestampToMs,
  transformToProto,
  valueToProto,
  viewInputFromProto,
  viewToProto,
} from "./mapping.js";
import type { FeatureMetrics } from "./metrics.js";
import { encodeOnlineFeaturesColumns, encodeOnlineFeaturesResponse } from "./online-encoding.js";
import { decodeOnlineRequest, fromMessage as onlineRequestFromMessage } from "./online-request.js";
import { readIngestMessage } from "./ingest-wire.js";
import { validateName, validateText } from "./names.js";
import type { OfflineStore } from "./offline-store.js";
import type { OnlineStore } from "./online-store.js";
import type { HistoricalReader, OnlineReader, ReadPlan, ReadPlanner } from "./reads.js";
import type { DefinitionStore } from "./store.js";
import type { TransformRegistry } from "./transforms.js";
import type { ReadValue, ValueKind } from "./types.js";
import type { WriteGate } from "./write-gate.js";

export interface FeatureServiceDeps {
  readonly defs: DefinitionStore;
  readonly transforms: TransformRegistry;
  readonly writer: FeatureWriter;
  readonly ingestor: BulkIngestor;
  readonly planner: ReadPlanner;
  readonly onlineReader: OnlineReader;
  readonly historicalReader: HistoricalReader;
  readonly offline: OfflineStore;
  readonly online: OnlineStore;
  readonly metrics: FeatureMetrics;
  readonly materializer: Materializer;
  readonly gate: WriteGate;
  readonly clock: () => number;
}

type FeatureValueInit = MessageInitShape<typeof FeatureValueSchema>;
type TimestampInit = MessageInitShape<typeof TimestampSchema>;

/** Map one row of read values; rows of one entity share event times, so the last is reused. */
function valuesToProto(values: readonly ReadValue[], plan: ReadPlan): FeatureValueInit[] {
  const out = new Array<FeatureValueInit>(values.length);
  let lastTime = NaN;
  let lastTs: TimestampInit | undefined;
  for (let c = 0; c < values.length; c++) {
    const v = values[c]!;
    let eventTime: TimestampInit | undefined;
    if (!Number.isNaN(v.eventTime)) {
      if (v.eventTime !== lastTime) {
        lastTime = v.eventTime;
        lastTs = { seconds: BigInt(Math.floor(v.eventTime / 1000)), nanos: (((v.eventTime % 1000) + 1000) % 1000) * 1e6 };
      }
      eventTime = lastTs;
    }
    out[c] = {
      status: STATUS[v.status],
      value: v.status === "present" ? valueToProto(v.value, plan.types[c]!) : undefined,
      eventTime,
    };
  }
  return out;
}

/** One column of a columnar read, the reflective way (Connect/JSON callers). */
/**
 * Column c's values where PRESENT, `zero` elsewhere. (Module level: a named closure made per
 * call costs a defineProperty each time under tsx's keepNames.)
 */
function presentOr<T>(rows: readonly ReadValue[][], c: number, zero: T): T[] {
  const out = new Array<T>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const v = rows[i]![c]!;
    out[i] = v.status === "present" ? (v.value as T) : zero;
  }
  return out;
}

/** presentOr(rows, c, 0) as numbers, in one pass. */
function presentNumbers(rows: readonly ReadValue[][], c: number): number[] {
  const out = new Array<number>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const v = rows[i]![c]!;
    out[i] = v.status === "present" ? Number(v.value) : 0;
  }
  return out;
}

const NO_VALUES = Object.freeze([]) as never[];

/**
 * One column of a columnar answer, as the message literal create() would return: the router
 * reads it through an in-process call, which hands a message on as it is (create() would
 * walk every array again).
 */
function columnToProto(rows: readonly ReadValue[][], c: number, type: ValueKind): OnlineFeatureColumn {
  const n = rows.length;
  const statuses = new Array<FeatureStatus>(n);
  const eventTimesMs = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const v = rows[i]![c]!;
    statuses[i] = STATUS[v.status];
    eventTimesMs[i] = Number.isNaN(v.eventTime) ? 0 : v.eventTime;
  }
  // A column fills one of the six value lists; the other five share one frozen empty list
  // (nothing writes to an answer; a write would throw, not leak into other answers).
  const col: OnlineFeatureColumn = {
    $typeName: "mlmesh.features.v1.OnlineFeatureColumn",
    statuses,
    eventTimesMs,
    doubleValues: NO_VALUES,
    floatValues: NO_VALUES,
    int64Values: NO_VALUES,
    stringValues: NO_VALUES,
    boolValues: NO_VALUES,
    vectorValues: NO_VALUES,
  };
  switch (type) {
    case "float64":
      col.doubleValues = presentNumbers(rows, c);
      break;
    case "float32":
      col.floatValues = presentNumbers(rows, c);
      break;
    case "int64":
      col.int64Values = presentOr<bigint>(rows, c, 0n);
      break;
    case "string":
      col.stringValues = presentOr<string>(rows, c, "");
      break;
    case "bool":
      col.boolValues = presentOr<boolean>(rows, c, false);
      break;
    case "float_vector":
      col.vectorValues = presentOr<readonly number[]>(rows, c, []).map((values) => ({ $typeName: "mlmesh.types.v1.FloatVector", values: [...values] }));
      break;
  }
  return col;
}

/** The next message, or the cancellation of the call if that comes first. */
function nextOrAbort<T>(it: AsyncIterator<T>, signal: AbortSignal): Promise<IteratorResult<T>> {
  const cancelled = () => (signal.reason instanceof Error ? signal.reason : new ConnectError("the client cancelled the call", Code.Canceled));
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(cancelled());
    signal.addEventListener("abort", onAbort, { once: true });
    it.next().then(
      (r) => {
        signal.removeEventListener("abort", onAbort);
        resolve(r);
      },
      (err) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

const tsOrUndefined = (ms: number) => (Number.isFinite(ms) ? timestampFromMs(ms) : undefined);

const reasonOf = (reason: string) => validateText(reason, "reason", 4096);

export function createFeatureService(deps: FeatureServiceDeps): Partial<ServiceImpl<typeof FeatureService>> {
  const { defs, writer, planner, onlineReader, historicalReader, clock } = deps;
  return {
    async applyFeatureViews(req, ctx) {
      if (req.views.length === 0) throw new ValidationError("views", "at least one view is required");
      const results = await deps.gate.run(() => defs.applyViews(req.views.map(viewInputFromProto), {
        principal: principalOf(ctx),
        reason: reasonOf(req.reason),
        validateOnly: req.validateOnly,
      }));
      return { results: results.map((r) => ({ name: r.name, outcome: OUTCOME[r.outcome], view: viewToProto(r.stored), changes: [...r.changes] })) };
    },

    getFeatureView(req) {
      if (req.version < 0n) throw new ValidationError("version", "must be >= 0");
      return { view: viewToProto(defs.getView(validateName(req.name, "name"), Number(req.version))) };
    },

    listFeatureViews(req) {
      if (req.namePrefix && !/^[a-z0-9_]*$/.test(req.namePrefix)) throw new ValidationError("name_prefix", "may only contain a-z, 0-9 and '_'");
      const { views, nextPageToken } = defs.listViews({ namePrefix: req.namePrefix, pageSize: req.pageSize, pageToken: req.pageToken });
      return { views: views.map(viewToProto), nextPageToken };
    },

    async deleteFeatureView(req, ctx) {
      const name = validateName(req.name, "name");
      const reason = reasonOf(req.reason);
      const view = await deps.gate.run(() => defs.deleteView(name, { principal: principalOf(ctx), reason }));
      deps.metrics.forgetView(name);
      return { view: viewToProto(view) };
    },

    listTransforms(req) {
      const size = pageSize(req.pageSize, "page_size");
      const after = decodePageToken(req.pageToken, "page_token");
      const all = deps.transforms.list().filter((t) => after === undefined || t.name > String(after));
      const page = all.slice(0, size);
      return { transforms: page.map(transformToProto), nextPageToken: all.length > size ? encodePageToken(page[page.length - 1]!.name) : "" };
    },

    async applyFeatureSets(req, ctx) {
      if (req.featureSets.length === 0) throw new ValidationError("feature_sets", "at least one feature set is required");
      const results = await deps.gate.run(() => defs.applySets(req.featureSets.map(setFromProto), {
        principal: principalOf(ctx),
        reason: reasonOf(req.reason),
        validateOnly: req.validateOnly,
      }));
      return { results: results.map((r) => ({ name: r.name, outcome: OUTCOME[r.outcome], featureSet: setToProto(r.stored), changes: [...r.changes] })) };
    },

    getFeatureSet(req) {
      const set = defs.requireSet(validateName(req.name, "name"));
      return {
        featureSet: setToProto(set),
        features: set.refs.map((ref, i) => {
          const r = defs.resolveRef(ref, `refs[${i}]`);
          const f = r.onDemand ? r.view.onDemand.find((o) => o.name === r.feature)! : r.view.features.find((x) => x.name === r.feature)!;
          return {
            ref,
            type: kindToProto(f.type),
            vectorDimension: "vectorDimension" in f ? f.vectorDimension : 0,
            pii: f.pii,
            onDemand: r.onDemand,
            ttl: durationFromMs(r.view.ttlMs),
            entityNames: r.view.entities.map((e) => e.name),
            requestFieldNames: "inputs" in f ? f.inputs.flatMap((x) => ("requestField" in x ? [x.requestField] : [])) : [],
          };
        }),
      };
    },

    listFeatureSets(req) {
      const { sets, nextPageToken } = defs.listSets({ pageSize: req.pageSize, pageToken: req.pageToken });
      return { featureSets: sets.map(setToProto), nextPageToken };
    },

    async deleteFeatureSet(req, ctx) {
      const name = validateName(req.name, "name");
      const reason = reasonOf(req.reason);
      return { featureSet: setToProto(await deps.gate.run(() => defs.deleteSet(name, { principal: principalOf(ctx), reason }))) };
    },

    async writeFeatures(req, ctx) {
      validateName(req.view, "view");
      if (req.requestId.length > 128) throw new ValidationError("request_id", "at most 128 characters");
      const result = await writer.write({
        view: req.view,
        featureNames: req.featureNames,
        rows: req.rows.map((r, i) => ({
          entityKey: entityKeyFromProto(r.entityKey),
          eventTime: timestampToMs(r.eventTime, `rows[${i}].event_time`),
          values: r.values.map(scalarFromValue),
        })),
        offlineOnly: req.offlineOnly,
        requestId: req.requestId,
        principal: principalOf(ctx),
        source: "write",
      });
      return { rowsWritten: BigInt(result.rowsWritten), onlineRowsUpdated: BigInt(result.onlineRowsUpdated) };
    },

    // Marked for raw messages (lib/pre-encoded.ts rawRequests): on the gRPC port each message
    // arrives as bytes and chunks are read by hand (ingest-wire.ts) instead of by protobuf-es;
    // decoded messages (the other transports) work as before.
    ingestFeatures: rawRequests(async (reqs: AsyncIterable<IngestFeaturesRequest | Uint8Array>, ctx: HandlerContext) => {
      const it = reqs[Symbol.asyncIterator]();
      const firstRaw = await nextOrAbort<IngestFeaturesRequest | Uint8Array>(it, ctx.signal);
      const first = firstRaw.done ? undefined : readIngestMessage(firstRaw.value);
      if (!first || first.case !== "header") {
        throw new ValidationError("header", "the first message of an upload must be a header");
      }
      const h = first.header;
      validateName(h.view, "header.view");
      if (h.requestId.length > 128) throw new ValidationError("header.request_id", "at most 128 characters");
      if (h.expectedRows < 0n) throw new ValidationError("header.expected_rows", "must be >= 0");
      if (h.sourceUnit !== "" && h.sourceUnit !== "line" && h.sourceUnit !== "row") {
        throw new ValidationError("header.source_unit", `must be "line", "row" or empty, got ${JSON.stringify(h.sourceUnit.slice(0, 40))}`);
      }
      const unit = h.sourceUnit === "row" ? "row" : "line";
      const begun = deps.ingestor.begin({
        view: h.view,
        featureNames: h.featureNames,
        source: validateText(h.source, "header.source", 1024),
        offlineOnly: h.offlineOnly,
        requestId: h.requestId,
        expectedRows: Number(h.expectedRows),
        sourceUnit: unit,
        principal: principalOf(ctx),
      });
      try {
        let message = 1;
        let sawLast = false;
        for (;;) {
          const next = await nextOrAbort(it, ctx.signal);
          if (next.done) break;
          const r = readIngestMessage(next.value);
          if (r.case !== "chunk") throw new ValidationError(`messages[${message}]`, "only the first message is a header; every later one must be a chunk");
          if (sawLast) throw new ValidationError(`messages[${message}]`, "a chunk after the one marked last");
          sawLast = r.last;
          message++;
          // A replayed request id: the upload was committed before; read the rest and answer as then.
          if ("replay" in begun) continue;
          const upload: Upload = begun.upload;
          const { rows, sourceLines } = r;
          if (sourceLines.length !== 0 && sourceLines.length !== rows.length) {
            throw new ValidationError(`messages[${message - 1}].source_lines`, `must be empty or one per row (${rows.length}), got ${sourceLines.length}`);
          }
          const offset = upload.rowCount;
          const labelOf = (i: number) => (sourceLines.length ? `${unit} ${sourceLines[i]}` : `rows[${offset + i}]`);
          for (let i = 0; i < rows.length; i++) {
            const e = rows[i]!.eventTimeError;
            if (e !== undefined) throw new ValidationError(labelOf(i), e);
          }
          await deps.gate.run(() => upload.stage(rows as RowInput[], sourceLines));
        }
        // lib/grpc-server.ts already turns a trailing client reset into CANCELLED at the end
        // of the request stream; this covers a cancel that lands while the last chunk stages.
        if (ctx.signal.aborted) throw new ConnectError("the client cancelled the call", Code.Canceled);
        // Only the client's own marker says the file was sent whole; an end of stream
        // without it (a cancel seen as a half-close, a broken client) commits nothing.
        if (!sawLast) throw new ValidationError("chunk.last", "the upload ended without a chunk marked last; nothing was written (send the final chunk, possibly empty, with last = true)");
        const result = "replay" in begun ? begun.replay : await begun.upload.commit();
        return {
          rowsAccepted: BigInt(result.rowsWritten),
          onlineRowsUpdated: BigInt(result.onlineRowsUpdated),
          minEventTime: tsOrUndefined(result.minEventTime),
          maxEventTime: tsOrUndefined(result.maxEventTime),
        };
      } finally {
        // Idempotent; after a commit there is nothing left to delete.
        if ("upload" in begun) await begun.upload.discard();
      }
    }),

    // On the gRPC port the request arrives as bytes and is read by hand (online-request.ts).
    getOnlineFeatures: rawRequests(async (raw: GetOnlineFeaturesRequest | Uint8Array, ctx: HandlerContext) => {
      const req = raw instanceof Uint8Array ? decodeOnlineRequest(raw) : onlineRequestFromMessage(raw);
      const plan = planner.plan(req.refs, req.featureSet);
      const now = clock();
      const rows = await onlineReader.read(plan, req.entities, req.requestData, now);
      if (req.columnar) {
        if (acceptsPreEncoded(ctx)) return answerPreEncoded<GetOnlineFeaturesResponse>(encodeOnlineFeaturesColumns(plan.refs, rows, plan.types, now));
        const answer: GetOnlineFeaturesResponse = {
          $typeName: "mlmesh.features.v1.GetOnlineFeaturesResponse",
          refs: [...plan.refs],
          rows: [],
          readTime: timestampFromMs(now),
          columns: plan.types.map((type, c) => columnToProto(rows, c, type)),
        };
        return answer;
      }
      if (acceptsPreEncoded(ctx)) {
        return answerPreEncoded<GetOnlineFeaturesResponse>(encodeOnlineFeaturesResponse(plan.refs, rows, plan.types, now));
      }
      return { refs: [...plan.refs], rows: rows.map((values) => ({ values: valuesToProto(values, plan) })), readTime: timestampFromMs(now) };
    }),

    async *getHistoricalFeatures(req) {
      const plan = planner.plan(req.refs, req.featureSet);
      const rows = req.entityRows.map((r, i) => ({
        keys: entityKeyFromProto(r.entityKey),
        asOf: timestampToMs(r.eventTime, `entity_rows[${i}].event_time`),
        request: requestDataFromProto(r.requestData),
      }));
      let first = true;
      for await (const chunk of historicalReader.read(plan, rows)) {
        yield {
          refs: first ? [...plan.refs] : [],
          rows: chunk.map((r) => ({
            rowIndex: BigInt(r.index),
            entityKey: req.entityRows[r.index]!.entityKey,
            eventTime: req.entityRows[r.index]!.eventTime,
            values: valuesToProto(r.values, plan),
          })),
        };
        first = false;
      }
      if (first) yield { refs: [...plan.refs], rows: [] };
    },

    async materialize(req) {
      const start = req.timeRange?.startTime ? timestampToMs(req.timeRange.startTime, "time_range.start_time") : null;
      const end = req.timeRange?.endTime ? timestampToMs(req.timeRange.endTime, "time_range.end_time") : null;
      const job = await deps.materializer.start({
        views: req.views.map((v, i) => validateName(v, `views[${i}]`)),
        start,
        end,
        incremental: req.incremental,
      });
      return { job: deps.materializer.toProto(job) };
    },

    getMaterializationStatus(req) {
      if (!req.jobId) throw new ValidationError("job_id", "is required");
      if (req.jobId.length > 64) throw new ValidationError("job_id", "at most 64 characters");
      return { job: deps.materializer.toProto(deps.materializer.get(req.jobId)) };
    },

    async getFreshness(req) {
      const now = clock();
      const names = req.views.length ? req.views.map((v, i) => defs.requireView(validateName(v, `views[${i}]`)).name) : defs.viewNames();
      const views = [];
      for (const name of names) {
        const view = defs.requireView(name);
        const newest = deps.metrics.newest.get(name);
        const age = newest === undefined ? undefined : Math.max(0, now - newest);
        views.push({
          view: name,
          newestEventTime: newest === undefined ? undefined : timestampFromMs(newest),
          age: age === undefined ? undefined : (durationFromMs(age) ?? { seconds: 0n, nanos: 0 }),
          ttl: durationFromMs(view.ttlMs),
          stale: view.ttlMs > 0 && age !== undefined && age > view.ttlMs,
          onlineEntityCount: BigInt(await deps.online.countEntities(name)),
          offlineRowCount: BigInt(deps.offline.count(name)),
        });
      }
      return { views, readTime: timestampFromMs(now) };
    },

    listAuditRecords(req) {
      const { records, nextPageToken } = defs.listAudit({ resourcePrefix: req.resourcePrefix, pageSize: req.pageSize, pageToken: req.pageToken });
      return { records, nextPageToken };
    },
  };
}
