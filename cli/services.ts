// The five services by name, for `mlmesh up` and `mlmesh serve`. Imported lazily so a
// process serving one service loads only that service's code.

import type { ServiceName } from "../lib/config.js";
import type { Runtime, ServiceHandle } from "../lib/runtime.js";

export const SERVICE_STARTERS: Readonly<Record<ServiceName, (rt: Runtime) => Promise<ServiceHandle>>> = {
  registry: async (rt) => (await import("../services/registry/main.js")).startRegistry(rt),
  features: async (rt) =>
    (await import("../services/features/main.js")).startFeatures(rt, {
      onlineStore: rt.config.features.onlineStore,
      redisUrl: rt.config.features.redisUrl,
      redisKeyPrefix: rt.config.features.redisKeyPrefix,
    }),
  inference: async (rt) => (await import("../services/inference/main.js")).startInference(rt, rt.config.inference),
  router: async (rt) => (await import("../services/router/main.js")).startRouter(rt),
  experiments: async (rt) => (await import("../services/experiments/main.js")).startExperiments(rt),
};
