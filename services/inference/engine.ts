// The inference domain behind both APIs (Score and OIP ModelInfer): per-model batching
// settings, running feeds through a loaded version's batcher, and the per-model metrics.

import { Code } from "@connectrpc/connect";
import { codeName, DomainError, ValidationError } from "../../lib/errors.js";
import type { BatchingSettings, LoadedVersion, ModelLoader } from "./loader.js";
import type { InferenceMetrics } from "./metrics.js";
import type { RunResult } from "./session-pool.js";
import type { DenseTensor } from "./tensors.js";
import { CounterChild, HistogramChild } from "../../lib/metric-children.js";

/** The per-version metric series, resolved once (prom-client hashes the labels on every call otherwise). */
/** A version's request series, bound once (lib/metric-children.ts). */
interface VersionSeries {
  readonly requests: CounterChild;
  readonly rows: CounterChild;
  readonly queue: HistogramChild;
  readonly compute: HistogramChild;
  readonly latency: HistogramChild;
}

export class InferenceEngine {
  private readonly perModel = new Map<string, BatchingSettings>();
  private readonly series = new WeakMap<LoadedVersion, VersionSeries>();
  loader!: ModelLoader;

  constructor(
    readonly defaults: BatchingSettings,
    private readonly metrics: InferenceMetrics,
    private readonly maxThreads: number,
  ) {}

  settings(model: string): BatchingSettings {
    return this.perModel.get(model) ?? this.defaults;
  }

  /** Applies at once to new requests; workers and threads apply from the next load of a version. */
  setSettings(model: string, s: Partial<BatchingSettings>): BatchingSettings {
    const merged = { ...this.settings(model), ...Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined)) } as BatchingSettings;
    if (merged.maxBatchSize < 1) throw new ValidationError("batching.max_batch_size", "must be at least 1");
    if (merged.maxQueueDelayUs < 0) throw new ValidationError("batching.max_queue_delay_us", "must not be negative");
    if (merged.workers < 1 || merged.intraOpThreads < 1) throw new ValidationError("batching.workers", "workers and intra_op_threads must be at least 1");
    if (merged.workers * merged.intraOpThreads > this.maxThreads) {
      throw new ValidationError("batching.workers", `workers x intra_op_threads = ${merged.workers * merged.intraOpThreads} exceeds the ${this.maxThreads} cores of this machine`);
    }
    if (merged.maxRowsPerRequest < 1) throw new ValidationError("batching.max_rows_per_request", "must be at least 1");
    this.perModel.set(model, merged);
    return merged;
  }

  /** Runs one request's feeds on `v` and records its metrics; `deadline` is epoch ms. Feeds' buffers may be lent to the worker (see SessionPool.run). */
  async run(
    v: LoadedVersion,
    build: (v: LoadedVersion, limits: { maxRows: number; allowNonFinite: boolean }) => { feeds: Record<string, DenseTensor>; rows: number },
    deadline: number,
    outputNames?: readonly string[],
  ): Promise<RunResult & { rows: number }> {
    const started = process.hrtime.bigint();
    try {
      const s = this.settings(v.name);
      const { feeds, rows } = build(v, { maxRows: s.maxRowsPerRequest, allowNonFinite: s.allowNonFinite });
      if (outputNames) for (const n of outputNames) if (!v.outputs.some((o) => o.name === n)) {
        throw new ValidationError("outputs", `unknown output "${n}"; the model's outputs are ${v.outputs.map((o) => o.name).join(", ")}`);
      }
      const r = await v.pool.run(feeds, rows, deadline, outputNames && outputNames.length > 0 ? outputNames : undefined);
      const m = this.seriesOf(v);
      m.requests.inc();
      m.rows.inc(rows);
      m.queue.observe(r.queueUs / 1e6);
      m.compute.observe(r.computeUs / 1e6);
      m.latency.observe(Number(process.hrtime.bigint() - started) / 1e9);
      return { ...r, rows };
    } catch (err) {
      this.failed(v.name, err);
      throw err;
    }
  }

  private seriesOf(v: LoadedVersion): VersionSeries {
    let m = this.series.get(v);
    if (!m) {
      const labels = { model: v.name, version: String(v.version) };
      m = {
        requests: new CounterChild(this.metrics.requests, labels),
        rows: new CounterChild(this.metrics.rows, labels),
        queue: new HistogramChild(this.metrics.queue, labels),
        compute: new HistogramChild(this.metrics.compute, labels),
        latency: new HistogramChild(this.metrics.latency, labels),
      };
      this.series.set(v, m);
    }
    return m;
  }

  failed(model: string, err: unknown): void {
    const code = err instanceof DomainError ? err.code : Code.Internal;
    this.metrics.failures.inc({ model, code: codeName(code) });
  }

  observer(model: string, version: number) {
    const batchSize = this.metrics.batchSize.labels(model, String(version));
    const expired = this.metrics.expired.labels(model, String(version));
    const inline = this.metrics.inline.labels(model, String(version));
    return {
      onBatch: (rows: number) => batchSize.observe(rows),
      onExpired: () => expired.inc(),
      onInline: () => inline.inc(),
    };
  }
}
