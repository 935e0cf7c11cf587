// Process configuration: every MLMESH_* variable (and the standard OTEL_* ones we honour)
// is parsed here once, validated, and frozen. No other file reads process.env.

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
  readonly inference: {
    /** Session workers per model version; undefined = cores / intra-op threads. */
    readonly workers: number | undefined;
    readonly intraOpThreads: number;
    readonly batching: boolean;
    readonly maxBatchSize: number;
    readonly maxQueueDelayUs: number;
    readonly maxRowsPerRequest: number;
    readonly allowNonFinite: boolean;
    readonly maxLoadedVersions: number;
    /** Model refs loaded and warmed before the service reports ready. */
    readonly preload: readonly string[];
  };
  readonly features: {
    /** Where the online store keeps the latest values: embedded SQLite or a Redis server. */
    readonly onlineStore: "sqlite" | "redis";
    readonly redisUrl: string;
    /** Key prefix in Redis, so several meshes (or test runs) can share one server. */
    readonly redisKeyPrefix: string;
  };
  readonly otel: {
    readonly endpoint: string | undefined;
    readonly protocol: OtlpProtocol;
    readonly serviceNamePrefix: string;
  };
}

/** Thrown for a bad variable; its message is the one line the process prints before exiting. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    expected: string,
    got: string,
  ) {
    super(`invalid ${variable}=${JSON.stringify(got)}: expected ${expected}`);
    this.name = "ConfigError";
  }
}

type Env = Readonly<Record<string, string | undefined>>;

function readInt(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `an integer in [${min}, ${max}]`, raw);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(name, `an integer in [${min}, ${max}]`, raw);
  return n;
}

function readPort(env: Env, name: string, fallback: number): number {
  // 0 asks the OS for a free port (tests use it).
  return readInt(env, name, fallback, 0, 65535);
}

function readBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  throw new ConfigError(name, "true or false", raw);
}

function readList(env: Env, name: string, item: RegExp, expected: string): readonly string[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return Object.freeze([]);
  const items = raw.split(",").map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!item.test(i)) throw new ConfigError(name, expected, raw);
  return Object.freeze(items);
}

function readEnum<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = raw.trim().toLowerCase() as T;
  if (!allowed.includes(v)) throw new ConfigError(name, `one of ${allowed.join(", ")}`, raw);
  return v;
}

function readUrl(env: Env, name: string, schemes: readonly string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  for (const part of raw.split(",")) {
    let url: URL;
    try {
      url = new URL(part.trim());
    } catch {
      throw new ConfigError(name, `a URL (${schemes.map((s) => `${s}//host:port`).join(" or ")})`, raw);
    }
    if (!schemes.includes(url.protocol)) {
      throw new ConfigError(name, `a URL with scheme ${schemes.join(" or ")}`, raw);
    }
  }
  return raw.trim();
}

function readHostPort(env: Env, name: string, fallback: string): string {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = raw.trim();
  if (!/^(https?:\/\/)?[A-Za-z0-9.\-[\]:]+:\d{1,5}$/.test(v)) {
    throw new ConfigError(name, "host:port or http://host:port", raw);
  }
  return v.startsWith("http") ? v : `http://${v}`;
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

  const workersRaw = env.MLMESH_INFERENCE_WORKERS;
  const inference = Object.freeze({
    workers: workersRaw === undefined || workersRaw === "" ? undefined : readInt(env, "MLMESH_INFERENCE_WORKERS", 1, 1, 256),
    intraOpThreads: readInt(env, "MLMESH_INFERENCE_INTRA_OP_THREADS", 1, 1, 256),
    batching: readBool(env, "MLMESH_INFERENCE_BATCHING", true),
    maxBatchSize: readInt(env, "MLMESH_INFERENCE_MAX_BATCH_SIZE", 64, 1, 65536),
    maxQueueDelayUs: readInt(env, "MLMESH_INFERENCE_MAX_QUEUE_DELAY_US", 0, 0, 10_000_000),
    maxRowsPerRequest: readInt(env, "MLMESH_INFERENCE_MAX_ROWS_PER_REQUEST", 10_000, 1, 10_000_000),
    allowNonFinite: readBool(env, "MLMESH_INFERENCE_ALLOW_NON_FINITE", false),
    maxLoadedVersions: readInt(env, "MLMESH_INFERENCE_MAX_LOADED_VERSIONS", 8, 1, 1024),
    preload: readList(env, "MLMESH_INFERENCE_PRELOAD", /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}(@[A-Za-z0-9_.-]+)?$/, "comma-separated model refs (name or name@ref)"),
  });

  const onlineStore = readEnum<"sqlite" | "redis">(env, "MLMESH_FEATURES_ONLINE_STORE", ["sqlite", "redis"], "sqlite");
  const redisUrl = readUrl(env, "MLMESH_REDIS_URL", ["redis:", "rediss:"]) ?? "redis://127.0.0.1:6379";
  const redisKeyPrefix = env.MLMESH_FEATURES_REDIS_PREFIX?.trim() || "mlmesh:features:";
  if (/\s/.test(redisKeyPrefix) || redisKeyPrefix.length > 200) {
    throw new ConfigError("MLMESH_FEATURES_REDIS_PREFIX", "a key prefix without spaces, at most 200 characters", redisKeyPrefix);
  }

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
    inference,
    features: Object.freeze({ onlineStore, redisUrl, redisKeyPrefix }),
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
  { name: "MLMESH_INFERENCE_WORKERS", default: "cores / intra-op threads", meaning: "ONNX Runtime session workers per model version" },
  { name: "MLMESH_INFERENCE_INTRA_OP_THREADS", default: "1", meaning: "ONNX Runtime threads per session" },
  { name: "MLMESH_INFERENCE_BATCHING", default: "true", meaning: "dynamic batching by default" },
  { name: "MLMESH_INFERENCE_MAX_BATCH_SIZE", default: "64", meaning: "rows per batched run" },
  { name: "MLMESH_INFERENCE_MAX_QUEUE_DELAY_US", default: "0", meaning: "how long a request waits for others to join its batch" },
  { name: "MLMESH_INFERENCE_MAX_ROWS_PER_REQUEST", default: "10000", meaning: "rows accepted in one Score call" },
  { name: "MLMESH_INFERENCE_ALLOW_NON_FINITE", default: "false", meaning: "pass NaN/Inf inputs to models instead of refusing them" },
  { name: "MLMESH_INFERENCE_MAX_LOADED_VERSIONS", default: "8", meaning: "LRU bound on loaded model versions" },
  { name: "MLMESH_INFERENCE_PRELOAD", default: "(none)", meaning: "model refs loaded before the service is ready" },
  { name: "MLMESH_FEATURES_ONLINE_STORE", default: "sqlite", meaning: "online feature store: sqlite or redis" },
  { name: "MLMESH_REDIS_URL", default: "redis://127.0.0.1:6379", meaning: "Redis for the online store when it is redis" },
  { name: "MLMESH_FEATURES_REDIS_PREFIX", default: "mlmesh:features:", meaning: "key prefix of the Redis online store" },
  { name: "OTEL_EXPORTER_OTLP_ENDPOINT", default: "(unset)", meaning: "OTLP/HTTP collector; unset: no export" },
  { name: "OTEL_EXPORTER_OTLP_PROTOCOL", default: "http/protobuf", meaning: "http/protobuf or http/json" },
];
