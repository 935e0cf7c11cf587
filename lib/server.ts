// The one way a service starts. Given its handlers it serves gRPC over h2c on one port
// (lib/h2-grpc-server.ts on node:http2 by default — about half grpc-js's cost per call in
// bench:rpc; @grpc/grpc-js through lib/grpc-server.ts stays selectable) and, on a second port,
// Connect (JSON or binary) and gRPC-Web over HTTP/1.1 (connect-node) plus /metrics,
// /healthz and /readyz. Both run the same handler maps through the same observer, so an RPC
// behaves the same whichever protocol reached it. SIGTERM handling lives in the caller
// (process.ts); this module owns the drain.
//
// With TLS material both ports speak TLS with the same certificate: the gRPC port requires a
// client certificate signed by the CA at the handshake (mTLS); the HTTP port asks for one and
// refuses RPCs (Connect, gRPC-Web, OIP REST) without a valid one, but leaves /healthz,
// /readyz, /metrics and the OIP liveness routes open, because kubelet probes and Prometheus
// scrapes present no client certificate.

import http from "node:http";
import https from "node:https";
import type { AddressInfo, Server as NetServer } from "node:net";
import type { TLSSocket } from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { context } from "@opentelemetry/api";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { createHealthService, HealthState, ServingStatus } from "./health.js";
import type { Logger } from "./logger.js";
import { createRpcMetrics, renderMetrics, type RpcMetrics } from "./metrics.js";
import { bindGrpcServer, createGrpcJsServer } from "./grpc-server.js";
import { createH2GrpcServer } from "./h2-grpc-server.js";
import { createConnectUnaryJson } from "./connect-unary.js";
import { registerLocalServices } from "./local-calls.js";
import { createCallObserver, createObserveInterceptor } from "./rpc-observe.js";
import type { CallGuard } from "./auth/guard.js";
import { restRouteMethod } from "./auth/method-roles.js";
import { withPrincipal, type Principal } from "./principal.js";
import { grpcServerCredentials, type TlsMaterial } from "./tls.js";
import { ensureContextManager } from "./telemetry.js";

/** One gRPC service with its handlers; methods missing from `impl` answer UNIMPLEMENTED. */
export interface ServiceRegistration {
  readonly service: DescService;
  // The handler map of the service; `any` because a list mixes different services.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly impl: Partial<ServiceImpl<any>>;
  /** Why the missing methods are missing, e.g. "lands with issue #7". */
  readonly pendingNote?: string;
}

/** A ServiceRegistration with the handlers type-checked against the service. */
export function serviceRegistration<T extends DescService>(
  service: T,
  impl: Partial<ServiceImpl<T>>,
  pendingNote?: string,
): ServiceRegistration {
  return { service, impl, pendingNote };
}

/** An extra plain-HTTP route on the HTTP port (the OIP REST routes, for example). Returns false to pass. */
export type HttpRoute = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

export interface ServerOptions {
  /** Short name used in logs: "registry", "router", ... */
  readonly name: string;
  readonly host: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly services: readonly ServiceRegistration[];
  readonly logger: Logger;
  readonly maxMessageBytes: number;
  readonly maxDeadlineMs: number;
  readonly shutdownGraceMs: number;
  /** Extra readiness condition (stores open, models loaded, ...). Default: always ready. */
  readonly readiness?: () => boolean;
  readonly httpRoutes?: readonly HttpRoute[];
  /** Metrics registry the service's own series are registered on; created if absent. */
  readonly metrics?: RpcMetrics;
  /** CA, certificate and key: serve TLS on both ports and require client certificates. */
  readonly tls?: TlsMaterial;
  /** Authentication, method roles and rate limit (lib/auth/guard.ts); absent: none. */
  readonly guard?: CallGuard;
  /**
   * What serves the gRPC port: "node-http2" (lib/h2-grpc-server.ts, gRPC on node:http2
   * directly) or "grpc-js" (lib/grpc-server.ts). Default: DEFAULT_GRPC_SERVER.
   */
  readonly grpcServer?: GrpcServerImpl;
  /** false: every Connect call goes through connect-node (tests and benchmarks compare the two). */
  readonly connectFastPath?: boolean;
}

export type GrpcServerImpl = "node-http2" | "grpc-js";
export const DEFAULT_GRPC_SERVER: GrpcServerImpl = "node-http2";

