// MLMESH_INFERENCE_* variables: session workers, batching, validation policy, loaded versions.

import { ConfigError, readBool, readInt, readList, type Env } from "./config-read.js";
import { Secret } from "./config-security.js";

export interface InferenceConfig {
  /** Session workers per model version; undefined = cores / intra-op threads. */
  readonly workers: number | undefined;
  readonly intraOpThreads: number;
  readonly batching: boolean;
  readonly maxBatchSize: number;
  readonly maxQueueDelayUs: number;
  /** Versions whose runs average at most this (µs) run small requests on the service's thread; 0 = never. */
  readonly inlineMaxUs: number;
  readonly maxRowsPerRequest: number;
  readonly allowNonFinite: boolean;
  readonly maxLoadedVersions: number;
  /** Model refs loaded and warmed before the service reports ready. */
  readonly preload: readonly string[];
  /** HMAC key for PII inputs in the prediction log; undefined = a random one kept in the data dir. */
  readonly piiSalt: Secret | undefined;
}

export function readInferenceConfig(env: Env): InferenceConfig {
  const workersRaw = env.MLMESH_INFERENCE_WORKERS;
  return Object.freeze({
    workers: workersRaw === undefined || workersRaw === "" ? undefined : readInt(env, "MLMESH_INFERENCE_WORKERS", 1, 1, 256),
    intraOpThreads: readInt(env, "MLMESH_INFERENCE_INTRA_OP_THREADS", 1, 1, 256),
    batching: readBool(env, "MLMESH_INFERENCE_BATCHING", true),
    maxBatchSize: readInt(env, "MLMESH_INFERENCE_MAX_BATCH_SIZE", 64, 1, 65536),
    maxQueueDelayUs: readInt(env, "MLMESH_INFERENCE_MAX_QUEUE_DELAY_US", 0, 0, 10_000_000),
    inlineMaxUs: readInt(env, "MLMESH_INFERENCE_INLINE_MAX_US", 50, 0, 10_000),
    maxRowsPerRequest: readInt(env, "MLMESH_INFERENCE_MAX_ROWS_PER_REQUEST", 10_000, 1, 10_000_000),
    allowNonFinite: readBool(env, "MLMESH_INFERENCE_ALLOW_NON_FINITE", false),
    maxLoadedVersions: readInt(env, "MLMESH_INFERENCE_MAX_LOADED_VERSIONS", 8, 1, 1024),
    preload: readList(env, "MLMESH_INFERENCE_PRELOAD", /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}(@[A-Za-z0-9_.-]+)?$/, "comma-separated model refs (name or name@ref)"),
    piiSalt: readSalt(env),
  });
}

function readSalt(env: Env): Secret | undefined {
  const raw = env.MLMESH_INFERENCE_PII_SALT;
  if (raw === undefined || raw === "") return undefined;
  // A short key makes the hashes of low-entropy values (ages, postcodes) easy to brute-force.
  // The message names the length only: the value is a secret.
  if (raw.length < 16) throw new ConfigError("MLMESH_INFERENCE_PII_SALT", "at least 16 characters", `(${raw.length} characters)`);
  return new Secret(raw);
}

export const INFERENCE_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: "MLMESH_INFERENCE_WORKERS", default: "cores / intra-op threads", meaning: "ONNX Runtime session workers per model version" },
  { name: "MLMESH_INFERENCE_INTRA_OP_THREADS", default: "1", meaning: "ONNX Runtime threads per session" },
  { name: "MLMESH_INFERENCE_BATCHING", default: "true", meaning: "dynamic batching by default" },
  { name: "MLMESH_INFERENCE_MAX_BATCH_SIZE", default: "64", meaning: "rows per batched run" },
  { name: "MLMESH_INFERENCE_MAX_QUEUE_DELAY_US", default: "0", meaning: "how long a request waits for others to join its batch" },
  { name: "MLMESH_INFERENCE_INLINE_MAX_US", default: "50", meaning: "models whose median run (timed at load) takes at most this many µs score requests of up to 16 rows on the service's own thread, without the worker round trip, unless batching waits (a max queue delay); 0 = always on workers" },
  { name: "MLMESH_INFERENCE_MAX_ROWS_PER_REQUEST", default: "10000", meaning: "rows accepted in one Score call" },
  { name: "MLMESH_INFERENCE_ALLOW_NON_FINITE", default: "false", meaning: "pass NaN/Inf inputs to models instead of refusing them" },
  { name: "MLMESH_INFERENCE_MAX_LOADED_VERSIONS", default: "8", meaning: "LRU bound on loaded model versions" },
  { name: "MLMESH_INFERENCE_PRELOAD", default: "(none)", meaning: "model refs loaded before the service is ready" },
  { name: "MLMESH_INFERENCE_PII_SALT", default: "random, kept in <data dir>/inference/pii-salt", meaning: "HMAC key (>= 16 chars) for PII-tagged inputs in the prediction log" },
];
