// Starts the router. Predict, Rank, serving plans and rollouts land with issue #7; until then
// every RouterService method answers UNIMPLEMENTED, and health, metrics and readiness are live.

import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { hostService } from "../../lib/service-host.js";
import { STREAMS } from "../../lib/streams.js";

export async function startRouter(rt: Runtime): Promise<ServiceHandle> {
  await rt.bus.ensureStream(STREAMS.router);
  return hostService(rt, {
    name: "router",
    logger: rt.logger.child({ component: "router" }),
    services: [{ service: RouterService, impl: {}, pendingNote: "lands with issue #7" }],
  });
}
