// Starts the inference service. Model loading, Score, batching and the prediction log land
// with issue #4; until then those methods answer UNIMPLEMENTED. The Open Inference Protocol's
// server-level calls (ServerLive, ServerReady, ServerMetadata) and their REST routes are live.

import { GRPCInferenceService } from "../../gen/inference/grpc_service_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { hostService } from "../../lib/service-host.js";
import { STREAMS } from "../../lib/streams.js";
import { createOipServerService, oipRestRoutes } from "./oip.js";

export async function startInference(rt: Runtime): Promise<ServiceHandle> {
  await rt.bus.ensureStream(STREAMS.inference);
  let ready = true;
  const isReady = () => ready;
  const handle = await hostService(rt, {
    name: "inference",
    logger: rt.logger.child({ component: "inference" }),
    services: [
      { service: InferenceService, impl: {}, pendingNote: "lands with issue #4" },
      { service: GRPCInferenceService, impl: createOipServerService({ isReady }), pendingNote: "model calls land with issue #4" },
    ],
    httpRoutes: [oipRestRoutes({ isReady })],
  });
  return {
    ...handle,
    stop: async () => {
      ready = false;
      await handle.stop();
    },
  };
}
