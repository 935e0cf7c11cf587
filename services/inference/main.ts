// Builds the inference service's real dependencies (registry client, model loader with its
// artifact cache and session workers, batching engine, AliasMoved consumer for hot swaps,
// metrics, prediction log) and starts it. Drift and batch jobs land later in issue #4.

import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { GRPCInferenceService } from "../../gen/inference/grpc_service_pb.js";
import { FeatureViewAppliedSchema } from "../../gen/mlmesh/events/v1/features_events_pb.js";
import { AliasMovedSchema } from "../../gen/mlmesh/events/v1/registry_events_pb.js";
import type { Secret } from "../../lib/config-security.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { DomainError, UnavailableError } from "../../lib/errors.js";
import type { Subscription } from "../../lib/events.js";
import { createMeshClients } from "../../lib/mesh-clients.js";
import { createRpcMetrics } from "../../lib/metrics.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { hostService } from "../../lib/service-host.js";
import { STREAMS } from "../../lib/streams.js";
import { InferenceEngine } from "./engine.js";
import { ModelLoader, type BatchingSettings } from "./loader.js";
import { createInferenceMetrics } from "./metrics.js";
import { createPredictionLogMetrics, PredictionLog, type PredictionLogOptions } from "./prediction-log.js";
import { createOipModelService, oipModelRestRoutes } from "./oip-models.js";
import { createOipServerService, oipRestRoutes } from "./oip.js";
import { startBatchJobs, type BatchJobs } from "./batch/index.js";
import { startMonitoring, type Monitoring } from "./monitoring/index.js";
import { PiiTags } from "./pii.js";
import { createInferenceService } from "./service.js";

/** Inference settings; the CLI would fill them from MLMESH_INFERENCE_* (defaults below). */
export interface InferenceOptions {
  /** MLMESH_INFERENCE_WORKERS: session workers per model version (default: cores / intra-op threads). */
  readonly workers?: number;
  /** MLMESH_INFERENCE_INTRA_OP_THREADS: ONNX Runtime threads per session (default 1). */
  readonly intraOpThreads?: number;
  /** MLMESH_INFERENCE_BATCHING: dynamic batching on by default (true). */
  readonly batching?: boolean;
  /** MLMESH_INFERENCE_MAX_BATCH_SIZE: rows per run (default 64). */
  readonly maxBatchSize?: number;
  /** MLMESH_INFERENCE_MAX_QUEUE_DELAY_US: wait for others to join while a worker idles (default 0: batch only what queued behind busy workers). */
  readonly maxQueueDelayUs?: number;
  /** MLMESH_INFERENCE_INLINE_MAX_US: small models run small requests on this thread (default 50; 0 = never). */
  readonly inlineMaxUs?: number;
  /** MLMESH_INFERENCE_MAX_ROWS_PER_REQUEST (default 10000). */
  readonly maxRowsPerRequest?: number;
  /** MLMESH_INFERENCE_ALLOW_NON_FINITE: pass NaN/Inf to models (default false: INVALID_ARGUMENT). */
  readonly allowNonFinite?: boolean;
  /** MLMESH_INFERENCE_MAX_LOADED_VERSIONS: least-recently-used versions past this are unloaded (default 8). */
  readonly maxLoadedVersions?: number;
  /** MLMESH_INFERENCE_PRELOAD: refs loaded and warmed before the service reports ready. */
  readonly preload?: readonly string[];
  /** Cores the thread budget is checked against (default os.availableParallelism()). */
  readonly cores?: number;
  /** Prediction log batching, spool timing and PII columns (defaults in prediction-log.ts). */
  readonly predictionLog?: PredictionLogOptions;
  /** MLMESH_INFERENCE_PII_SALT: HMAC key for PII inputs in the prediction log (default: random, kept in the data dir). */
  readonly piiSalt?: Secret;
}

/**
 * The HMAC key for PII in the prediction log: the configured one, else a random one created
 * once and kept in the data dir (0600), so hashes stay joinable across restarts.
 */
