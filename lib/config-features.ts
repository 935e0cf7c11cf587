// MLMESH_FEATURES_* variables (and the Redis URL the online store uses).

import { ConfigError, readEnum, readUrl, type Env } from "./config-read.js";

export interface FeaturesConfig {
  /** Where the online store keeps the latest values: embedded SQLite or a Redis server. */
  readonly onlineStore: "sqlite" | "redis";
  readonly redisUrl: string;
  /** Key prefix in Redis, so several meshes (or test runs) can share one server. */
  readonly redisKeyPrefix: string;
}

export function readFeaturesConfig(env: Env): FeaturesConfig {
  const onlineStore = readEnum<"sqlite" | "redis">(env, "MLMESH_FEATURES_ONLINE_STORE", ["sqlite", "redis"], "sqlite");
  const redisUrl = readUrl(env, "MLMESH_REDIS_URL", ["redis:", "rediss:"]) ?? "redis://127.0.0.1:6379";
  const redisKeyPrefix = env.MLMESH_FEATURES_REDIS_PREFIX?.trim() || "mlmesh:features:";
  if (/\s/.test(redisKeyPrefix) || redisKeyPrefix.length > 200) {
    throw new ConfigError("MLMESH_FEATURES_REDIS_PREFIX", "a key prefix without spaces, at most 200 characters", redisKeyPrefix);
  }
  return Object.freeze({ onlineStore, redisUrl, redisKeyPrefix });
}

export const FEATURES_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: "MLMESH_FEATURES_ONLINE_STORE", default: "sqlite", meaning: "online feature store: sqlite or redis" },
  { name: "MLMESH_REDIS_URL", default: "redis://127.0.0.1:6379", meaning: "Redis for the online store when it is redis" },
  { name: "MLMESH_FEATURES_REDIS_PREFIX", default: "mlmesh:features:", meaning: "key prefix of the Redis online store" },
];
