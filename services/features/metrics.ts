// The feature service's own Prometheus series (mlmesh_features_*), registered on the
// service's registry next to the RPC series: freshness per view, ingest volume and lag,
// online read latency of the store and values served by status.

import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { LATENCY_BUCKETS_SECONDS } from "../../lib/metrics.js";
import type { OnlineCacheStats } from "./online-cache.js";
import type { ValueStatus } from "./types.js";

export interface FeatureMetrics {
  readonly ingestRows: Counter<"view" | "source">;
  readonly ingestLag: Histogram<"view">;
  readonly onlineValues: Counter<"view" | "status">;
  readonly onlineReadDuration: Histogram<"store">;
  readonly historicalRows: Counter<"view">;
  readonly materializedRows: Counter<"view">;
  /** Streaming ingest messages by outcome (written, duplicate, rejected). */
  readonly streamMessages: Counter<"outcome">;
  /** Consume time minus publish time (EventMeta.occurred_at) of streamed messages. */
  readonly streamLag: Histogram;
  /** Newest event time (ms) per view, the basis of the freshness gauge. */
  readonly newest: Map<string, number>;
  noteWrite(view: string, newestEventTime: number): void;
  forgetView(view: string): void;
}

export const STATUSES: readonly ValueStatus[] = ["present", "not_found", "expired", "null"];

export function createFeatureMetrics(registry: Registry, clock: () => number): FeatureMetrics {
  const newest = new Map<string, number>();
  const freshness = new Gauge({
    name: "mlmesh_features_freshness_seconds",
    help: "Age of the newest value per feature view: now minus the newest event time written.",
    labelNames: ["view"] as const,
    registers: [registry],
    collect() {
      // Computed at scrape time, so the age keeps growing while nothing is written.
      this.reset();
      const now = clock();
      for (const [view, t] of newest) this.set({ view }, Math.max(0, (now - t) / 1000));
    },
  });
  void freshness;
  const onlineValues = new Counter({
    name: "mlmesh_features_online_values_total",
    help: "Values returned by GetOnlineFeatures, by view and status (present = hit; not_found, expired, null = miss).",
    labelNames: ["view", "status"] as const,
    registers: [registry],
  });
  return {
    ingestRows: new Counter({
      name: "mlmesh_features_ingest_rows_total",
      help: "Rows committed to the offline store, by view and source (write, ingest).",
      labelNames: ["view", "source"] as const,
      registers: [registry],
    }),
    ingestLag: new Histogram({
      name: "mlmesh_features_ingest_lag_seconds",
      help: "Write time minus the newest event time of each write call.",
      labelNames: ["view"] as const,
      buckets: [0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400],
      registers: [registry],
    }),
    onlineValues,
    onlineReadDuration: new Histogram({
      name: "mlmesh_features_online_read_duration_seconds",
      help: "Online store lookup and decode time of one GetOnlineFeatures call (the in-process part of its latency).",
      labelNames: ["store"] as const,
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers: [registry],
    }),
    historicalRows: new Counter({
      name: "mlmesh_features_historical_rows_total",
      help: "Entity rows joined by GetHistoricalFeatures, by view.",
      labelNames: ["view"] as const,
      registers: [registry],
    }),
    materializedRows: new Counter({
      name: "mlmesh_features_materialized_rows_total",
      help: "Online rows changed by materialization jobs (offline -> online), by view.",
      labelNames: ["view"] as const,
      registers: [registry],
    }),
    streamMessages: new Counter({
      name: "mlmesh_features_stream_messages_total",
      help: "FeatureRowsIngested messages consumed from NATS, by outcome: written, duplicate (event id seen), rejected (dead-lettered).",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    streamLag: new Histogram({
      name: "mlmesh_features_stream_lag_seconds",
      help: "Time from publishing a FeatureRowsIngested message (meta.occurred_at) to its commit by the feature service.",
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 3600],
      registers: [registry],
    }),
    newest,
    noteWrite(view, t) {
      if (!(newest.get(view)! >= t)) newest.set(view, t);
    },
    forgetView(view) {
      newest.delete(view);
    },
  };
}

/**
 * The SQLite online store's read cache (online-cache.ts): its plain counters are read at
 * scrape time, so a read pays nothing for them.
 */
export function registerOnlineCacheMetrics(registry: Registry, stats: OnlineCacheStats): void {
  new Counter({
    name: "mlmesh_features_online_cache_lookups_total",
    help: "Entity lookups of the SQLite online store by result: hit (served from its read cache) or miss (read from SQLite).",
    labelNames: ["result"] as const,
    registers: [registry],
    collect() {
      // The cache's totals are the counter's values: set, not added.
      this.reset();
      this.inc({ result: "hit" }, stats.hits);
      this.inc({ result: "miss" }, stats.misses);
    },
  });
  new Counter({
    name: "mlmesh_features_online_cache_flushes_total",
    help: "Times the online read cache was emptied because another connection (process) wrote the features database.",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(stats.flushes);
    },
  });
  new Gauge({
    name: "mlmesh_features_online_cache_entries",
    help: "Entities (of any view, found or not) held by the online read cache.",
    registers: [registry],
    collect() {
      this.set(stats.entries);
    },
  });
  new Gauge({
    name: "mlmesh_features_online_cache_bytes",
    help: "Estimated memory held by the online read cache; bounded by MLMESH_FEATURES_ONLINE_CACHE_MB.",
    registers: [registry],
    collect() {
      this.set(stats.bytes);
    },
  });
}
