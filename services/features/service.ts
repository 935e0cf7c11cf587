// FeatureService handlers: validate, call the domain, map the result. Definitions,
// writes, streaming ingest, online and historical reads, freshness and audit are served
// here; materialization answers UNIMPLEMENTED until it lands.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, type TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { FeatureValueSchema } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import type { FeatureService, GetOnlineFeaturesResponse, IngestFeaturesRequest } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { acceptsPreEncoded, answerPreEncoded } from "../../lib/pre-encoded.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { ValidationError } from "../../lib/errors.js";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/paging.js";
import { principalOf } from "../../lib/principal.js";
import type { BulkIngestor, Upload } from "./bulk-ingest.js";
import type { FeatureWriter } from "./ingest.js";
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
import { encodeOnlineFeaturesResponse } from "./online-encoding.js";
import { validateName, validateText } from "./names.js";
import type { OfflineStore } from "./offline-store.js";
import type { OnlineStore } from "./online-store.js";
import type { HistoricalReader, OnlineReader, ReadPlan, ReadPlanner } from "./reads.js";
import type { DefinitionStore } from "./store.js";
import type { TransformRegistry } from "./transforms.js";
import type { ReadValue } from "./types.js";

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

/** A row's event time; errors name the row as `line N: event_time: ...`. */
function timestampOrLabelled(ts: Parameters<typeof timestampToMs>[0], label: string): number {
  try {
    return timestampToMs(ts, "event_time");
  } catch (err) {
    if (err instanceof ValidationError) throw new ValidationError(label, err.message);
    throw err;
  }
}

export function createFeatureService(deps: FeatureServiceDeps): Partial<ServiceImpl<typeof FeatureService>> {
  const { defs, writer, planner, onlineReader, historicalReader, clock } = deps;
  return {
    applyFeatureViews(req, ctx) {
      if (req.views.length === 0) throw new ValidationError("views", "at least one view is required");
      const results = defs.applyViews(req.views.map(viewInputFromProto), {
        principal: principalOf(ctx),
        reason: reasonOf(req.reason),
        validateOnly: req.validateOnly,
      });
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
      const view = await defs.deleteView(name, { principal: principalOf(ctx), reason: reasonOf(req.reason) });
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

    applyFeatureSets(req, ctx) {
      if (req.featureSets.length === 0) throw new ValidationError("feature_sets", "at least one feature set is required");
      const results = defs.applySets(req.featureSets.map(setFromProto), {
        principal: principalOf(ctx),
        reason: reasonOf(req.reason),
        validateOnly: req.validateOnly,
      });
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

    deleteFeatureSet(req, ctx) {
      return { featureSet: setToProto(defs.deleteSet(validateName(req.name, "name"), { principal: principalOf(ctx), reason: reasonOf(req.reason) })) };
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

    async ingestFeatures(reqs, ctx) {
      const it = reqs[Symbol.asyncIterator]();
      const first = await nextOrAbort<IngestFeaturesRequest>(it, ctx.signal);
      if (first.done || first.value.payload.case !== "header") {
        throw new ValidationError("header", "the first message of an upload must be a header");
      }
      const h = first.value.payload.value;
      validateName(h.view, "header.view");
      if (h.requestId.length > 128) throw new ValidationError("header.request_id", "at most 128 characters");
      if (h.expectedRows < 0n) throw new ValidationError("header.expected_rows", "must be >= 0");
      const begun = deps.ingestor.begin({
        view: h.view,
        featureNames: h.featureNames,
        source: validateText(h.source, "header.source", 1024),
        offlineOnly: h.offlineOnly,
        requestId: h.requestId,
        expectedRows: Number(h.expectedRows),
        principal: principalOf(ctx),
      });
      try {
        let message = 1;
        for (;;) {
          const r = await nextOrAbort(it, ctx.signal);
          if (r.done) break;
          if (r.value.payload.case !== "chunk") throw new ValidationError(`messages[${message}]`, "only the first message is a header; every later one must be a chunk");
          message++;
          // A replayed request id: the upload was committed before; read the rest and answer as then.
          if ("replay" in begun) continue;
          const upload: Upload = begun.upload;
          const { rows, sourceLines } = r.value.payload.value;
          if (sourceLines.length !== 0 && sourceLines.length !== rows.length) {
            throw new ValidationError(`messages[${message - 1}].source_lines`, `must be empty or one per row (${rows.length}), got ${sourceLines.length}`);
          }
          const offset = upload.rowCount;
          const labelOf = (i: number) => (sourceLines.length ? `line ${sourceLines[i]}` : `rows[${offset + i}]`);
          upload.stage(
            rows.map((row, i) => ({
              entityKey: entityKeyFromProto(row.entityKey),
              eventTime: timestampOrLabelled(row.eventTime, labelOf(i)),
              values: row.values.map(scalarFromValue),
            })),
            sourceLines.map(Number),
          );
        }
        // lib/grpc-server.ts already turns a trailing client reset into CANCELLED at the end
        // of the request stream; this covers a cancel that lands while the last chunk stages.
        if (ctx.signal.aborted) throw new ConnectError("the client cancelled the call", Code.Canceled);
        const result = "replay" in begun ? begun.replay : await begun.upload.commit();
        return {
          rowsAccepted: BigInt(result.rowsWritten),
          onlineRowsUpdated: BigInt(result.onlineRowsUpdated),
          minEventTime: tsOrUndefined(result.minEventTime),
          maxEventTime: tsOrUndefined(result.maxEventTime),
        };
      } finally {
        // Idempotent; after a commit there is nothing left to delete.
        if ("upload" in begun) begun.upload.discard();
      }
    },

    async getOnlineFeatures(req, ctx) {
      const plan = planner.plan(req.refs, req.featureSet);
      if (req.entityRequestData.length !== 0 && req.entityRequestData.length !== req.entities.length) {
        throw new ValidationError("entity_request_data", `must be empty or have one entry per entity (${req.entities.length}), got ${req.entityRequestData.length}`);
      }
      const entities = req.entities.map((e, i) => ({
        keys: entityKeyFromProto(e),
        request: req.entityRequestData.length ? requestDataFromProto(req.entityRequestData[i]!.fields) : undefined,
      }));
      const now = clock();
      const rows = await onlineReader.read(plan, entities, requestDataFromProto(req.requestData), now);
      if (acceptsPreEncoded(ctx)) {
        return answerPreEncoded<GetOnlineFeaturesResponse>(encodeOnlineFeaturesResponse(plan.refs, rows, plan.types, now));
      }
      return { refs: [...plan.refs], rows: rows.map((values) => ({ values: valuesToProto(values, plan) })), readTime: timestampFromMs(now) };
    },

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