export interface RunningServer {
  readonly name: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly grpcUrl: string;
  readonly httpUrl: string;
  readonly health: HealthState;
  readonly metrics: RpcMetrics;
  /** Stop accepting, drain in-flight calls (bounded by the grace period), close. */
  shutdown(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  ensureContextManager();
  const metrics = opts.metrics ?? createRpcMetrics();
  const health = new HealthState();
  const shutdownController = new AbortController();
  let inFlight = 0;
  let draining = false;
  let drained: (() => void) | undefined;

  const observe = createCallObserver({
    logger: opts.logger,
    metrics,
    maxDeadlineMs: opts.maxDeadlineMs,
    guard: opts.guard,
    onStart: () => void inFlight++,
    onEnd: () => {
      inFlight--;
      if (draining && inFlight === 0) drained?.();
    },
  });

  const bindings = [
    { service: Health as DescService, impl: createHealthService(health) as unknown as Record<string, never> },
    ...opts.services.map((reg) => ({ service: reg.service, impl: withUnimplemented(reg) as unknown as Record<string, never> })),
  ];
  const routes = (router: ConnectRouter) => {
    for (const b of bindings) router.service(b.service, b.impl);
  };
  const adapter = connectNodeAdapter({
    routes,
    interceptors: [createObserveInterceptor(observe)],
    readMaxBytes: opts.maxMessageBytes,
    writeMaxBytes: opts.maxMessageBytes,
    shutdownSignal: shutdownController.signal,
    // The gRPC protocol is served by grpc-js on the h2c port; this port speaks Connect and gRPC-Web.
    grpc: false,
    // Reject unknown JSON fields: a typo in a curl body should be an error, not ignored.
    jsonOptions: { ignoreUnknownFields: false },
  });

  // Unary Connect JSON calls skip connect-node's generic handler (lib/connect-unary.ts).
  const connectUnaryJson = opts.connectFastPath === false ? undefined : createConnectUnaryJson({ bindings, observe, maxMessageBytes: opts.maxMessageBytes, shutdownSignal: shutdownController.signal });

  const isReady = () => !draining && (opts.readiness?.() ?? true);

  const secured = opts.tls !== undefined || opts.guard !== undefined;
  const hasRoutes = (opts.httpRoutes?.length ?? 0) > 0;
  const onRequest = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = req.url?.split("?")[0] ?? "/";
    if (req.method === "GET" || req.method === "HEAD") {
      if (path === "/metrics") {
        const { contentType, body } = await renderMetrics(metrics.registry);
        res.writeHead(200, { "content-type": contentType }).end(body);
        return;
      }
      if (path === "/healthz") {
        res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
        return;
      }
      if (path === "/readyz") {
        const ready = isReady();
        res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end(ready ? "ready\n" : "not ready\n");
        return;
      }
    }
    // Without TLS and guard (dev mode) none of this runs: the request goes straight on.
    let principal: Principal | undefined;
    if (secured) {
      const rpcPath = isRpcPath(path);
      const rest = rpcPath ? undefined : restRouteMethod(req.method, path);
      if (opts.tls && !(rest !== undefined && PUBLIC_REST.has(rest)) && !(req.socket as TLSSocket).authorized) {
        const why = (req.socket as TLSSocket).authorizationError;
        refuse(res, rpcPath, new ConnectError(`a client certificate signed by the mesh CA is required${why ? ` (${String(why)})` : ""}`, Code.Unauthenticated));
        return;
      }
      // RPC paths are checked by the observer; the plain-HTTP routes here, against the RPC they stand for.
      if (opts.guard && rest !== undefined && hasRoutes) {
        const slash = rest.indexOf("/");
        try {
          principal = opts.guard(rest.slice(0, slash), rest.slice(slash + 1), { get: (k) => headerValue(req, k) });
        } catch (err) {
          refuse(res, false, err instanceof ConnectError ? err : new ConnectError(String(err), Code.Internal));
          return;
        }
      }
    }
    for (const route of opts.httpRoutes ?? []) {
      const handled = principal ? await context.with(withPrincipal(context.active(), principal), () => route(req, res)) : await route(req, res);
      if (handled) return;
    }
    if (connectUnaryJson?.(req, res)) return;
    adapter(req, res);
  };
  const httpServer: http.Server | https.Server = opts.tls
    ? https.createServer({ ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key, requestCert: true, rejectUnauthorized: false }, onRequest)
    : http.createServer(onRequest);
  httpServer.keepAliveTimeout = 65_000;

