// The JetStream streams of the mesh: one per producing service, named MLMESH_<SERVICE>,
// capturing `mlmesh.<service>.>`. Each service ensures the streams it publishes to or
// consumes from at start (idempotent), so start order does not matter.

import type { ServiceName } from "./config.js";
import type { StreamSpec } from "./events.js";

export const STREAMS: Readonly<Record<ServiceName, StreamSpec>> = {
  registry: { name: "MLMESH_REGISTRY", subjects: ["mlmesh.registry.>"] },
  features: { name: "MLMESH_FEATURES", subjects: ["mlmesh.features.>"] },
  // Prediction logs are high volume; a week is enough for drift windows and label joins.
  inference: { name: "MLMESH_INFERENCE", subjects: ["mlmesh.inference.>"], maxAgeMs: 7 * 24 * 3600 * 1000 },
  router: { name: "MLMESH_ROUTER", subjects: ["mlmesh.router.>"] },
  experiments: { name: "MLMESH_EXPERIMENTS", subjects: ["mlmesh.experiments.>"] },
};

/**
 * Stream scoring's inputs and results (router): data, not state, so apart from the router's
 * replication stream (which keeps every endpoint and plan) and kept for a week.
 */
export const SCORING_STREAM: StreamSpec = { name: "MLMESH_SCORING", subjects: ["mlmesh.scoring.>"], maxAgeMs: 7 * 24 * 3600 * 1000 };
