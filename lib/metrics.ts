// Prometheus metrics. Each service owns a registry for its own series; the default process
// metrics live in one process-wide registry merged into every /metrics answer, so five
// services in one process (`mlmesh up`) never register a metric twice.

import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";

/** Latency buckets in seconds, fine enough below 1 ms to read a sub-millisecond P99. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
  0.5, 1, 2.5, 5, 10, 30,
];

let processRegistry: Registry | undefined;

/** The registry with Node.js process metrics (CPU, memory, event loop lag, GC). */
export function getProcessRegistry(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, eventLoopMonitoringPrecision: 10 });
    // prom-client also exports these gauges under a `_total` name, which the exposition
    // conventions (and `promtool check metrics`) reserve for counters. The same values stay
    // available without the suffix (nodejs_active_handles, ...).
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
      processRegistry.removeSingleMetric(name);
    }
  }
  return processRegistry;
}

export interface RpcMetrics {
  readonly registry: Registry;
  readonly requests: Counter<"service" | "method" | "code">;
  readonly duration: Histogram<"service" | "method" | "code">;
}

/** The per-service registry with the RPC series every service exports. */
export function createRpcMetrics(): RpcMetrics {
  const registry = new Registry();
  const requests = new Counter({
    name: "mlmesh_rpc_server_requests_total",
    help: "RPCs handled, by fully-qualified service, method and gRPC status code.",
    labelNames: ["service", "method", "code"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "mlmesh_rpc_server_duration_seconds",
    help: "Server-side RPC latency from request received to response (or stream) completed.",
    labelNames: ["service", "method", "code"] as const,
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  return { registry, requests, duration };
}

/** The text exposition of a service registry plus the process metrics. */
export async function renderMetrics(serviceRegistry: Registry): Promise<{ contentType: string; body: string }> {
  const merged = Registry.merge([getProcessRegistry(), serviceRegistry]);
  return { contentType: merged.contentType, body: await merged.metrics() };
}
