// The feature service with its online store on a real Redis (MLMESH_REDIS_URL or
// redis://127.0.0.1:6379, keys under a prefix unique to this run), reached over gRPC: the
// same statuses and late-event rule as on SQLite, with TTL checked against a test clock.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { FeatureStatus } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { loadConfig } from "../../lib/config.js";
import { JetStreamBus } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { startFeatures } from "../../services/features/main.js";
import { testNats, type TestNats } from "../support/nats.js";

const REDIS_URL = process.env.MLMESH_REDIS_URL ?? "redis://127.0.0.1:6379";
const HOUR = 3_600_000;
const i64 = (v: number) => ({ kind: { case: "int64Value" as const, value: BigInt(v) } });
const f64 = (v: number) => ({ kind: { case: "doubleValue" as const, value: v } });
const user = (id: number) => ({ keys: { user_id: i64(id) } });

describe("feature service on the Redis online store", () => {
  let nats: TestNats;
  let bus: JetStreamBus;
  let service: ServiceHandle;
  let client: Client<typeof FeatureService>;
  const prefix = `mlmesh-test:${process.pid}:${Date.now()}:`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-features-redis-"));
  let now = Date.UTC(2025, 0, 1);

  before(async () => {
    nats = await testNats();
    const logger = createLogger({ level: "silent" });
    bus = await JetStreamBus.connect({ servers: nats.url, name: "features-redis-test", logger });
    const config = loadConfig({ MLMESH_DATA_DIR: dataDir, MLMESH_FEATURES_GRPC_PORT: "0", MLMESH_FEATURES_HTTP_PORT: "0", MLMESH_NATS_URL: nats.url });
    const rt: Runtime = { config, logger, bus, mode: "single", close: async () => bus.close() };
    service = await startFeatures(rt, { onlineStore: "redis", redisUrl: REDIS_URL, redisKeyPrefix: prefix, clock: () => now });
    client = createServiceClient(FeatureService, service.grpcUrl);
  });
  after(async () => {
    await client.deleteFeatureView({ name: "r_stats" }).catch(() => undefined);
    await service.stop();
    await bus.close();
    await nats.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("serves PRESENT, NOT_FOUND, EXPIRED and NULL from Redis, never letting a late row win", async () => {
    await client.applyFeatureViews({
      views: [{ name: "r_stats", entities: [{ name: "user_id", type: ValueType.INT64 }], features: [{ name: "a", type: ValueType.INT64 }, { name: "b", type: ValueType.FLOAT64 }], ttl: { seconds: 3600n } }],
    });
    const w = await client.writeFeatures({
      view: "r_stats",
      rows: [
        { entityKey: user(1), eventTime: timestampFromMs(now - 10_000), values: [i64(1), f64(0.5)] },
        { entityKey: user(2), eventTime: timestampFromMs(now - 10_000), values: [i64(2), {}] },
        { entityKey: user(1), eventTime: timestampFromMs(now - 20_000), values: [i64(99), f64(99)] },
      ],
    });
    assert.equal(w.onlineRowsUpdated, 2n, "the third row is late for user 1");
    const read = async () =>
      (await client.getOnlineFeatures({ entities: [user(1), user(2), user(3)], refs: ["r_stats:a", "r_stats:b"] })).rows.map((r) =>
        r.values.map((v) => [FeatureStatus[v.status], v.value?.kind.value]),
      );
    assert.deepEqual(await read(), [
      [["PRESENT", 1n], ["PRESENT", 0.5]],
      [["PRESENT", 2n], ["NULL", undefined]],
      [["NOT_FOUND", undefined], ["NOT_FOUND", undefined]],
    ]);
    const redis = new Redis(REDIS_URL);
    try {
      assert.equal((await redis.keys(`${prefix}{r_stats}:*`)).length, 2, "online values live in Redis under the prefix");
    } finally {
      redis.disconnect();
    }
    now += 2 * HOUR;
    assert.deepEqual((await read()).map((r) => r.map(([s]) => s)), [["EXPIRED", "EXPIRED"], ["EXPIRED", "EXPIRED"], ["NOT_FOUND", "NOT_FOUND"]]);
  });

  it("drops the view's Redis keys with the view", async () => {
    await client.deleteFeatureView({ name: "r_stats" });
    const redis = new Redis(REDIS_URL);
    try {
      assert.deepEqual(await redis.keys(`${prefix}*`), []);
    } finally {
      redis.disconnect();
    }
  });
});
