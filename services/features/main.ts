// Builds the feature service's real dependencies (SQLite definitions and offline store,
// the SQLite or Redis online store, outbox relay, metrics) and starts it.

import { createHash } from "node:crypto";
import Database from "better-sqlite3";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { openSqlite } from "../../lib/db.js";
import type { Logger } from "../../lib/logger.js";
import { createRpcMetrics } from "../../lib/metrics.js";
import { Outbox } from "../../lib/outbox.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { serviceRegistration } from "../../lib/server.js";
import { hostService } from "../../lib/service-host.js";
import { STREAMS } from "../../lib/streams.js";
import { BulkIngestor } from "./bulk-ingest.js";
import { FeatureWriter } from "./ingest.js";
import { Materializer } from "./materialize.js";
import { createFeatureMetrics, registerOnlineCacheMetrics } from "./metrics.js";
import { OfflineStore } from "./offline-store.js";
import { SqliteOnlineStore, type OnlineStore } from "./online-store.js";
import { HistoricalReader, OnlineReader, ReadPlanner } from "./reads.js";
import { RedisOnlineStore } from "./redis-online-store.js";
import * as schema from "./schema.js";
import { createFeatureService } from "./service.js";
import { DefinitionStore } from "./store.js";
import { StreamIngestor } from "./stream-ingest.js";
import type { Subscription } from "../../lib/events.js";
import { startCheckpointWorker, type CheckpointWorker } from "../../lib/wal-checkpoint.js";
import { WriteGate } from "./write-gate.js";
import { TransformRegistry, type TransformSpec } from "./transforms.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");


/** Feature-service settings; the CLI fills them from MLMESH_FEATURES_* / MLMESH_REDIS_URL. */
export interface FeaturesOptions {
  /** MLMESH_FEATURES_ONLINE_STORE: "sqlite" (default) or "redis". */
  readonly onlineStore?: "sqlite" | "redis";
  /** MLMESH_REDIS_URL: required when onlineStore is "redis". */
  readonly redisUrl?: string;
  /** MLMESH_FEATURES_REDIS_PREFIX: key prefix in Redis (default "mlmesh:features:"). */
  readonly redisKeyPrefix?: string;
  /** MLMESH_FEATURES_MAX_FUTURE_SKEW_MS: how far in the future an event time may be (default 5 min). */
  readonly maxFutureSkewMs?: number;
  /** MLMESH_FEATURES_MAX_ROWS_PER_WRITE (default 100000). */
  readonly maxRowsPerWrite?: number;
  /** MLMESH_FEATURES_MAX_ENTITIES_PER_READ (default 10000). */
  readonly maxEntitiesPerRead?: number;
  /** MLMESH_FEATURES_MAX_HISTORICAL_ROWS (default 1000000). */
  readonly maxHistoricalRows?: number;
  /** User-defined on-demand transforms, registered next to the built-ins. */
  readonly transforms?: readonly TransformSpec[];
  /** MLMESH_FEATURES_STREAM_INGEST: consume FeatureRowsIngested from NATS (default: rt.config.features). */
  readonly streamIngest?: boolean;
  /** MLMESH_FEATURES_INGEST_SUBJECT_PREFIX: subjects `<prefix>.<view>` (default: rt.config.features). */
  readonly ingestSubjectPrefix?: string;
  /** MLMESH_FEATURES_ONLINE_CACHE_MB: read cache of the SQLite online store, MiB; 0: off (default: rt.config.features, else 64). */
  readonly onlineCacheMb?: number;
  /** Time source (tests pass a fixed clock). */
  readonly clock?: () => number;
}

