// MLMESH_FEATURES_* variables (and the Redis URL the online store uses).

import { ConfigError, readBool, readEnum, readInt, readUrl, type Env } from "./config-read.js";

export interface FeaturesConfig {
  /** Where the online store keeps the latest values: embedded SQLite or a Redis server. */
  readonly onlineStore: "sqlite" | "redis";
  readonly redisUrl: string;
  /** Key prefix in Redis, so several meshes (or test runs) can share one server. */
  readonly redisKeyPrefix: string;
  /** Consume streaming ingest (FeatureRowsIngested) from NATS JetStream. */
  readonly streamIngest: boolean;
  /**
   * Subjects of streaming ingest are `<prefix>.<view>`; the prefix must lie inside the
   * MLMESH_FEATURES stream (`mlmesh.features.`). Tests give each run its own.
   */
  readonly ingestSubjectPrefix: string;
  /**
   * Estimated size (MiB) of the SQLite online store's read cache of online rows; 0 turns
   * it off. The Redis store is never cached (other replicas write it).
   */
  readonly onlineCacheMb: number;
}

export function readFeaturesConfig(env: Env): FeaturesConfig {
  const onlineStore = readEnum<"sqlite" | "redis">(env, "MLMESH_FEATURES_ONLINE_STORE", ["sqlite", "redis"], "sqlite");
  const redisUrl = readUrl(env, "MLMESH_REDIS_URL", ["redis:", "rediss:"]) ?? "redis://127.0.0.1:6379";
  const redisKeyPrefix = env.MLMESH_FEATURES_REDIS_PREFIX?.trim() || "mlmesh:features:";
  if (/\s/.test(redisKeyPrefix) || redisKeyPrefix.length > 200) {
    throw new ConfigError("MLMESH_FEATURES_REDIS_PREFIX", "a key prefix without spaces, at most 200 characters", redisKeyPrefix);
  }
  const streamIngest = readBool(env, "MLMESH_FEATURES_STREAM_INGEST", true);
  const ingestSubjectPrefix = env.MLMESH_FEATURES_INGEST_SUBJECT_PREFIX?.trim() || "mlmesh.features.ingest";
  if (!/^mlmesh\.features(\.[A-Za-z0-9_-]+)+$/.test(ingestSubjectPrefix) || ingestSubjectPrefix.length > 200) {
    throw new ConfigError("MLMESH_FEATURES_INGEST_SUBJECT_PREFIX", "a NATS subject under mlmesh.features. (tokens of A-Z a-z 0-9 _ -), at most 200 characters", ingestSubjectPrefix);
  }
  const onlineCacheMb = readInt(env, "MLMESH_FEATURES_ONLINE_CACHE_MB", 64, 0, 65_536);
  return Object.freeze({ onlineStore, redisUrl, redisKeyPrefix, streamIngest, ingestSubjectPrefix, onlineCacheMb });
}

export const FEATURES_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: "MLMESH_FEATURES_ONLINE_STORE", default: "sqlite", meaning: "online feature store: sqlite or redis" },
  { name: "MLMESH_REDIS_URL", default: "redis://127.0.0.1:6379", meaning: "Redis for the online store when it is redis" },
  { name: "MLMESH_FEATURES_REDIS_PREFIX", default: "mlmesh:features:", meaning: "key prefix of the Redis online store" },
  { name: "MLMESH_FEATURES_STREAM_INGEST", default: "true", meaning: "consume FeatureRowsIngested from NATS JetStream (one subject per view)" },
  { name: "MLMESH_FEATURES_INGEST_SUBJECT_PREFIX", default: "mlmesh.features.ingest", meaning: "streaming ingest subjects are <prefix>.<view>" },
  { name: "MLMESH_FEATURES_ONLINE_CACHE_MB", default: "64", meaning: "read cache of the SQLite online store, estimated MiB (0: off)" },
];
