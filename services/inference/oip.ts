// Server-level Open Inference Protocol v2 (KServe/Triton): liveness, readiness and server
// metadata over gRPC (`inference.GRPCInferenceService`) and REST (`/v2/health/*`, `/v2`).
// Model-level calls (ModelReady, ModelMetadata, ModelInfer) arrive with model serving.

import type http from "node:http";
import type { ServiceImpl } from "@connectrpc/connect";
import type { GRPCInferenceService } from "../../gen/inference/grpc_service_pb.js";
import type { HttpRoute } from "../../lib/server.js";
import { MLMESH_VERSION } from "../../lib/version.js";

export const OIP_SERVER_NAME = "mlmesh";
/** Protocol extensions we implement; none of the optional ones yet. */
export const OIP_EXTENSIONS: readonly string[] = [];

export function createOipServerService(deps: { isReady: () => boolean }): Partial<ServiceImpl<typeof GRPCInferenceService>> {
  return {
    serverLive: () => ({ live: true }),
    serverReady: () => ({ ready: deps.isReady() }),
    serverMetadata: () => ({ name: OIP_SERVER_NAME, version: MLMESH_VERSION, extensions: [...OIP_EXTENSIONS] }),
  };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

/** The REST side of the same calls, as KServe's v2 REST protocol defines them. */
export function oipRestRoutes(deps: { isReady: () => boolean }): HttpRoute {
  return (req, res) => {
    if (req.method !== "GET") return false;
    const path = req.url?.split("?")[0];
    switch (path) {
      case "/v2/health/live":
        sendJson(res, 200, { live: true });
        return true;
      case "/v2/health/ready": {
        const ready = deps.isReady();
        sendJson(res, ready ? 200 : 503, { ready });
        return true;
      }
      case "/v2":
        sendJson(res, 200, { name: OIP_SERVER_NAME, version: MLMESH_VERSION, extensions: OIP_EXTENSIONS });
        return true;
      default:
        return false;
    }
  };
}
