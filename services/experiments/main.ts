// Starts the experiment service. Definitions, assignment and analysis land with issue #6;
// until then every ExperimentService method answers UNIMPLEMENTED, and health, metrics and
// readiness are live.

import { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { hostService } from "../../lib/service-host.js";
import { STREAMS } from "../../lib/streams.js";

export async function startExperiments(rt: Runtime): Promise<ServiceHandle> {
  await rt.bus.ensureStream(STREAMS.experiments);
  return hostService(rt, {
    name: "experiments",
    logger: rt.logger.child({ component: "experiments" }),
    services: [{ service: ExperimentService, impl: {}, pendingNote: "lands with issue #6" }],
  });
}
