// Starts the feature service. Its stores and RPCs land with issue #5; until then every
// FeatureService method answers UNIMPLEMENTED, and health, metrics and readiness are live.

import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { hostService } from "../../lib/service-host.js";
import { STREAMS } from "../../lib/streams.js";

export async function startFeatures(rt: Runtime): Promise<ServiceHandle> {
  await rt.bus.ensureStream(STREAMS.features);
  return hostService(rt, {
    name: "features",
    logger: rt.logger.child({ component: "features" }),
    services: [{ service: FeatureService, impl: {}, pendingNote: "lands with issue #5" }],
  });
}
