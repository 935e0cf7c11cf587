// Process configuration: every MLMESH_* variable (and the standard OTEL_* ones we honour)
// is parsed here once, validated, and frozen. No other file reads process.env. Each area
// (inference, features, router, ...) reads its own variables in lib/config-<area>.ts.

import { ConfigError, readBool, readEnum, readHostPort, readInt, readPort, readUrl, type Env } from "./config-read.js";
import { EXPERIMENTS_CONFIG_VARIABLES, readExperimentsConfig, type ExperimentsConfig } from "./config-experiments.js";
import { FEATURES_CONFIG_VARIABLES, readFeaturesConfig, type FeaturesConfig } from "./config-features.js";
import { INFERENCE_CONFIG_VARIABLES, readInferenceConfig, type InferenceConfig } from "./config-inference.js";
import { MONITORING_CONFIG_VARIABLES, readMonitoringConfig, type MonitoringConfig } from "./config-monitoring.js";
import { readRouterConfig, ROUTER_CONFIG_VARIABLES, type RouterConfig } from "./config-router.js";
import { readSecurityConfig, SECURITY_CONFIG_VARIABLES, type SecurityConfig } from "./config-security.js";

export { ConfigError } from "./config-read.js";

export const SERVICE_NAMES = ["registry", "features", "inference", "router", "experiments"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export const DEFAULT_PORTS: Readonly<Record<ServiceName, { grpc: number; http: number }>> = {
  registry: { grpc: 50051, http: 8081 },
  features: { grpc: 50052, http: 8082 },
  inference: { grpc: 50053, http: 8083 },
  router: { grpc: 50054, http: 8084 },
  experiments: { grpc: 50055, http: 8085 },
};

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
export type OtlpProtocol = "http/protobuf" | "http/json";

export interface ServicePorts {
  readonly grpc: number;
  readonly http: number;
}

export interface Config {
  readonly host: string;
  readonly dataDir: string;
  readonly ports: Readonly<Record<ServiceName, ServicePorts>>;
  /** Where each service's gRPC endpoint is, as seen by the other services. */
  readonly endpoints: Readonly<Record<ServiceName, string>>;
  /** NATS server URL(s); undefined means "try the default local server, else in-process". */
  readonly natsUrl: string | undefined;
  /** true when MLMESH_NATS_URL was set: then NATS is required, never silently replaced. */
  readonly natsRequired: boolean;
  readonly logLevel: LogLevel;
  /** Bounded drain on SIGTERM before in-flight calls are cancelled. */
  readonly shutdownGraceMs: number;
  /** Largest message a server accepts or sends. */
  readonly maxMessageBytes: number;
  /** Longest deadline a server honours; a call without a deadline gets this one. */
  readonly maxDeadlineMs: number;
  /** Unary calls to a service hosted by the same process skip the wire (lib/local-calls.ts). */
  readonly localCalls: boolean;
  readonly inference: InferenceConfig;
  readonly features: FeaturesConfig;
  readonly router: RouterConfig;
  readonly experiments: ExperimentsConfig;
  readonly monitoring: MonitoringConfig;
  readonly security: SecurityConfig;
  readonly otel: {
    readonly endpoint: string | undefined;
    readonly protocol: OtlpProtocol;
    readonly serviceNamePrefix: string;
  };
}

/** Parse and validate the environment. Throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env): Config {
  const host = env.MLMESH_HOST?.trim() || "127.0.0.1";
  if (!/^[A-Za-z0-9.\-:]+$/.test(host)) throw new ConfigError("MLMESH_HOST", "a host name or IP address", host);
  const dataDir = env.MLMESH_DATA_DIR?.trim() || "./.mlmesh";
  if (dataDir.includes("\0")) throw new ConfigError("MLMESH_DATA_DIR", "a directory path", dataDir);

  const ports = {} as Record<ServiceName, ServicePorts>;
  const endpoints = {} as Record<ServiceName, string>;
  for (const svc of SERVICE_NAMES) {
    const up = svc.toUpperCase();
    const grpc = readPort(env, `MLMESH_${up}_GRPC_PORT`, DEFAULT_PORTS[svc].grpc);
    const http = readPort(env, `MLMESH_${up}_HTTP_PORT`, DEFAULT_PORTS[svc].http);
    ports[svc] = Object.freeze({ grpc, http });
    const connectHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
    endpoints[svc] = readHostPort(env, `MLMESH_${up}_ADDR`, `http://${connectHost}:${grpc}`);
  }

  const natsUrl = readUrl(env, "MLMESH_NATS_URL", ["nats:", "tls:", "ws:", "wss:"]);
  const logLevel = readEnum<LogLevel>(
    env,
    "MLMESH_LOG_LEVEL",
    ["trace", "debug", "info", "warn", "error", "fatal", "silent"],
    "info",
  );
  const shutdownGraceMs = readInt(env, "MLMESH_SHUTDOWN_GRACE_MS", 10_000, 0, 600_000);
  const maxMessageBytes = readInt(env, "MLMESH_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024);
  const maxDeadlineMs = readInt(env, "MLMESH_MAX_DEADLINE_MS", 300_000, 1, 3_600_000);
  const localCalls = readBool(env, "MLMESH_LOCAL_CALLS", true);

  const otelEndpoint = readUrl(env, "OTEL_EXPORTER_OTLP_ENDPOINT", ["http:", "https:"]);
  const otelProtocol = readEnum<OtlpProtocol>(
    env,
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    ["http/protobuf", "http/json"],
    "http/protobuf",
  );

  return Object.freeze({
    host,
    dataDir,
    ports: Object.freeze(ports),
    endpoints: Object.freeze(endpoints),
    natsUrl,
    natsRequired: natsUrl !== undefined,
    logLevel,
    shutdownGraceMs,
    maxMessageBytes,
    maxDeadlineMs,
    localCalls,
    inference: readInferenceConfig(env),
    features: readFeaturesConfig(env),
    router: readRouterConfig(env),
    experiments: readExperimentsConfig(env),
    monitoring: readMonitoringConfig(env),
    security: readSecurityConfig(env),
    otel: Object.freeze({
      endpoint: otelEndpoint,
      protocol: otelProtocol,
      serviceNamePrefix: env.OTEL_SERVICE_NAME?.trim() || "mlmesh",
    }),
  });
}

/** The variables loadConfig reads, for the README's table and `mlmesh config`. */
export const CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: "MLMESH_HOST", default: "127.0.0.1", meaning: "address the servers bind to" },
  { name: "MLMESH_DATA_DIR", default: "./.mlmesh", meaning: "SQLite files and artifacts" },
  { name: "MLMESH_<SERVICE>_GRPC_PORT", default: "5005x", meaning: "gRPC (h2c) port of a service" },
  { name: "MLMESH_<SERVICE>_HTTP_PORT", default: "808x", meaning: "Connect JSON, /metrics, /healthz, /readyz port" },
  { name: "MLMESH_<SERVICE>_ADDR", default: "http://127.0.0.1:<grpc port>", meaning: "where other services reach it" },
  { name: "MLMESH_NATS_URL", default: "(unset)", meaning: "NATS server(s); unset: local NATS if reachable, else in-process bus" },
  { name: "MLMESH_LOG_LEVEL", default: "info", meaning: "trace, debug, info, warn, error, fatal, silent" },
  { name: "MLMESH_SHUTDOWN_GRACE_MS", default: "10000", meaning: "drain time for in-flight calls on SIGTERM" },
  { name: "MLMESH_MAX_MESSAGE_BYTES", default: "16777216", meaning: "largest request or response message" },
  { name: "MLMESH_MAX_DEADLINE_MS", default: "300000", meaning: "deadline given to calls that carry none" },
  { name: "MLMESH_LOCAL_CALLS", default: "on", meaning: "services in one process (`mlmesh up`) call each other in-process, skipping the wire" },
  ...INFERENCE_CONFIG_VARIABLES,
  ...FEATURES_CONFIG_VARIABLES,
  ...ROUTER_CONFIG_VARIABLES,
  ...EXPERIMENTS_CONFIG_VARIABLES,
  ...MONITORING_CONFIG_VARIABLES,
  ...SECURITY_CONFIG_VARIABLES,
  { name: "OTEL_EXPORTER_OTLP_ENDPOINT", default: "(unset)", meaning: "OTLP/HTTP collector; unset: no export" },
  { name: "OTEL_EXPORTER_OTLP_PROTOCOL", default: "http/protobuf", meaning: "http/protobuf or http/json" },
];