export async function startFeatures(rt: Runtime, options: FeaturesOptions = {}): Promise<ServiceHandle> {
  const logger = rt.logger.child({ component: "features" });
  const clock = options.clock ?? Date.now;
  await rt.bus.ensureStream(STREAMS.features);
  let online: OnlineStore | undefined;
  let materializer: Materializer | undefined;
  let streamSub: Subscription | undefined;
  const handle = openSqlite({ dataDir: rt.config.dataDir, file: "features.db", schema, migrationsFolder: MIGRATIONS });
  // Reads of online and offline rows use their own read-only connection: a large upload
  // commits in one transaction spread over several ticks, and readers must not see it
  // half-done (WAL gives this connection the last committed state).
  let reader: Database.Database | undefined;
  let checkpoints: CheckpointWorker | undefined;
  try {
    reader = new Database(handle.path, { readonly: true, fileMustExist: true });
    reader.pragma("busy_timeout = 5000");
    checkpoints = await startCheckpointWorker(handle.sqlite, logger);
    const gate = new WriteGate();
    if (options.onlineStore === "redis") {
      if (!options.redisUrl) throw new Error("the Redis online store needs MLMESH_REDIS_URL");
      online = await RedisOnlineStore.connect(options.redisUrl, options.redisKeyPrefix ?? "mlmesh:features:");
    }
    const rpcMetrics = createRpcMetrics();
    let cacheMb = 0;
    if (!online) {
      // Redis is written by every replica, so only the SQLite store (this process's file) is cached.
      cacheMb = options.onlineCacheMb ?? rt.config.features?.onlineCacheMb ?? 64;
      const sqliteStore = new SqliteOnlineStore(handle.sqlite, reader, { cacheBytes: cacheMb * 1024 * 1024 });
      if (sqliteStore.cacheStats) registerOnlineCacheMetrics(rpcMetrics.registry, sqliteStore.cacheStats);
      online = sqliteStore;
    }
    logger.info({ online_store: online.kind, online_cache_mb: cacheMb }, "features: online store ready");
    const metrics = createFeatureMetrics(rpcMetrics.registry, clock);
    const outbox = new Outbox(handle.sqlite, rt.bus, logger, "features");
    const transforms = new TransformRegistry(options.transforms);
    const offline = new OfflineStore(handle.sqlite, reader);
    const defs = new DefinitionStore(handle.sqlite, outbox, transforms, offline, online, clock);
    for (const name of defs.viewNames()) {
      const newest = offline.newestEventTime(name);
      if (newest !== undefined) metrics.noteWrite(name, newest);
    }
    const writerOptions = {
      maxFutureSkewMs: options.maxFutureSkewMs ?? 5 * 60_000,
      maxRowsPerWrite: options.maxRowsPerWrite ?? 100_000,
    };
    const writer = new FeatureWriter(handle.sqlite, defs, offline, online, defs.audit, metrics, writerOptions, clock, gate);
    const ingestor = new BulkIngestor(handle.sqlite, defs, online, defs.audit, metrics, writer, writerOptions, clock, gate);
    materializer = new Materializer(handle.sqlite, defs, online, outbox, metrics, logger, clock, gate);
    const limits = { maxEntitiesPerRead: options.maxEntitiesPerRead ?? 10_000, maxHistoricalRows: options.maxHistoricalRows ?? 1_000_000 };
    const impl = createFeatureService({
      defs,
      transforms,
      writer,
      ingestor,
      planner: new ReadPlanner(defs, transforms),
      onlineReader: new OnlineReader(online, metrics, limits),
      historicalReader: new HistoricalReader(offline, metrics, limits),
      offline,
      online,
      metrics,
      materializer,
      gate,
      clock,
    });
    outbox.start();
    materializer.resume();
    const streamIngest = options.streamIngest ?? rt.config.features?.streamIngest ?? true;
    if (streamIngest) {
      const prefix = options.ingestSubjectPrefix ?? rt.config.features?.ingestSubjectPrefix ?? "mlmesh.features.ingest";
      // One durable consumer per replica (data dir + port): a restart resumes after its last ack.
      const replica = createHash("sha256").update(`${path.resolve(rt.config.dataDir)}|${rt.config.ports.features.grpc}|${prefix}`).digest("hex").slice(0, 12);
      const streamer = new StreamIngestor(handle.sqlite, writer, outbox, metrics, logger, prefix, clock, gate);
      streamSub = await streamer.subscribe(rt.bus, `features_ingest_${replica}`);
      logger.info({ subjects: `${prefix}.<view>` }, "features: consuming streaming ingest");
    }
    const store = online;
    const readOnly = reader;
    const ckpt = checkpoints;
    const jobs = materializer;
    const sub = streamSub;
    return await hostService(rt, {
      name: "features",
      logger,
      metrics: rpcMetrics,
      services: [serviceRegistration(FeatureService, impl)],
      close: async () => {
        await sub?.stop();
        await jobs.stop();
        await outbox.stop();
        await store.close();
        await ckpt?.stop();
        readOnly.close();
        handle.close();
      },
    });
  } catch (err) {
    await streamSub?.stop();
    await materializer?.stop();
    await online?.close();
    await checkpoints?.stop();
    reader?.close();
    handle.close();
    throw err;
  }
}
