// The inference domain behind both APIs (Score and OIP ModelInfer): per-model batching
// settings, running feeds through a loaded version's batcher, and the per-model metrics.

import { Code } from "@connectrpc/connect";
import { codeName, DomainError, ValidationError } from "../../lib/errors.js";
import type { BatchingSettings, LoadedVersion, ModelLoader } from "./loader.js";
import type { InferenceMetrics } from "./metrics.js";
import type { RunResult } from "./session-pool.js";
import type { DenseTensor } from "./tensors.js";

export class InferenceEngine {
  private readonly perModel = new Map<string, BatchingSettings>();
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

  /** Runs one request's feeds on `v` and records its metrics; `deadline` is epoch ms. */
  async run(
    v: LoadedVersion,
    build: (v: LoadedVersion, limits: { maxRows: number; allowNonFinite: boolean }) => { feeds: Record<string, DenseTensor>; rows: number },
    deadline: number,
    outputNames?: readonly string[],
  ): Promise<RunResult & { rows: number }> {
    const started = process.hrtime.bigint();
    const labels = { model: v.name, version: String(v.version) };
    try {
      const s = this.settings(v.name);
      const { feeds, rows } = build(v, { maxRows: s.maxRowsPerRequest, allowNonFinite: s.allowNonFinite });
      if (outputNames) for (const n of outputNames) if (!v.outputs.some((o) => o.name === n)) {
        throw new ValidationError("outputs", `unknown output "${n}"; the model's outputs are ${v.outputs.map((o) => o.name).join(", ")}`);
      }
      const r = await v.pool.run(feeds, rows, deadline, outputNames && outputNames.length > 0 ? outputNames : undefined);
      this.metrics.requests.inc(labels);
      this.metrics.rows.inc(labels, rows);
      this.metrics.queue.observe(labels, r.queueUs / 1e6);
      this.metrics.compute.observe(labels, r.computeUs / 1e6);
      this.metrics.latency.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
      return { ...r, rows };
    } catch (err) {
      this.failed(v.name, err);
      throw err;
    }
  }

  failed(model: string, err: unknown): void {
    const code = err instanceof DomainError ? err.code : Code.Internal;
    this.metrics.failures.inc({ model, code: codeName(code) });
  }

  observer(model: string, version: number) {
    const labels = { model, version: String(version) };
    return {
      onBatch: (rows: number) => this.metrics.batchSize.observe(labels, rows),
      onExpired: () => this.metrics.expired.inc(labels),
    };
  }
}
