// `npm run bench`: every benchmark of bench/, one after the other (each in its own process,
// so none measures another's leftovers), then one table of the headline ratios against the
// targets of the issues, written with every sub-result to bench/results.json.
//
// Each benchmark measures its own baseline in the same run (in-process ONNX Runtime, the
// store lookup, the FastAPI service, ...) and saves bench/results-<name>.json; this file
// only runs them and reads those files. Not a test: nothing is asserted, a missed target is
// printed as such.
//
// Run: npm run bench [-- --only inference,mesh] [-- --quick]

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../test/support/mlmesh-process.js";

const { values: opts } = parseArgs({
  options: { only: { type: "string" }, quick: { type: "boolean", default: false } },
});
const only = opts.only ? new Set(opts.only.split(",")) : undefined;

interface Bench {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
  readonly results: string;
}

const BENCHES: readonly Bench[] = [
  { name: "rpc", script: "bench/rpc-overhead.ts", args: [], results: "bench/results-rpc.json" },
  { name: "inference", script: "bench/inference-score.ts", args: ["--save"], results: "bench/results-inference.json" },
  { name: "mesh", script: "bench/mesh-vs-fastapi.ts", args: ["--save", ...(opts.quick ? ["--seconds", "4"] : [])], results: "bench/results-mesh.json" },
  { name: "batch", script: "bench/batch-scoring.ts", args: ["--save"], results: "bench/results-batch.json" },
  { name: "features", script: "bench/features-online.ts", args: ["--save"], results: "bench/results-features.json" },
  { name: "experiments", script: "bench/experiments.ts", args: ["--save"], results: "bench/results-experiments.json" },
];

const ran: Record<string, { ok: boolean; seconds: number; results?: unknown }> = {};
for (const b of BENCHES) {
  if (only && !only.has(b.name)) continue;
  if (!fs.existsSync(path.join(REPO_ROOT, b.script))) {
    console.error(`bench ${b.name}: ${b.script} not found, skipped`);
    continue;
  }
  console.error(`\n== bench ${b.name}: node --import tsx ${b.script} ${b.args.join(" ")}`);
  const started = Date.now();
  const r = spawnSync(process.execPath, ["--import", "tsx", b.script, ...b.args], { cwd: REPO_ROOT, stdio: "inherit" });
  const file = path.join(REPO_ROOT, b.results);
  const fresh = fs.existsSync(file) && fs.statSync(file).mtimeMs >= started;
  ran[b.name] = {
    ok: r.status === 0 && fresh,
    seconds: Math.round((Date.now() - started) / 1000),
    results: fresh ? JSON.parse(fs.readFileSync(file, "utf8")) : undefined,
  };
  if (!ran[b.name]!.ok) console.error(`bench ${b.name}: failed (exit ${r.status}${fresh ? "" : ", no fresh results file"})`);
}

// Headline figures: [what, measured, target, met?]. A figure is read from the sub-result's
// `summary`; a bench that did not run leaves its rows out.
type Row = { figure: string; measured: string; target: string; met: string };
const rows: Row[] = [];
const summary = (name: string) => (ran[name]?.results as { summary?: Record<string, number> } | undefined)?.summary;
function add(name: string, key: string, figure: string, target: string, met: (v: number) => boolean, unit = "") {
  const v = summary(name)?.[key];
  if (typeof v !== "number") return;
  rows.push({ figure, measured: `${Number(v.toPrecision(3))}${unit}`, target, met: met(v) ? "yes" : "NO" });
}
add("inference", "grpcOverheadP50usAtC1", "Score over gRPC minus in-process run(), P50 at c=1", "< 300 µs", (v) => v < 300, " µs");
add("inference", "transportFloorP50usAtC1", "  of which: bare health Check between the two processes (transport floor), P50 at c=1", "(reported)", () => true, " µs");
add("inference", "inProcessRunAfterIdleP50us", "  of which: in-process run() after 1 ms idle, as every run at c=1 (vs back-to-back)", "(reported)", () => true, " µs");
add("inference", "batchingSpeedupAtC64", "dynamic batching on / off, rows/s at c=64", "≥ 3×", (v) => v >= 3, "×");
add("mesh", "meshOverFastapiRps", "mesh Predict / FastAPI+sklearn, requests/s (wrk)", "≥ 2×", (v) => v >= 2, "×");
add("mesh", "meshP99VsFastapiP99", "mesh Predict P99 / FastAPI P99 (wrk)", "≤ 1×", (v) => v <= 1, "×");
add("mesh", "meshOverFastapiCpuPerRequest", "mesh Predict / FastAPI server CPU per request (all threads)", "(reported; load-independent)", () => true, "×");
add("mesh", "predictOverScoreP50AtC1", "router Predict / inference Score, P50 at c=1", "(reported)", () => true, "×");
add("batch", "batchOverInProcess", "batch scoring / in-process ONNX Runtime, rows/s", "≥ 0.8×", (v) => v >= 0.8, "×");
add("features", "onlineP99ms", "GetOnlineFeatures 100×20, P99 over gRPC (SQLite, row answer)", "≤ 5 ms", (v) => v <= 5, " ms");
add("features", "onlineColumnarP99ms", "GetOnlineFeatures 100×20, P99 over gRPC (SQLite, columnar answer)", "≤ 5 ms", (v) => v <= 5, " ms");
add("features", "onlineLeanP99ms", "GetOnlineFeatures 100×20, P99 over gRPC (SQLite, lean columnar SDK client)", "≤ 5 ms", (v) => v <= 5, " ms");
add("features", "writeRowsPerSec", "WriteFeatures, rows/s (20 features, 10k rows per call)", "(reported; ingest target: npm run bench:features-ingest)", () => true);
add("experiments", "serviceIngestPerSec", "outcome ingest over gRPC, events/s (batches from the SDK encoder)", "≥ 100k/s", (v) => v >= 100_000);
add("experiments", "serviceIngestTypedClientPerSec", "outcome ingest over gRPC, events/s (typed client, message objects)", "(reported)", () => true);
add("experiments", "serverCpuUsPerOutcome", "outcome ingest, server CPU per event", "(reported; load-independent)", () => true, " µs");
add("experiments", "analysis10MUnitsMs", "analysis of a 10M-unit experiment", "< 50 ms", (v) => v < 50, " ms");

console.log("\nmlmesh benchmark suite — headline figures (each against a baseline measured in the same run)");
console.table(rows);
fs.writeFileSync(
  path.join(REPO_ROOT, "bench", "results.json"),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, headline: rows, benches: ran }, null, 2)}\n`,
);
console.log("written: bench/results.json");
process.exit(Object.values(ran).every((r) => r.ok) ? 0 : 1);
