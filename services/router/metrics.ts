// The router's Prometheus series (mlmesh_router_*): requests, per-step durations against
// their budget, fallbacks, shadow comparisons, and each rollout gate's threshold and value.

import { Counter, Gauge, Histogram } from "prom-client";
import { createRpcMetrics, LATENCY_BUCKETS_SECONDS, type RpcMetrics } from "../../lib/metrics.js";

export interface RouterMetrics {
  readonly rpc: RpcMetrics;
  readonly requests: Counter<"endpoint" | "method" | "served_by" | "outcome">;
  readonly requestDuration: Histogram<"endpoint" | "method">;
  readonly stepDuration: Histogram<"endpoint" | "step">;
  readonly budgetExceeded: Counter<"endpoint" | "step">;
  readonly fallbacks: Counter<"endpoint" | "kind">;
  readonly shadowRequests: Counter<"endpoint" | "shadow" | "outcome">;
  readonly shadowAgreement: Gauge<"endpoint" | "shadow">;
  readonly shadowAbsDiff: Histogram<"endpoint" | "shadow">;
  readonly gateThreshold: Gauge<"endpoint" | "gate" | "subject">;
  readonly gateValue: Gauge<"endpoint" | "gate" | "subject">;
  readonly rolloutWeight: Gauge<"endpoint">;
  readonly rolloutTransitions: Counter<"endpoint" | "to_state">;
  readonly exposuresDropped: Counter;
}

export function createRouterMetrics(): RouterMetrics {
  const rpc = createRpcMetrics();
  const registers = [rpc.registry];
  return {
    rpc,
    requests: new Counter({ name: "mlmesh_router_requests_total", help: "Predict and Rank requests by endpoint, who served them and outcome (ok, degraded, error).", labelNames: ["endpoint", "method", "served_by", "outcome"] as const, registers }),
    requestDuration: new Histogram({ name: "mlmesh_router_request_duration_seconds", help: "Router time from arrival to response.", labelNames: ["endpoint", "method"] as const, buckets: [...LATENCY_BUCKETS_SECONDS], registers }),
    stepDuration: new Histogram({ name: "mlmesh_router_step_duration_seconds", help: "Time in one request step (candidate_selection, assignment, feature_fetch, scoring, post_processing).", labelNames: ["endpoint", "step"] as const, buckets: [...LATENCY_BUCKETS_SECONDS], registers }),
    budgetExceeded: new Counter({ name: "mlmesh_router_step_budget_exceeded_total", help: "Steps that ran out of their budget slice.", labelNames: ["endpoint", "step"] as const, registers }),
    fallbacks: new Counter({ name: "mlmesh_router_fallbacks_total", help: "Fallbacks taken, by kind.", labelNames: ["endpoint", "kind"] as const, registers }),
    shadowRequests: new Counter({ name: "mlmesh_router_shadow_requests_total", help: "Mirrored requests per shadow by outcome (agree, disagree, error, dropped).", labelNames: ["endpoint", "shadow", "outcome"] as const, registers }),
    shadowAgreement: new Gauge({ name: "mlmesh_router_shadow_agreement_ratio", help: "Fraction of compared mirrored requests where shadow and production agree.", labelNames: ["endpoint", "shadow"] as const, registers }),
    shadowAbsDiff: new Histogram({ name: "mlmesh_router_shadow_score_abs_diff", help: "|shadow score - production score| of mirrored requests.", labelNames: ["endpoint", "shadow"] as const, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1], registers }),
    gateThreshold: new Gauge({ name: "mlmesh_router_rollout_gate_threshold", help: "Configured threshold of a rollout gate.", labelNames: ["endpoint", "gate", "subject"] as const, registers }),
    gateValue: new Gauge({ name: "mlmesh_router_rollout_gate_value", help: "Live value of a rollout gate over the last interval.", labelNames: ["endpoint", "gate", "subject"] as const, registers }),
    rolloutWeight: new Gauge({ name: "mlmesh_router_rollout_canary_weight", help: "Current canary weight of the endpoint's rollout.", labelNames: ["endpoint"] as const, registers }),
    rolloutTransitions: new Counter({ name: "mlmesh_router_rollout_transitions_total", help: "Rollout state transitions.", labelNames: ["endpoint", "to_state"] as const, registers }),
    exposuresDropped: new Counter({ name: "mlmesh_router_exposures_dropped_total", help: "Experiment exposures that could not be published.", registers }),
  };
}
