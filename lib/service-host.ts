// Starts one mesh service's server on its configured ports with the runtime's logger and
// limits, and its security (mTLS material, the auth/rate-limit guard) from config.security,
// and wraps it as a ServiceHandle whose stop() drains the server before closing the
// service's own resources.

import type { ServiceName } from "./config.js";
import type { Runtime, ServiceHandle } from "./runtime.js";
import { startServer, type HttpRoute, type ServiceRegistration } from "./server.js";
import type { RpcMetrics } from "./metrics.js";
import type { Logger } from "./logger.js";
import { createCallGuard } from "./auth/guard.js";
import { loadTls } from "./tls.js";

/** Once per process: `mlmesh up` hosts five services and one warning says it. */
let warnedAboutAuth = false;

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
  const { security } = config;
  if (security.auth.mode === "on" && !security.auth.serviceToken && !warnedAboutAuth) {
    warnedAboutAuth = true;
    opts.logger.warn(
      { auth: "on" },
      "MLMESH_AUTH_SERVICE_TOKEN is not set: calls between services forward the caller's token, and calls made outside a request (background work) carry none and will be refused",
    );
  }
  if (security.auth.mode === "off" && !warnedAboutAuth) {
    warnedAboutAuth = true;
    opts.logger.warn(
      { auth: "off" },
      "authentication is OFF (MLMESH_AUTH=off or no credentials configured): every caller is \"anonymous\" with every role; for development only",
    );
  }
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
    tls: security.tls ? loadTls(security.tls) : undefined,
    guard: createCallGuard(security),
  });
  opts.logger.info(
    { grpc: server.grpcUrl, http: server.httpUrl, auth: security.auth.mode, mtls: security.tls !== undefined, rate_limit_rps: security.rateLimit.ratePerSecond },
    `${opts.name} serving`,
  );
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