  const grpcOpts = { bindings, observe, maxMessageBytes: opts.maxMessageBytes, shutdownSignal: shutdownController.signal };
  let grpcServer: { tryShutdown(done: () => void): void; forceShutdown(): void };
  let grpcPort: number;
  if ((opts.grpcServer ?? DEFAULT_GRPC_SERVER) === "node-http2") {
    const h2 = createH2GrpcServer({ ...grpcOpts, tls: opts.tls });
    grpcPort = await h2.listen(opts.host, opts.grpcPort);
    grpcServer = h2;
  } else {
    const js = createGrpcJsServer(grpcOpts);
    grpcPort = await bindGrpcServer(js, opts.host, opts.grpcPort, opts.tls ? grpcServerCredentials(opts.tls) : undefined);
    grpcServer = js;
  }
  try {
    await listen(httpServer, opts.httpPort, opts.host);
  } catch (err) {
    grpcServer.forceShutdown();
    throw err;
  }
  const httpPort = (httpServer.address() as AddressInfo).port;

  health.set("", ServingStatus.SERVING);
  for (const reg of opts.services) health.set(reg.service.typeName, ServingStatus.SERVING);

  // A wildcard bind is reached on loopback.
  const host = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
  const grpcUrl = `${opts.tls ? "https" : "http"}://${host}:${grpcPort}`;
  const withdrawLocal = registerLocalServices(grpcUrl, bindings, observe, shutdownController.signal);

  const shutdown = async () => {
    if (draining) return;
    draining = true;
    // In-process callers go to the network port from now on, and are refused there like anyone.
    withdrawLocal();
    // Readiness and health go false first, so balancers stop sending new calls.
    health.setAllNotServing();
    health.close();
    const closed = Promise.all([
      // No new calls (GOAWAY); the callback fires once the calls in flight have finished.
      new Promise<void>((r) => grpcServer.tryShutdown(() => r())),
      new Promise<void>((r) => httpServer.close(() => r())),
    ]);
    const idleSweep = setInterval(() => httpServer.closeIdleConnections(), 20);
    httpServer.closeIdleConnections();
    const allDone = inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => (drained = r));
    const grace = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), opts.shutdownGraceMs).unref());
    const outcome = await Promise.race([allDone.then(() => "drained" as const), grace]);
    if (outcome === "timeout") {
      opts.logger.warn({ in_flight: inFlight }, "drain deadline passed; cancelling the calls still running");
    } else {
      // The handlers are done, but their last messages and statuses may still be on their way out.
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    shutdownController.abort(new ConnectError("server is shutting down", Code.Unavailable));
    clearInterval(idleSweep);
    grpcServer.forceShutdown();
    httpServer.closeAllConnections();
    await closed;
  };

  return {
    name: opts.name,
    grpcPort,
    httpPort,
    grpcUrl,
    httpUrl: `${opts.tls ? "https" : "http"}://${host}:${httpPort}`,
    health,
    metrics,
    shutdown,
  };
}

/** OIP REST routes anyone may call (probes), mirroring the public RPCs of the method table. */
const PUBLIC_REST: ReadonlySet<string> = new Set(["inference.GRPCInferenceService/ServerLive", "inference.GRPCInferenceService/ServerReady"]);

/** "/pkg.Service/Method": a Connect or gRPC-Web call, which the observer checks. */
function isRpcPath(path: string): boolean {
  const slash = path.indexOf("/", 1);
  return slash > 0 && path.lastIndexOf(".", slash) > 0 && path.indexOf("/", slash + 1) < 0;
}

function headerValue(req: http.IncomingMessage, key: string): string | undefined {
  const v = req.headers[key];
  return Array.isArray(v) ? v[0] : v;
}

const HTTP_STATUS_OF: Partial<Record<Code, number>> = {
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.InvalidArgument]: 400,
};

/** Answer a refused HTTP request: Connect's error JSON on RPC paths, OIP's {error} elsewhere. */
function refuse(res: http.ServerResponse, rpcPath: boolean, err: ConnectError): void {
  const body = JSON.stringify(rpcPath ? { code: Code[err.code].replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase()), message: err.rawMessage } : { error: err.rawMessage });
  const headers: Record<string, string> = { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) };
  const retry = err.metadata.get("retry-after");
  if (retry) headers["retry-after"] = retry;
  res.writeHead(HTTP_STATUS_OF[err.code] ?? 500, headers).end(body);
}

function listen(server: NetServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

/** Fill the methods a service does not implement yet with an honest UNIMPLEMENTED. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function withUnimplemented(reg: ServiceRegistration): Partial<ServiceImpl<any>> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const impl: Record<string, any> = { ...reg.impl };
  for (const method of reg.service.methods) {
    if (impl[method.localName]) continue;
    const message = `${reg.service.typeName}/${method.name} is not implemented yet${reg.pendingNote ? ` (${reg.pendingNote})` : ""}`;
    const fail = () => {
      throw new ConnectError(message, Code.Unimplemented);
    };
    impl[method.localName] =
      method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming"
        ? // eslint-disable-next-line require-yield
          async function* () {
            fail();
          }
        : fail;
  }
  return impl;
}
