// Each service, run as its own process the way Kubernetes runs it (`mlmesh serve <svc>`,
// real NATS), answers grpc.health.v1 SERVING to an independent gRPC client, and on SIGTERM
// turns NOT_SERVING, lets the in-flight call finish cleanly and exits 0.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";
import { PredictRequestSchema, PredictResponseSchema, RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { grpcJsClient } from "../support/grpc-js-client.js";
import { isolatedEnv, startMlmesh } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const SERVICES: Record<string, string> = {
  registry: "mlmesh.registry.v1.RegistryService",
  features: "mlmesh.features.v1.FeatureService",
  inference: "mlmesh.inference.v1.InferenceService",
  router: "mlmesh.router.v1.RouterService",
  experiments: "mlmesh.experiments.v1.ExperimentService",
};

describe("service lifecycle (one process per service, real NATS)", () => {
  let nats: TestNats;
  before(async () => {
    nats = await testNats();
  });
  after(async () => nats.stop());

  for (const [service, fullName] of Object.entries(SERVICES)) {
    it(`${service}: SERVING, then a clean drain on SIGTERM with exit 0`, async () => {
      const proc = await startMlmesh(["serve", service], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
      const client = grpcJsClient(Health, proc.endpoint(service).grpc);
      try {
        for (const name of ["", fullName]) {
          const res = await client.unary("Check", HealthCheckRequestSchema, HealthCheckResponseSchema, { service: name });
          assert.equal(res.status, ServingStatus.SERVING, `Check(${JSON.stringify(name)})`);
        }
        await assert.rejects(
          client.unary("Check", HealthCheckRequestSchema, HealthCheckResponseSchema, { service: "no.such.Service" }),
          (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
        );
        if (service === "router") {
          // The request path is live: an endpoint nobody applied is NOT_FOUND, named in the message.
          const unapplied = `never-applied-${Date.now().toString(36)}`;
          const router = grpcJsClient(RouterService, proc.endpoint(service).grpc);
          await assert.rejects(
            // Unique: routers replicate endpoints through the shared NATS stream.
            router.unary("Predict", PredictRequestSchema, PredictResponseSchema, { endpoint: unapplied }),
            (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && e.details.includes(unapplied),
          );
          router.close();
        }

        // An in-flight call: a Watch stream. SIGTERM must not cut it: it sees NOT_SERVING
        // and then ends with status OK, and only then does the process exit 0.
        const watch = client.serverStream("Watch", HealthCheckRequestSchema, HealthCheckResponseSchema, { service: fullName });
        const statuses: ServingStatus[] = [];
        const ended = new Promise<grpc.StatusObject>((resolve) => watch.on("status", resolve));
        watch.on("error", () => undefined);
        let sawServing!: () => void;
        const serving = new Promise<void>((r) => (sawServing = r));
        watch.on("data", (msg: HealthCheckResponse) => {
          statuses.push(msg.status);
          if (msg.status === ServingStatus.SERVING) sawServing();
        });
        await serving;
        const exit = proc.stop("SIGTERM");
        const status = await ended;
        assert.equal(status.code, grpc.status.OK, `watch ended with ${status.code} ${status.details}`);
        assert.deepEqual(statuses, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
        assert.equal(await exit, 0, proc.stderr());
        assert.match(proc.stderr(), /shutdown complete/);
      } finally {
        client.close();
        await proc.stop("SIGKILL");
      }
    });
  }
});
