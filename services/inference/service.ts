// Handlers of mlmesh.inference.v1.InferenceService: validate, call the engine and loader,
// map the result. The drift, quality and batch-job RPCs come later (UNIMPLEMENTED).

import { validateModelName } from "../../lib/model-name.js";
import { randomUUID } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { LoadState, NonFinitePolicy, type BatchingConfig, type BatchingConfigSchema, type LoadedModelSchema } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import type { InferenceService, ScoreResponse } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { acceptsPreEncoded, answerPreEncoded } from "../../lib/pre-encoded.js";
import { NotFoundError, PreconditionError, ValidationError } from "../../lib/errors.js";
import { remainingMs } from "../../lib/telemetry.js";
import type { InferenceEngine } from "./engine.js";
import type { BatchingSettings, LoadedVersion, ModelLoader } from "./loader.js";
import type { PredictionLog } from "./prediction-log.js";
import { feedsFromRows, feedsFromScoreDense, rowOutputs } from "./score.js";
import { encodeScoreResponse } from "./score-encoding.js";
import type { DenseTensor } from "./tensors.js";

/** The caller's deadline as epoch ms (the runtime always sets one, capped by MLMESH_MAX_DEADLINE_MS). */
export function callDeadline(): number {
  return Date.now() + (remainingMs() ?? 300_000);
}

export function batchingToProto(s: BatchingSettings): MessageInitShape<typeof BatchingConfigSchema> {
  return {
    enabled: s.enabled,
    maxBatchSize: s.maxBatchSize,
    maxQueueDelayUs: BigInt(s.maxQueueDelayUs),
    workers: s.workers,
    intraOpThreads: s.intraOpThreads,
    maxRowsPerRequest: s.maxRowsPerRequest,
    nonFinitePolicy: s.allowNonFinite ? NonFinitePolicy.ALLOW : NonFinitePolicy.REJECT,
  };
}

/** A BatchingConfig from a request: zero fields keep the current value, except `enabled` which is always taken. */
function batchingFromProto(b: BatchingConfig): Partial<BatchingSettings> {
  return {
    enabled: b.enabled,
    maxBatchSize: b.maxBatchSize || undefined,
    maxQueueDelayUs: b.maxQueueDelayUs > 0n ? Number(b.maxQueueDelayUs) : undefined,
    workers: b.workers || undefined,
    intraOpThreads: b.intraOpThreads || undefined,
    maxRowsPerRequest: b.maxRowsPerRequest || undefined,
    allowNonFinite: b.nonFinitePolicy === NonFinitePolicy.UNSPECIFIED ? undefined : b.nonFinitePolicy === NonFinitePolicy.ALLOW,
  };
}

function loadedModel(loader: ModelLoader, engine: InferenceEngine, v: LoadedVersion): MessageInitShape<typeof LoadedModelSchema> {
  return {
    modelName: v.name,
    version: BigInt(v.version),
    artifactSha256: v.sha256,
    servingRefs: loader.refsOf(v),
    state: LoadState.READY,
    batching: batchingToProto(engine.settings(v.name)),
    loadedTime: timestampFromMs(v.loadedAt),
    lastUsedTime: timestampFromMs(v.lastUsed),
  };
}

export function createInferenceService(deps: { loader: ModelLoader; engine: InferenceEngine; predictionLog?: PredictionLog }): Partial<ServiceImpl<typeof InferenceService>> {
  const { loader, engine, predictionLog } = deps;
  return {
    async score(req, ctx) {
      const started = performance.now();
      if (!req.modelRef) throw new ValidationError("model_ref", "required, e.g. churn@production");
      const deadline = callDeadline();
      let v: LoadedVersion;
      try {
        v = await loader.acquire(req.modelRef);
      } catch (err) {
        engine.failed(req.modelRef.split("@")[0]!, err);
        throw err;
      }
      const inputs = req.inputs;
      if (inputs.case === undefined) throw new ValidationError("inputs", "give rows or dense tensors");
      let denseFeeds: Record<string, DenseTensor> | undefined;
      const r = await engine.run(
        v,
        (ver, limits) => {
          if (inputs.case === "rows") {
            const feeds = feedsFromRows(ver, inputs.value.rows, limits);
            return { feeds, rows: inputs.value.rows.length };
          }
          const dense = feedsFromScoreDense(ver, inputs.value, limits);
          denseFeeds = dense.feeds;
          return dense;
        },
        deadline,
      );
      const requestId = req.requestId || randomUUID();
      // Over gRPC the response is encoded straight from the output tensors; the RowOutput
      // objects are then built only for the prediction log, on its own tick.
      const direct = acceptsPreEncoded(ctx);
      const bytes = direct
        ? encodeScoreResponse({ modelName: v.name, version: v.version, requestId, queueTimeUs: Math.round(r.queueUs), computeTimeUs: Math.round(r.computeUs) }, r.outputs, r.rows, req.outputNames)
        : undefined;
      const outputs = direct ? undefined : rowOutputs(r.outputs, r.rows, req.outputNames);
      const outs = r.outputs;
      if (predictionLog && !req.skipPredictionLog) {
        predictionLog.log({
          requestId,
          modelName: v.name,
          version: v.version,
          latencyUs: (performance.now() - started) * 1000,
          timeMs: Date.now(),
          servedAs: req.servedAs,
          endpoint: req.endpoint,
          rows: inputs.case === "rows" ? inputs.value.rows : undefined,
          feeds: denseFeeds,
          rowCount: r.rows,
          binding: v.binding,
          outputs: outputs ?? (() => rowOutputs(outs, r.rows, req.outputNames)),
        });
      }
      if (bytes) return answerPreEncoded<ScoreResponse>(bytes);
      // A message literal: an in-process caller takes it as it is, without create() walking it.
      const answer: ScoreResponse = {
        $typeName: "mlmesh.inference.v1.ScoreResponse",
        modelName: v.name,
        version: BigInt(v.version),
        outputs: outputs ?? [],
        requestId,
        queueTimeUs: BigInt(Math.round(r.queueUs)),
        computeTimeUs: BigInt(Math.round(r.computeUs)),
      };
      return answer;
    },

    async loadModel(req) {
      if (!req.modelRef) throw new ValidationError("model_ref", "required, e.g. churn@production");
      if (req.batching) engine.setSettings(req.modelRef.split("@")[0]!, batchingFromProto(req.batching));
      const v = await loader.acquire(req.modelRef);
      return { model: loadedModel(loader, engine, v) };
    },

    async unloadModel(req) {
      const v = loader.peek(req.modelName, Number(req.version));
      if (!v) throw new NotFoundError("loaded model version", `${req.modelName}@${req.version}`, "LoadModel loads it");
      const refs = loader.refsOf(v);
      if (refs.length > 0 && !req.force) throw new PreconditionError(`${req.modelName}@${req.version} serves ${refs.join(", ")}; pass force to unload it anyway`);
      await loader.unload(req.modelName, Number(req.version));
      return {};
    },

    listLoadedModels() {
      return { models: loader.list().map((v) => loadedModel(loader, engine, v)) };
    },

    getBatchingConfig(req) {
      validateModelName(req.modelName, "model_name");
      return { batching: batchingToProto(engine.settings(req.modelName)) };
    },

    setBatchingConfig(req) {
      validateModelName(req.modelName, "model_name");
      if (!req.batching) throw new ValidationError("batching", "required");
      return { batching: batchingToProto(engine.setSettings(req.modelName, batchingFromProto(req.batching))) };
    },
  };
}