async function piiSalt(dataDir: string, configured: Secret | undefined): Promise<string> {
  if (configured) return configured.reveal();
  const file = path.join(dataDir, "inference", "pii-salt");
  await fs.mkdir(path.dirname(file), { recursive: true });
  try {
    await fs.writeFile(file, randomBytes(32).toString("hex"), { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  return (await fs.readFile(file, "utf8")).trim();
}

export async function startInference(rt: Runtime, options: InferenceOptions = {}): Promise<ServiceHandle> {
  const logger = rt.logger.child({ component: "inference" });
  await rt.bus.ensureStream(STREAMS.inference);
  await rt.bus.ensureStream(STREAMS.registry);
  await rt.bus.ensureStream(STREAMS.features);
  const cores = options.cores ?? os.availableParallelism();
  const intraOpThreads = options.intraOpThreads ?? 1;
  const defaults: BatchingSettings = {
    enabled: options.batching ?? true,
    maxBatchSize: options.maxBatchSize ?? 64,
    maxQueueDelayUs: options.maxQueueDelayUs ?? 0,
    inlineMaxUs: options.inlineMaxUs ?? 50,
    workers: options.workers ?? Math.max(1, Math.floor(cores / intraOpThreads)),
    intraOpThreads,
    maxRowsPerRequest: options.maxRowsPerRequest ?? 10_000,
    allowNonFinite: options.allowNonFinite ?? false,
  };
  if (defaults.workers * defaults.intraOpThreads > cores) {
    throw new Error(`MLMESH_INFERENCE_WORKERS x MLMESH_INFERENCE_INTRA_OP_THREADS = ${defaults.workers * defaults.intraOpThreads} exceeds the ${cores} cores`);
  }
  const rpcMetrics = createRpcMetrics();
  const metrics = createInferenceMetrics(rpcMetrics.registry);
  const engine = new InferenceEngine(defaults, metrics, cores);
  const clients = createMeshClients(rt.config);
  const piiTags = new PiiTags({
    logger,
    fetchView: async (name) => {
      try {
        return (await clients.features.getFeatureView({ name }, { timeoutMs: 2_000 })).view;
      } catch (err) {
        if (ConnectError.from(err).code === Code.NotFound) return undefined;
        throw err;
      }
    },
  });
  const loader = new ModelLoader({
    // The PII tags of the bound features are read before the version serves (2 s at most; unread = masked).
    prepare: (binding) => piiTags.prefetch(binding),
    registry: clients.registry,
    cacheDir: path.join(rt.config.dataDir, "inference", "cache"),
    maxLoadedVersions: options.maxLoadedVersions ?? 8,
    settings: (m) => engine.settings(m),
    observer: (m, v) => engine.observer(m, v),
    logger,
    latestTtlMs: 5_000,
  });
  engine.loader = loader;
  // Opened before anything is served, so a spool left by the last run replays first.
  const predictionLog = await PredictionLog.open({
    bus: rt.bus,
    dataDir: rt.config.dataDir,
    metrics: createPredictionLogMetrics(rpcMetrics.registry),
    logger,
    options: { ...options.predictionLog, piiSalt: options.predictionLog?.piiSalt ?? (await piiSalt(rt.config.dataDir, options.piiSalt)) },
    pii: piiTags,
  });

  let ready = false;
  const isReady = () => ready;
  let aliasSub: Subscription | undefined;
  let viewSub: Subscription | undefined;
  let monitoring: Monitoring | undefined;
  let batchJobs: BatchJobs | undefined;
  try {
    // Monitoring (drift, quality) and batch jobs live in their own folders; they add methods.
    monitoring = await startMonitoring({ rt, logger, metricsRegistry: rpcMetrics.registry, loader });
    batchJobs = await startBatchJobs({ rt, logger, metricsRegistry: rpcMetrics.registry, loader, engine });
    // One durable consumer per replica (data dir + port), so a restart resumes where it was.
    const replica = createHash("sha256").update(`${path.resolve(rt.config.dataDir)}|${rt.config.ports.inference.grpc}`).digest("hex").slice(0, 12);
    aliasSub = await rt.bus.subscribe({
      stream: STREAMS.registry.name,
      durable: `inference_alias_${replica}`,
      filterSubject: "mlmesh.registry.alias_moved.>",
      schema: AliasMovedSchema,
      deliverNewOnly: true,
      handler: async (e) => {
        try {
          await loader.aliasMoved(e.message.modelName, e.message.alias, Number(e.message.version));
        } catch (err) {
          // Retry what may pass (registry down); a version that cannot load keeps the old one serving.
          if (err instanceof UnavailableError || !(err instanceof DomainError)) throw err;
          logger.error({ err, model: e.message.modelName, version: Number(e.message.version) }, "inference: alias moved to a version that cannot be served; keeping the previous one");
        }
      },
    });
    // A view newly tagged PII is masked from the next record on.
    viewSub = await rt.bus.subscribe({
      stream: STREAMS.features.name,
      durable: `inference_pii_${replica}`,
      filterSubject: "mlmesh.features.feature_view_applied.>",
      schema: FeatureViewAppliedSchema,
      deliverNewOnly: true,
      handler: async (e) => {
        if (e.message.view) piiTags.viewApplied(e.message.view);
      },
    });
    for (const ref of options.preload ?? []) await loader.acquire(ref);
  } catch (err) {
    await viewSub?.stop();
    await aliasSub?.stop();
    await batchJobs?.close();
    await monitoring?.close();
    await predictionLog.close();
    await loader.close();
    throw err;
  }
  ready = true;

  const handle = await hostService(rt, {
    name: "inference",
    logger,
    metrics: rpcMetrics,
    readiness: isReady,
    services: [
      {
        service: InferenceService,
        impl: {
          ...createInferenceService({ loader, engine, predictionLog }),
          ...monitoring.handlers,
          ...batchJobs.handlers,
        },
        pendingNote: "not served by this build",
      },
      {
        service: GRPCInferenceService,
        impl: { ...createOipServerService({ isReady }), ...createOipModelService({ loader, engine, predictionLog }) },
      },
    ],
    httpRoutes: [
      oipRestRoutes({ isReady }),
      oipModelRestRoutes({ loader, engine, predictionLog, maxBodyBytes: rt.config.maxMessageBytes, maxDeadlineMs: rt.config.maxDeadlineMs }),
    ],
    close: async () => {
      await viewSub?.stop();
      await aliasSub?.stop();
      await batchJobs?.close();
      await monitoring?.close();
      // Bounded flush; what NATS does not ack in time stays spooled for the next start.
      await predictionLog.close(Math.min(3000, rt.config.shutdownGraceMs));
      await loader.close();
    },
  });
  return {
    ...handle,
    stop: async () => {
      ready = false;
      await handle.stop();
    },
  };
}
