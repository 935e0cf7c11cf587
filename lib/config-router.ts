// MLMESH_ROUTER_* variables: default latency budget, rollout controller tick and minimum
// interval, shadow mirroring limits, caches. (Owned by the router work; add fields here.)

import { readDurationMs, readInt, readList, type Env } from "./config-read.js";

export interface RouterConfig {
  /** Total budget of a request when its endpoint sets none. */
  readonly defaultBudgetMs: number;
  /** How often the rollout controller looks for rollouts whose interval ended. */
  readonly rolloutTickMs: number;
  /** Smallest rollout interval a StartRollout may ask for (tests use ~1 s). */
  readonly minRolloutIntervalMs: number;
  /** Shadow scorings in flight per router; more are dropped (and counted). */
  readonly maxShadowInFlight: number;
  /** Deadline of one shadow scoring call (it never delays the caller). */
  readonly shadowTimeoutMs: number;
  /** How long resolved model refs are trusted without an alias event (safety net for missed events). */
  readonly refRefreshMs: number;
  /** Exposures are sent to experiments in batches at most this far apart. */
  readonly exposureFlushMs: number;
  /** Endpoints whose `mlmesh.scoring.in.<endpoint>` events this router scores (`*`: all). */
  readonly streamEndpoints: readonly string[];
  /** Redelivery delay of a stream scoring input whose result was not acked (a crashed replica). */
  readonly streamAckWaitMs: number;
}

export function readRouterConfig(env: Env): RouterConfig {
  return Object.freeze({
    defaultBudgetMs: readDurationMs(env, "MLMESH_ROUTER_DEFAULT_BUDGET_MS", 500, 1, 600_000),
    rolloutTickMs: readDurationMs(env, "MLMESH_ROUTER_ROLLOUT_TICK", 500, 50, 600_000),
    minRolloutIntervalMs: readDurationMs(env, "MLMESH_ROUTER_MIN_ROLLOUT_INTERVAL", 1000, 100, 86_400_000),
    maxShadowInFlight: readInt(env, "MLMESH_ROUTER_MAX_SHADOW_IN_FLIGHT", 64, 1, 100_000),
    shadowTimeoutMs: readDurationMs(env, "MLMESH_ROUTER_SHADOW_TIMEOUT", 1000, 1, 600_000),
    refRefreshMs: readDurationMs(env, "MLMESH_ROUTER_REF_REFRESH", 30_000, 100, 86_400_000),
    exposureFlushMs: readDurationMs(env, "MLMESH_ROUTER_EXPOSURE_FLUSH", 1000, 10, 600_000),
    streamEndpoints: readList(env, "MLMESH_ROUTER_STREAM_ENDPOINTS", /^(\*|[a-z][a-z0-9_-]{0,62})$/, "endpoint names (or *)"),
    // Below the stream's 2-minute dedup window, so a re-scored input's result is still dropped as a duplicate.
    streamAckWaitMs: readDurationMs(env, "MLMESH_ROUTER_STREAM_ACK_WAIT", 30_000, 1000, 60_000),
  });
}

export const ROUTER_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: "MLMESH_ROUTER_DEFAULT_BUDGET_MS", default: "500", meaning: "total latency budget of an endpoint that sets none (ms, or 200ms/1s)" },
  { name: "MLMESH_ROUTER_ROLLOUT_TICK", default: "500ms", meaning: "how often the rollout controller checks for ended intervals" },
  { name: "MLMESH_ROUTER_MIN_ROLLOUT_INTERVAL", default: "1s", meaning: "smallest rollout --interval accepted" },
  { name: "MLMESH_ROUTER_MAX_SHADOW_IN_FLIGHT", default: "64", meaning: "shadow scorings in flight; more are dropped and counted" },
  { name: "MLMESH_ROUTER_SHADOW_TIMEOUT", default: "1s", meaning: "deadline of one shadow scoring (the caller never waits on it)" },
  { name: "MLMESH_ROUTER_REF_REFRESH", default: "30s", meaning: "re-resolve cached model refs this often, besides alias events" },
  { name: "MLMESH_ROUTER_EXPOSURE_FLUSH", default: "1s", meaning: "longest delay before buffered experiment exposures are published" },
  { name: "MLMESH_ROUTER_STREAM_ENDPOINTS", default: "(none)", meaning: "comma-separated endpoints (or *) scored from mlmesh.scoring.in.<endpoint> to mlmesh.scoring.out.<endpoint>" },
  { name: "MLMESH_ROUTER_STREAM_ACK_WAIT", default: "30s", meaning: "redelivery delay of a stream scoring input left unacked (1s..60s, under the 2 min dedup window)" },
];
