// Benchmark (not a test): `mlmesh features ingest` of a CSV of N rows x 20 float64
// features (default 200,000; the target is 1M rows in under 60 s) into an
// in-process feature service over gRPC, with the event loop's longest stall while it runs
// (the server shares this process, so a commit that blocks shows up here).
// Run: node --import tsx bench/features-ingest.ts [ROWS] [BATCH]   (needs NATS as bench/features-online.ts)

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { ingestFile } from "../cli/features-command.js";
import { FeatureService } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { ValueType } from "../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../lib/clients.js";
import { loadConfig } from "../lib/config.js";
import { JetStreamBus } from "../lib/events.js";
import { createLogger } from "../lib/logger.js";
import { createMeshClients } from "../lib/mesh-clients.js";
import type { Runtime } from "../lib/runtime.js";
import { startFeatures } from "../services/features/main.js";

const ROWS = Number(process.argv[2] ?? 200_000);
const FEATURES = 20;
const natsUrl = process.env.MLMESH_NATS_URL ?? "nats://127.0.0.1:4222";

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-bench-ingest-"));
const logger = createLogger({ level: "warn" });
const bus = await JetStreamBus.connect({ servers: natsUrl, name: "bench-features-ingest", logger });
const config = loadConfig({ MLMESH_DATA_DIR: dataDir, MLMESH_FEATURES_GRPC_PORT: "0", MLMESH_FEATURES_HTTP_PORT: "0", MLMESH_NATS_URL: natsUrl });
const rt: Runtime = { config, logger, bus, mode: "single", close: async () => bus.close() };
const service = await startFeatures(rt, { streamIngest: false });
const names = Array.from({ length: FEATURES }, (_, i) => `f${i}`);
await createServiceClient(FeatureService, service.grpcUrl).applyFeatureViews({
  views: [{ name: "bench", entities: [{ name: "user_id", type: ValueType.INT64 }], features: names.map((name) => ({ name, type: ValueType.FLOAT64 })) }],
});

// The file: 20% of the rows revisit an entity with an older time (late arrivals).
const file = path.join(dataDir, "bench.csv");
const out = fs.createWriteStream(file);
out.write(`user_id,event_ts,${names.join(",")}\n`);
const now = Date.now();
for (let i = 0; i < ROWS; i++) {
  const late = i % 5 === 4;
  const id = late ? i - 3 : i;
  const line = `${id},${now - (late ? 60_000 : 1000)},${names.map((_, j) => ((i * 31 + j) % 1000) / 8).join(",")}\n`;
  if (!out.write(line)) await new Promise<void>((r) => out.once("drain", () => r()));
}
await new Promise<void>((r) => out.end(() => r()));
const mb = fs.statSync(file).size / 1e6;

const stalls = monitorEventLoopDelay({ resolution: 10 });
stalls.enable();
// CPU of the whole process (all threads) while the upload runs: a figure that depends far
// less on what else the machine runs than the wall time does.
const cpu0 = process.cpuUsage();
const started = performance.now();
// The longest gaps between ticks of a 5 ms timer, with when they happened, so a stall can
// be placed: the commit runs just before the answer arrives.
const gaps: Array<{ at: number; ms: number }> = [];
let lastTick = performance.now();
const ticker = setInterval(() => {
  const t = performance.now();
  if (t - lastTick > 100) gaps.push({ at: (lastTick - started) / 1000, ms: t - lastTick });
  lastTick = t;
}, 5);
const client = createMeshClients(loadConfig({ MLMESH_FEATURES_ADDR: service.grpcUrl })).features;
const res = await ingestFile(client, "bench", file, { batch: Number(process.argv[3] ?? 5000), requestId: "", offlineOnly: false, progress: false });
const secs = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpu0);
const cpuSecs = (cpu.user + cpu.system) / 1e6;
stalls.disable();
clearInterval(ticker);

console.log(`features ingest bench: ${ROWS} rows x ${FEATURES} float64 features, CSV ${mb.toFixed(0)} MB`);
console.log(`  ingest (CLI -> gRPC -> staged -> commit)  ${secs.toFixed(1)} s, ${Math.round(ROWS / secs)} rows/s, ${res.online_rows_updated} online rows updated`);
console.log(`  -> 1M rows extrapolated                   ${((1_000_000 / ROWS) * secs).toFixed(0)} s`);
console.log(`  process CPU during the ingest             ${cpuSecs.toFixed(1)} s (${((cpuSecs * 1e6) / ROWS).toFixed(1)} us/row; load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")})`);
console.log(`  longest event-loop stall                  ${(stalls.max / 1e6).toFixed(0)} ms (p99 ${(stalls.percentile(99) / 1e6).toFixed(0)} ms)`);
const worst = gaps.sort((a, b) => b.ms - a.ms).slice(0, 5).map((g) => `${g.ms.toFixed(0)} ms at ${g.at.toFixed(1)} s`);
console.log(`  stalls > 100 ms: ${gaps.length}; worst ${worst.join(", ")} (answer at ${secs.toFixed(1)} s)`);

await service.stop();
await bus.close();
fs.rmSync(dataDir, { recursive: true, force: true });
