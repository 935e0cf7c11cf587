// Benchmark (not a test): GetOnlineFeatures for 100 entities x 20 features over gRPC, in
// the row-major and the columnar answer, against the in-process store lookup of the same
// keys (its limit), and WriteFeatures throughput. The measured client runs in its own process
// (bench/features-online-client.ts), so its decode and GC are not the server's; on this
// 2-core machine the two still share the CPU. Run: node --import tsx bench/features-online.ts [--redis]
// (needs NATS on MLMESH_NATS_URL or 127.0.0.1:4222; --redis needs MLMESH_REDIS_URL or a local Redis).

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { FeatureService } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { ValueType } from "../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../lib/clients.js";
import { setLocalCallsEnabled } from "../lib/local-calls.js";
import { loadConfig } from "../lib/config.js";
import { openSqlite } from "../lib/db.js";
import { JetStreamBus } from "../lib/events.js";
import { createLogger } from "../lib/logger.js";
import type { Runtime } from "../lib/runtime.js";
import { startFeatures } from "../services/features/main.js";
import { SqliteOnlineStore, type OnlineStore } from "../services/features/online-store.js";
import { RedisOnlineStore } from "../services/features/redis-online-store.js";
import * as schema from "../services/features/schema.js";

const redis = process.argv.includes("--redis");
const ENTITIES = 20_000;
const FEATURES = 20;
const BATCH = 100;
const CALLS = 3000;
const natsUrl = process.env.MLMESH_NATS_URL ?? "nats://127.0.0.1:4222";
const redisUrl = process.env.MLMESH_REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `mlmesh-bench:${process.pid}:`;

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const fmt = (ms: number) => `${ms.toFixed(3)} ms`;

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-bench-features-"));
const logger = createLogger({ level: "warn" });
const bus = await JetStreamBus.connect({ servers: natsUrl, name: "bench-features", logger });
const config = loadConfig({ MLMESH_DATA_DIR: dataDir, MLMESH_FEATURES_GRPC_PORT: "0", MLMESH_FEATURES_HTTP_PORT: "0", MLMESH_NATS_URL: natsUrl });
const rt: Runtime = { config, logger, bus, mode: "single", close: async () => bus.close() };
const service = await startFeatures(rt, redis ? { onlineStore: "redis", redisUrl, redisKeyPrefix: prefix } : {});
// The service runs in this process: without this the client would call it in-process
// (lib/local-calls.ts) and nothing would cross the wire.
setLocalCallsEnabled(false);
const client = createServiceClient(FeatureService, service.grpcUrl);

const names = Array.from({ length: FEATURES }, (_, i) => `f${i}`);
await client.applyFeatureViews({
  views: [{ name: "bench", entities: [{ name: "user_id", type: ValueType.INT64 }], features: names.map((name) => ({ name, type: ValueType.FLOAT64 })), ttl: { seconds: 86400n } }],
});

// Ingest: rows of 20 features, 10k rows per call.
const now = Date.now();
const started = performance.now();
for (let start = 0; start < ENTITIES; start += 10_000) {
  const rows = [];
  for (let i = start; i < start + 10_000; i++) {
    rows.push({
      entityKey: { keys: { user_id: { kind: { case: "int64Value" as const, value: BigInt(i) } } } },
      eventTime: timestampFromMs(now - 1000),
      values: names.map((_, j) => ({ kind: { case: "doubleValue" as const, value: i + j / 100 } })),
    });
  }
  await client.writeFeatures({ view: "bench", rows });
}
const writeSeconds = (performance.now() - started) / 1000;

const pick = () => Array.from({ length: BATCH }, () => Math.floor(Math.random() * ENTITIES));

// The calls come from a client in its own process (bench/features-online-client.ts); this
// process keeps serving meanwhile, so the child is awaited, never waited for synchronously.
const measuredOut = await new Promise<string>((resolve, reject) => {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(path.dirname(new URL(import.meta.url).pathname), "features-online-client.ts"), service.grpcUrl, service.httpUrl, String(ENTITIES), String(FEATURES), String(BATCH), String(CALLS)],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`features-online-client failed (${code}): ${err}`))));
});
const { rows: rpc, columnar: rpcColumnar, lean: rpcLean, server, cpuMs } = JSON.parse(measuredOut) as {
  rows: number[];
  columnar: number[];
  lean: number[];
  server: { rows: number; columnar: number; lean: number };
  cpuMs: { rows: number; columnar: number; lean: number };
};
const load = os.loadavg().map((x) => x.toFixed(2)).join(" ");

