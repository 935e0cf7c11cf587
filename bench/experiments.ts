// Benchmark (not a test): experiment statistics at scale, measured in one run.
//  1. Library: outcomes folded into per-arm sufficient statistics (events/s), and the full
//     analysis (SRM, Welch, CUPED, Holm, BH) of an experiment with 10 million units — its
//     cost is O(arms), independent of the unit count.
//  2. Service: LogExposures + LogOutcomes over gRPC into `mlmesh serve experiments`
//     (persisted per-arm statistics in SQLite), events/s, and GetReport latency.
// Targets (issue #6): >= 100k events/s ingest, analysis under 50 ms.
// Run: npm run bench:experiments   (needs NATS on MLMESH_NATS_URL or 127.0.0.1:4222)

import fs from "node:fs";
import path from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ExperimentService } from "../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { closeAllClients, createServiceClient } from "../lib/clients.js";
import { benjaminiHochberg, holm } from "../services/experiments/stats/corrections.js";
import { cupedTest } from "../services/experiments/stats/cuped.js";
import { sampleRatioMismatch } from "../services/experiments/stats/srm.js";
import { addObservation, emptyStats } from "../services/experiments/stats/sufficient-stats.js";
import { welchFromStats } from "../services/experiments/stats/welch.js";
import { isolatedEnv, startMlmesh } from "../test/support/mlmesh-process.js";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

// 1. Library ------------------------------------------------------------------------------
const UNITS = 10_000_000;
const arms = [emptyStats(), emptyStats(), emptyStats()];
let seed = 42;
const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
const t0 = performance.now();
for (let i = 0; i < UNITS; i++) {
  const a = i % 3;
  const x = 10 + 4 * rand();
  addObservation(arms[a]!, 0.8 * x + 2 * rand() + (a === 1 ? 0.05 : 0), x);
}
const ingestSec = (performance.now() - t0) / 1000;
const analysisMs: number[] = [];
for (let r = 0; r < 200; r++) {
  const s = performance.now();
  sampleRatioMismatch(arms.map((x) => x.n), [1 / 3, 1 / 3, 1 / 3]);
  const ps = [1, 2].map((k) => welchFromStats(arms[0]!, arms[k]!).pValue);
  for (const k of [1, 2]) cupedTest(arms[0]!, arms[k]!, arms);
  holm(ps);
  benjaminiHochberg(ps);
  analysisMs.push(performance.now() - s);
}
console.log(`library: ${Math.round(UNITS / ingestSec).toLocaleString("en")} outcomes/s into sufficient statistics; analysis of ${UNITS.toLocaleString("en")} units (3 arms, Welch + CUPED + SRM + Holm + BH): median ${median(analysisMs).toFixed(3)} ms`);

// 2. Service ------------------------------------------------------------------------------
const proc = await startMlmesh(["serve", "experiments"], await isolatedEnv({ MLMESH_NATS_URL: process.env.MLMESH_NATS_URL ?? "nats://127.0.0.1:4222", MLMESH_LOG_LEVEL: "warn" }));
try {
  const ex = createServiceClient(ExperimentService, proc.endpoint("experiments").grpc, { defaultTimeoutMs: 120_000 });
  const key = `bench-${Date.now()}`;
  await ex.createExperiment({
    experiment: {
      key,
      unitType: 1,
      arms: [{ name: "control", weight: 0.5, control: true }, { name: "treatment", weight: 0.5 }],
      metrics: [{ name: "revenue", role: 1, type: 1, direction: 1, baselineMean: 10, baselineSd: 4 }],
      mde: 0.5,
    },
  });
  await ex.startExperiment({ key });
  const N = 200_000;
  const BATCH = 5_000;
  // Producers send concurrently (as several collectors or a JetStream consumer would), so the
  // client's encoding overlaps the server's work; the server still applies one batch at a time.
  const IN_FLIGHT = 4;
  const now = Date.now();
  const pipelined = async (send: (start: number) => Promise<unknown>) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < N) {
          const start = next;
          next += BATCH;
          await send(start);
        }
      }),
    );
  };
  const s1 = performance.now();
  await pipelined((i) =>
    ex.logExposures({ exposures: Array.from({ length: BATCH }, (_, j) => ({ experimentKey: key, unitId: `u${i + j}`, arm: (i + j) % 2 ? "treatment" : "control", time: timestampFromMs(now - 60_000) })) }),
  );
  const expSec = (performance.now() - s1) / 1000;
  const s2 = performance.now();
  await pipelined((i) =>
    ex.logOutcomes({ outcomes: Array.from({ length: BATCH }, (_, j) => ({ unitId: `u${i + j}`, metric: "revenue", value: 10 + 4 * rand(), time: timestampFromMs(now), outcomeId: `o${i + j}` })) }),
  );
  const outSec = (performance.now() - s2) / 1000;
  const reportMs: number[] = [];
  for (let r = 0; r < 30; r++) {
    const s = performance.now();
    await ex.getReport({ experimentKey: key });
    reportMs.push(performance.now() - s);
  }
  // Read by bench/suite.ts (npm run bench).
  fs.writeFileSync(
    path.join(path.dirname(new URL(import.meta.url).pathname), "results-experiments.json"),
    `${JSON.stringify({ date: new Date().toISOString(), units: UNITS, summary: {
      libraryIngestPerSec: Math.round(UNITS / ingestSec), analysis10MUnitsMs: Number(median(analysisMs).toFixed(3)),
      serviceExposuresPerSec: Math.round(N / expSec), serviceIngestPerSec: Math.round(N / outSec), reportMedianMs: Number(median(reportMs).toFixed(2)),
    } }, null, 2)}\n`,
  );
  console.log(
    `service (gRPC, SQLite-persisted): exposures ${Math.round(N / expSec).toLocaleString("en")}/s, outcomes ${Math.round(N / outSec).toLocaleString("en")}/s (batches of ${BATCH}, ${IN_FLIGHT} in flight); GetReport over ${N.toLocaleString("en")} units: median ${median(reportMs).toFixed(2)} ms`,
  );
} finally {
  closeAllClients();
  await proc.stop();
}
