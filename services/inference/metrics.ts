// The inference series Triton exports, per model and version, named mlmesh_inference_*.

import { Counter, Histogram, type Registry } from "prom-client";
import { LATENCY_BUCKETS_SECONDS } from "../../lib/metrics.js";

export interface InferenceMetrics {
  readonly requests: Counter<"model" | "version">;
  readonly rows: Counter<"model" | "version">;
  readonly failures: Counter<"model" | "code">;
  readonly latency: Histogram<"model" | "version">;
  readonly queue: Histogram<"model" | "version">;
  readonly compute: Histogram<"model" | "version">;
  readonly batchSize: Histogram<"model" | "version">;
  readonly expired: Counter<"model" | "version">;
  readonly inline: Counter<"model" | "version">;
}

export function createInferenceMetrics(registry: Registry): InferenceMetrics {
  const labels = ["model", "version"] as const;
  const buckets = [...LATENCY_BUCKETS_SECONDS];
  return {
    requests: new Counter({ name: "mlmesh_inference_requests_total", help: "Scoring requests served (Score and ModelInfer).", labelNames: labels, registers: [registry] }),
    rows: new Counter({ name: "mlmesh_inference_rows_total", help: "Rows scored.", labelNames: labels, registers: [registry] }),
    failures: new Counter({ name: "mlmesh_inference_failures_total", help: "Scoring requests that failed, by gRPC code.", labelNames: ["model", "code"] as const, registers: [registry] }),
    latency: new Histogram({ name: "mlmesh_inference_request_duration_seconds", help: "End-to-end scoring latency inside the service.", labelNames: labels, buckets, registers: [registry] }),
    queue: new Histogram({ name: "mlmesh_inference_queue_duration_seconds", help: "Time a request waited in the batch queue.", labelNames: labels, buckets, registers: [registry] }),
    compute: new Histogram({ name: "mlmesh_inference_compute_duration_seconds", help: "ONNX Runtime run() time of the batch a request ran in.", labelNames: labels, buckets, registers: [registry] }),
    batchSize: new Histogram({ name: "mlmesh_inference_batch_size_rows", help: "Rows per executed batch.", labelNames: labels, buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers: [registry] }),
    expired: new Counter({ name: "mlmesh_inference_queue_expired_total", help: "Requests whose deadline passed while queued (not run).", labelNames: labels, registers: [registry] }),
    inline: new Counter({ name: "mlmesh_inference_inline_runs_total", help: "Requests run on the service's own thread (a small model; MLMESH_INFERENCE_INLINE_MAX_US), not on a session worker.", labelNames: labels, registers: [registry] }),
  };
}
