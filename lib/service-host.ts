// Starts one mesh service's server on its configured ports with the runtime's logger and
// limits, and wraps it as a ServiceHandle whose stop() drains the server before closing the
// service's own resources.

import type { ServiceName } from "./config.js";
import type { Runtime, ServiceHandle } from "./runtime.js";
import { startServer, type HttpRoute, type ServiceRegistration } from "./server.js";
import type { RpcMetrics } from "./metrics.js";
import type { Logger } from "./logger.js";

export async function hostService(
  rt: Runtime,
  opts: {
    name: ServiceName;
    logger: Logger;
    services: readonly ServiceRegistration[];
    httpRoutes?: readonly HttpRoute[];
    metrics?: RpcMetrics;
    readiness?: () => boolean;
    /** Closes stores, consumers, workers: runs after the server drained. */
    close?: () => Promise<void> | void;
  },
): Promise<ServiceHandle> {
  const { config } = rt;
  const server = await startServer({
    name: opts.name,
    host: config.host,
    grpcPort: config.ports[opts.name].grpc,
    httpPort: config.ports[opts.name].http,
    services: opts.services,
    logger: opts.logger,
    maxMessageBytes: config.maxMessageBytes,
    maxDeadlineMs: config.maxDeadlineMs,
    shutdownGraceMs: config.shutdownGraceMs,
    httpRoutes: opts.httpRoutes,
    metrics: opts.metrics,
    readiness: opts.readiness,
  });
  opts.logger.info({ grpc: server.grpcUrl, http: server.httpUrl }, `${opts.name} serving`);
  return {
    name: opts.name,
    grpcUrl: server.grpcUrl,
    httpUrl: server.httpUrl,
    stop: async () => {
      await server.shutdown();
      await opts.close?.();
    },
  };
}
