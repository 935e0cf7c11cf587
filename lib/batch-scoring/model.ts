// The model and features a batch run uses, from the mesh: the version a ref names is
// resolved and its artifact downloaded (sha256-verified, cached) through the inference
// service's own ModelLoader, which runs it in ONNX Runtime session workers; point-in-time
// features come from the feature service's GetHistoricalFeatures.

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { FeatureStatus } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import type { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import type { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import type { Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import { ModelLoader, type LoadedVersion } from "../../services/inference/loader.js";
import { ValidationError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { BatchModel, FeatureFetch } from "./score.js";

/** How long one chunk may wait for and run on a worker. */
const CHUNK_DEADLINE_MS = 10 * 60_000;

export interface OpenedModel {
  readonly model: BatchModel;
  readonly version: LoadedVersion;
  close(): Promise<void>;
}

/**
 * Loads `ref` into `workers` session workers (one ORT session each, one intra-op thread);
 * the model also names its verified artifact file for scoring workers (scoreBatch's
 * scoringWorkers), which then need only one session worker here.
 */
export async function openModel(o: { registry: Client<typeof RegistryService>; ref: string; cacheDir: string; workers: number; batchRows: number; logger: Logger }): Promise<OpenedModel> {
  const loader = new ModelLoader({
    registry: o.registry,
    cacheDir: o.cacheDir,
    maxLoadedVersions: 1,
    // Each chunk is already a batch: no dynamic batching, every idle worker takes one.
    settings: () => ({ enabled: false, maxBatchSize: o.batchRows, maxQueueDelayUs: 0, inlineMaxUs: 0, workers: o.workers, intraOpThreads: 1, maxRowsPerRequest: o.batchRows, allowNonFinite: false }),
    observer: () => ({ onBatch() {}, onExpired() {} }),
    logger: o.logger,
    latestTtlMs: 0,
  });
  try {
    const v = await loader.acquire(o.ref);
    return {
      version: v,
      model: {
        name: v.name,
        version: v.version,
        inputs: v.inputs,
        outputs: v.outputs,
        binding: v.binding,
        run: async (feeds, rows) => (await v.pool.run(feeds, rows, Date.now() + CHUNK_DEADLINE_MS)).outputs,
        // Scoring workers open their own sessions of the loader's verified artifact.
        artifactPath: v.artifactPath,
      },
      close: () => loader.close(),
    };
  } catch (err) {
    await loader.close();
    throw err;
  }
}

function numberOfValue(v: Value | undefined): number | string {
  switch (v?.kind.case) {
    case "doubleValue":
    case "floatValue":
      return v.kind.value;
    case "int64Value":
      return Number(v.kind.value);
    case "boolValue":
      return v.kind.value ? 1 : 0;
    case "stringValue": {
      const n = Number(v.kind.value);
      return v.kind.value.trim() !== "" && Number.isFinite(n) ? n : `feature value ${JSON.stringify(v.kind.value)} is not a number`;
    }
    default:
      return "feature value is not a scalar number";
  }
}

/** The model's bound features, fetched point-in-time per (entity, as-of) row. */
export function historicalFeatures(features: Client<typeof FeatureService>, model: BatchModel, entityColumn: string): FeatureFetch {
  const refs = [...new Set(model.binding?.inputs.flatMap((i) => i.features) ?? [])];
  if (refs.length === 0) throw new ValidationError("entity_col", `model ${model.name}@${model.version} has no feature binding, so there is nothing to fetch; put the features in the file`);
  const keyName = model.binding?.entityKeys[0] ?? entityColumn;
  return {
    refs,
    async fetch(entities, asOf) {
      const out: Array<Array<number | string>> = entities.map(() => refs.map(() => "feature value missing from the feature service's answer"));
      let order = refs;
      const stream = features.getHistoricalFeatures({
        refs,
        entityRows: entities.map((e, i) => ({ entityKey: { keys: { [keyName]: { kind: { case: "stringValue", value: e } } } }, eventTime: timestampFromDate(asOf[i]!) })),
      });
      for await (const m of stream) {
        if (m.refs.length > 0) order = m.refs;
        for (const row of m.rows) {
          const r = Number(row.rowIndex);
          row.values.forEach((fv, k) => {
            const at = refs.indexOf(order[k]!);
            if (at < 0 || !out[r]) return;
            out[r]![at] =
              fv.status === FeatureStatus.PRESENT
                ? numberOfValue(fv.value)
                : `${order[k]} is ${FeatureStatus[fv.status] ?? fv.status} for ${keyName}=${JSON.stringify(entities[r])} as of ${asOf[r]!.toISOString()}`;
          });
        }
      }
      return out;
    },
  };
}
