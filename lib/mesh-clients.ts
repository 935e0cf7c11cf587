// Typed clients for the five mesh services (and the OIP endpoint of inference), built from
// the configured addresses. Each call carries the caller's remaining deadline and trace
// context (lib/clients.ts); connections are HTTP/2 and shared per service. TLS and bearer
// credentials come from the security configuration (MLMESH_TLS_*, MLMESH_TOKEN,
// MLMESH_AUTH_SERVICE_TOKEN), so the CLI and every service get them without asking.

import type { Client } from "@connectrpc/connect";
import { GRPCInferenceService } from "../gen/inference/grpc_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ExperimentService } from "../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { FeatureService } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { InferenceService } from "../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RouterService } from "../gen/mlmesh/router/v1/router_service_pb.js";
import { createServiceClient, type ClientAuth, type ClientOptions } from "./clients.js";
import type { Config, ServiceName } from "./config.js";
import { loadTls } from "./tls.js";

export interface MeshClients {
  readonly registry: Client<typeof RegistryService>;
  readonly features: Client<typeof FeatureService>;
  readonly inference: Client<typeof InferenceService>;
  readonly oip: Client<typeof GRPCInferenceService>;
  readonly router: Client<typeof RouterService>;
  readonly experiments: Client<typeof ExperimentService>;
  health(service: ServiceName): Client<typeof Health>;
}

export function createMeshClients(config: Config, opts: ClientOptions = {}): MeshClients {
  const { security } = config;
  const auth: ClientAuth | undefined =
    security.clientToken || security.auth.serviceToken
      ? {
          client: security.clientToken ? `Bearer ${security.clientToken.reveal()}` : undefined,
          service: security.auth.serviceToken ? `Bearer ${security.auth.serviceToken.reveal()}` : undefined,
        }
      : undefined;
  const o: ClientOptions = {
    maxMessageBytes: config.maxMessageBytes,
    tls: security.tls ? loadTls(security.tls) : undefined,
    auth,
    ...opts,
  };
  const e = config.endpoints;
  const healths = new Map<ServiceName, Client<typeof Health>>();
  return {
    registry: createServiceClient(RegistryService, e.registry, o),
    features: createServiceClient(FeatureService, e.features, o),
    inference: createServiceClient(InferenceService, e.inference, o),
    oip: createServiceClient(GRPCInferenceService, e.inference, o),
    router: createServiceClient(RouterService, e.router, o),
    experiments: createServiceClient(ExperimentService, e.experiments, o),
    health(service) {
      let c = healths.get(service);
      if (!c) {
        c = createServiceClient(Health, e[service], o);
        healths.set(service, c);
      }
      return c;
    },
  };
}