// The limit: the same lookups straight on the store, plus the JSON decode, no RPC.
let store: OnlineStore;
let closeStore: () => void;
if (redis) {
  const s = await RedisOnlineStore.connect(redisUrl, prefix);
  store = s;
  closeStore = () => void s.close();
} else {
  const h = openSqlite({ dataDir, file: "features.db", schema, migrationsFolder: new URL("../services/features/migrations", import.meta.url).pathname });
  store = new SqliteOnlineStore(h.sqlite);
  closeStore = () => h.close();
}
const direct: number[] = [];
for (let i = 0; i < CALLS; i++) {
  const keys = pick().map(String);
  const t0 = performance.now();
  const recs = await store.readMany("bench", keys);
  for (const r of recs) if (r) JSON.parse(r.valuesJson);
  direct.push(performance.now() - t0);
}

console.log(`features bench (${redis ? "redis" : "sqlite"} online store), ${BATCH} entities x ${FEATURES} features, ${CALLS} calls`);
console.log(`  GetOnlineFeatures over gRPC   p50 ${fmt(pct(rpc, 50))}  p99 ${fmt(pct(rpc, 99))}  (rows: 2,000 FeatureValue messages)`);
console.log(`  ... columnar: true            p50 ${fmt(pct(rpcColumnar, 50))}  p99 ${fmt(pct(rpcColumnar, 99))}  (20 packed columns)`);
console.log(`  ... columnar, lean client      p50 ${fmt(pct(rpcLean, 50))}  p99 ${fmt(pct(rpcLean, 99))}  (lib/features-online-client.ts: typed arrays)`);
console.log(`  server side (rpc histogram)   mean ${fmt((server.rows * 1000) / rpc.length)} rows, ${fmt((server.columnar * 1000) / rpcColumnar.length)} columnar, ${fmt((server.lean * 1000) / rpcLean.length)} lean`);
console.log(`  client CPU per call           ${fmt(cpuMs.rows / rpc.length)} rows, ${fmt(cpuMs.columnar / rpcColumnar.length)} columnar, ${fmt(cpuMs.lean / rpcLean.length)} lean (all client threads)`);
console.log(`  store lookup + decode (limit) p50 ${fmt(pct(direct, 50))}  p99 ${fmt(pct(direct, 99))}`);
console.log(`  ratio p99 gRPC / limit        ${(pct(rpc, 99) / pct(direct, 99)).toFixed(1)}x rows, ${(pct(rpcColumnar, 99) / pct(direct, 99)).toFixed(1)}x columnar, ${(pct(rpcLean, 99) / pct(direct, 99)).toFixed(1)}x lean`);
console.log(`  load average (1/5/15 min)     ${load} at the end of the gRPC calls, on ${os.cpus().length} cores`);
console.log(`  WriteFeatures                 ${Math.round(ENTITIES / writeSeconds)} rows/s (${FEATURES} features, 10k rows per call)`);
if (!redis) {
  // Read by bench/suite.ts (npm run bench).
  const ms = (x: number) => Number(x.toFixed(3));
  fs.writeFileSync(
    path.join(path.dirname(new URL(import.meta.url).pathname), "results-features.json"),
    `${JSON.stringify({ date: new Date().toISOString(), entities: BATCH, features: FEATURES, calls: CALLS, summary: {
      onlineP50ms: ms(pct(rpc, 50)), onlineP99ms: ms(pct(rpc, 99)),
      onlineColumnarP50ms: ms(pct(rpcColumnar, 50)), onlineColumnarP99ms: ms(pct(rpcColumnar, 99)),
      onlineLeanP50ms: ms(pct(rpcLean, 50)), onlineLeanP99ms: ms(pct(rpcLean, 99)),
      storeLookupP99ms: ms(pct(direct, 99)), writeRowsPerSec: Math.round(ENTITIES / writeSeconds),
    } }, null, 2)}\n`,
  );
}

if (redis) await store.deleteView("bench");
closeStore();
await service.stop();
await bus.close();
fs.rmSync(dataDir, { recursive: true, force: true });
