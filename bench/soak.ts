// Soak (not a test, not in CI): a sustained closed-loop load through the router's Predict (or
// inference Score with `--target score`) against the services run as separate `mlmesh serve`
// processes, the way Kubernetes runs them. Every `--sample` seconds it prints one row:
// requests/s, P50/P95/P99 of that interval, errors, and the target process's live heap (read
// inside it right after a full GC, which a preload triggers on SIGUSR2) and RSS. At the end:
// totals, errors by code, the live-heap growth after warm-up (a fifth, at least 60 s) and
// its Theil-Sen slope, with a verdict: no errors and no heap growth trend.
//
//   node --import tsx bench/soak.ts [--duration 600] [--concurrency 16] [--target predict|score]
//                                   [--sample 10] [--entities 1000] [--budget-ms 1000]
//                                   [--max-retained-mib 8] [--max-heap-slope 1] [--json]
// NATS: MLMESH_NATS_URL if set, else a private nats-server on a free port (nats-server on PATH).
// Exit: 0 verdict PASS, 1 FAIL, 69 the target is not available (e.g. the router answers UNIMPLEMENTED).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { FeatureService } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { InferenceService } from "../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RouterService } from "../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../lib/clients.js";
import { fixture, upload } from "../test/fixtures/models/registry-client.js";
import { processMemory } from "../test/support/metrics-scrape.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../test/support/mlmesh-process.js";
import { testNats } from "../test/support/nats.js";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "600" },
    concurrency: { type: "string", default: "16" },
    target: { type: "string", default: "predict" },
    sample: { type: "string", default: "10" },
    entities: { type: "string", default: "1000" },
    "budget-ms": { type: "string", default: "1000" },
    json: { type: "boolean", default: false },
    "max-heap-slope": { type: "string", default: "1" },
    "max-retained-mib": { type: "string", default: "8" },
  },
});
const DURATION_S = Number(args.duration);
const CONCURRENCY = Number(args.concurrency);
const SAMPLE_S = Number(args.sample);
const ENTITIES = Number(args.entities);
/** The endpoint's latency budget: calls over it fail (DEADLINE_EXCEEDED), which the soak counts as errors. */
const BUDGET_MS = Number(args["budget-ms"]);
/** MiB per minute of live-heap growth (after warm-up) above which the run fails. */
const MAX_HEAP_SLOPE = Number(args["max-heap-slope"]);
/** Live heap at the end over the first reading after warm-up, MiB, above which the run fails. */
const MAX_RETAINED_MIB = Number(args["max-retained-mib"]);
const target = args.target;
if (target !== "predict" && target !== "score") {
  console.error(`--target must be predict or score, not ${target}`);
  process.exit(2);
}
if (!(DURATION_S > 0 && CONCURRENCY > 0 && SAMPLE_S > 0)) {
  console.error("--duration, --concurrency and --sample must be positive numbers");
  process.exit(2);
}
const log = (msg: string) => process.stderr.write(`${msg}\n`);

const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const SPEC = { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } };

// The heap used between collections is a sawtooth that says little about leaks. The target
// process gets a tiny preload (written here, loaded through NODE_OPTIONS) that runs a full
// GC on SIGUSR2, so each sample reads the live heap.
const gcPreload = path.join(os.tmpdir(), `mlmesh-soak-gc-${process.pid}.cjs`);
// The reading is taken inside the target right after the collection (no garbage piles up
// between the GC and a /metrics scrape under load) and written where this process reads it.
const heapFile = path.join(os.tmpdir(), `mlmesh-soak-heap-${process.pid}.txt`);
fs.writeFileSync(
  gcPreload,
  `process.on('SIGUSR2', () => { if (typeof global.gc === 'function') global.gc(); require('fs').writeFileSync(${JSON.stringify(heapFile)}, String(process.memoryUsage().heapUsed)); });\n`,
);
const targetEnv = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --expose-gc --require ${gcPreload}`.trim() };

const nats = await testNats();
const procs: MlmeshProcess[] = [];
async function serve(service: string, extra: Record<string, string>): Promise<MlmeshProcess> {
  const env = service === (target === "score" ? "inference" : "router") ? { ...targetEnv, ...extra } : extra;
  const p = await startMlmesh(["serve", service], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn", ...env }), 60_000);
  procs.push(p);
  return p;
}
// Ctrl-C or a kill: stop the services this run started, not leave them behind.
for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void shutdown(130));
async function shutdown(code: number): Promise<never> {
  for (const p of procs.reverse()) await p.stop("SIGTERM").catch(() => undefined);
  await nats.stop();
  fs.rmSync(gcPreload, { force: true });
  fs.rmSync(heapFile, { force: true });
  process.exit(code);
}

// Setup: the services, a model, and (for Predict) the features it reads and an endpoint.
const registryProc = await serve("registry", {});
const registryAddr = registryProc.endpoint("registry").grpc;
const inferenceProc = await serve("inference", { MLMESH_REGISTRY_ADDR: registryAddr });
const inferenceAddr = inferenceProc.endpoint("inference").grpc;
const registry = createServiceClient(RegistryService, registryAddr);
const model = `soak_${Date.now()}`;
await upload(registry, model, fixture("lr_v1.onnx"), { spec: SPEC });
// The router's default plan serves `<model>@production`.
await registry.setAlias({ modelName: model, alias: "production", version: 1n });

const rowOf = (i: number) => ({
  values: Object.fromEntries(FEATURES.map((f, c) => [f.split(":")[1]!, { kind: { case: "floatValue" as const, value: (i % 100) / 10 + c } }])),
  entity: { keys: { account_id: { kind: { case: "stringValue" as const, value: `a${i % ENTITIES}` } } } },
});

let call: (i: number) => Promise<unknown>;
let targetProc: MlmeshProcess;
let targetService: string;
if (target === "score") {
  const inference = createServiceClient(InferenceService, inferenceAddr);
  call = (i) => inference.score({ modelRef: `${model}@1`, requestId: `soak-${i}`, inputs: { case: "rows", value: { rows: [rowOf(i)] } } }, { timeoutMs: 10_000 });
  targetProc = inferenceProc;
  targetService = "inference";
} else {
  const featuresProc = await serve("features", {});
  const featuresAddr = featuresProc.endpoint("features").grpc;
  const experimentsProc = await serve("experiments", {});
  const routerProc = await serve("router", {
    MLMESH_REGISTRY_ADDR: registryAddr,
    MLMESH_FEATURES_ADDR: featuresAddr,
    MLMESH_INFERENCE_ADDR: inferenceAddr,
    MLMESH_EXPERIMENTS_ADDR: experimentsProc.endpoint("experiments").grpc,
  });
  const features = createServiceClient(FeatureService, featuresAddr);
  await features.applyFeatureViews({
    views: [
      {
        name: "acct",
        entities: [{ name: "account_id", type: ValueType.STRING }],
        features: [
          { name: "tenure", type: ValueType.FLOAT32 },
          { name: "calls", type: ValueType.FLOAT32 },
          { name: "spend", type: ValueType.FLOAT32 },
        ],
      },
    ],
  });
  for (let from = 0; from < ENTITIES; from += 500) {
    await features.writeFeatures({
      view: "acct",
      rows: Array.from({ length: Math.min(500, ENTITIES - from) }, (_, k) => {
        const i = from + k;
        return {
          entityKey: { keys: { account_id: { kind: { case: "stringValue" as const, value: `a${i}` } } } },
          eventTime: { seconds: BigInt(Math.floor(Date.now() / 1000) - 60), nanos: 0 },
          values: [0, 1, 2].map((c) => ({ kind: { case: "floatValue" as const, value: (i % 100) / 10 + c } })),
        };
      }),
    });
  }
  const router = createServiceClient(RouterService, routerProc.endpoint("router").grpc);
  try {
    await router.applyEndpoint({
      endpoint: { name: "soak", model, entities: ["account_id"], latencyBudget: { total: { seconds: BigInt(Math.floor(BUDGET_MS / 1000)), nanos: (BUDGET_MS % 1000) * 1e6 } } },
    });
    await router.predict({ endpoint: "soak", entityKey: { keys: { account_id: { kind: { case: "stringValue", value: "a0" } } } } });
  } catch (err) {
    const e = ConnectError.from(err);
    log(`router not available for Predict (${Code[e.code]}: ${e.rawMessage}); run with --target score`);
    await shutdown(e.code === Code.Unimplemented ? 69 : 1);
  }
  call = (i) =>
    router.predict({ endpoint: "soak", requestId: `soak-${i}`, entityKey: { keys: { account_id: { kind: { case: "stringValue", value: `a${i % ENTITIES}` } } } } }, { timeoutMs: 10_000 });
  targetProc = routerProc;
  targetService = "router";
}
const metricsUrl = targetProc.endpoint(targetService).http;

// The load: CONCURRENCY closed loops; latencies bucketed per sample interval.
interface Sample {
  t_s: number;
  requests: number;
  rps: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  errors: number;
  heap_mib: number;
  rss_mib: number;
}
const pct = (sorted: Float64Array, p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!);
const round = (x: number, d = 2) => Number(x.toFixed(d));
let interval: number[] = [];
let intervalErrors = 0;
const all: number[] = [];
const errorsByCode: Record<string, number> = {};
let n = 0;
let running = true;

/** Full GC in the target (SIGUSR2 -> preload), then its heap used and RSS. */
async function liveMemory(): Promise<{ heapMib: number; rssMib: number }> {
  fs.rmSync(heapFile, { force: true });
  targetProc.proc.kill("SIGUSR2");
  let heapBytes = Number.NaN;
  for (let i = 0; i < 100 && !Number.isFinite(heapBytes); i++) {
    await new Promise((r) => setTimeout(r, 20));
    heapBytes = fs.existsSync(heapFile) ? Number(fs.readFileSync(heapFile, "utf8")) || Number.NaN : Number.NaN;
  }
  const m = await processMemory(metricsUrl).catch(() => undefined);
  return { heapMib: round(heapBytes / 1048576, 1), rssMib: m ? round(m.rssBytes / 1048576, 1) : NaN };
}
const started = performance.now();
const endAt = started + DURATION_S * 1000;

const loops = Array.from({ length: CONCURRENCY }, async () => {
  while (running && performance.now() < endAt) {
    const i = n++;
    const t0 = performance.now();
    try {
      await call(i);
      const ms = performance.now() - t0;
      interval.push(ms);
      all.push(ms);
    } catch (err) {
      intervalErrors++;
      const e = ConnectError.from(err);
      const key = `${Code[e.code]}: ${e.rawMessage.slice(0, 80)}`;
      errorsByCode[key] = (errorsByCode[key] ?? 0) + 1;
    }
  }
});

const samples: Sample[] = [];
const header = "   t(s)     req    req/s   p50(ms)  p95(ms)  p99(ms)  errors  live heap(MiB)  rss(MiB)";
if (!args.json) console.log(`soak: ${target} via ${targetService}, concurrency ${CONCURRENCY}, ${DURATION_S} s, sample every ${SAMPLE_S} s\n${header}`);
let last = performance.now();
const sampler = (async () => {
  while (performance.now() < endAt) {
    await new Promise((r) => setTimeout(r, Math.min(SAMPLE_S * 1000, Math.max(0, endAt - performance.now()))));
    const now = performance.now();
    const lat = Float64Array.from(interval).sort();
    const errors = intervalErrors;
    interval = [];
    intervalErrors = 0;
    const mem = await liveMemory();
    const s: Sample = {
      t_s: round((now - started) / 1000, 1),
      requests: lat.length,
      rps: round(lat.length / ((now - last) / 1000), 1),
      p50_ms: round(pct(lat, 0.5)),
      p95_ms: round(pct(lat, 0.95)),
      p99_ms: round(pct(lat, 0.99)),
      errors,
      heap_mib: mem.heapMib,
      rss_mib: mem.rssMib,
    };
    last = now;
    samples.push(s);
    if (!args.json) {
      console.log(
        [s.t_s.toFixed(1).padStart(7), String(s.requests).padStart(7), s.rps.toFixed(1).padStart(8), s.p50_ms.toFixed(2).padStart(9), s.p95_ms.toFixed(2).padStart(8), s.p99_ms.toFixed(2).padStart(8), String(s.errors).padStart(7), s.heap_mib.toFixed(1).padStart(15), s.rss_mib.toFixed(1).padStart(9)].join(" "),
      );
    }
  }
})();
await Promise.all(loops);
running = false;
await sampler;

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const k = xs.length;
  if (k < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / k;
  const my = ys.reduce((a, b) => a + b, 0) / k;
  let num = 0;
  let den = 0;
  for (let i = 0; i < k; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
/** Theil-Sen: the median of pairwise slopes, robust to the odd outlier. */
function robustSlope(xs: number[], ys: number[]): number {
  const slopes: number[] = [];
  for (let i = 0; i < xs.length; i++) for (let j = i + 1; j < xs.length; j++) if (xs[j] !== xs[i]) slopes.push((ys[j]! - ys[i]!) / (xs[j]! - xs[i]!));
  if (slopes.length === 0) return 0;
  slopes.sort((a, b) => a - b);
  const m = slopes.length >> 1;
  return slopes.length % 2 ? slopes[m]! : (slopes[m - 1]! + slopes[m]!) / 2;
}
// The first fifth of the run (at least 60 s, at most half) is warm-up: JIT, caches, pools, and
// tsx parsing source maps the first time an error stack names a module. The trend is measured after it.
// The last sample is taken as the load winds down (less garbage in flight), so it is left out
// of the comparison, which stays under load from end to end.
const steady = samples.filter((s) => s.t_s >= Math.min(Math.max(DURATION_S * 0.2, 60), DURATION_S * 0.5) && s.t_s < DURATION_S - 0.5 && Number.isFinite(s.heap_mib));
const heapSlope = robustSlope(steady.map((s) => s.t_s / 60), steady.map((s) => s.heap_mib));
const heapSlopeLs = slope(steady.map((s) => s.t_s / 60), steady.map((s) => s.heap_mib));
const rssSlope = slope(steady.map((s) => s.t_s / 60), steady.map((s) => s.rss_mib));
const sorted = Float64Array.from(all).sort();
const totalErrors = Object.values(errorsByCode).reduce((a, b) => a + b, 0);
const elapsed = (performance.now() - started) / 1000;
const problems: string[] = [];
if (totalErrors > 0) problems.push(`${totalErrors} errors`);
const retained = steady.length > 0 ? round(steady.at(-1)!.heap_mib - steady[0]!.heap_mib, 1) : NaN;
if (steady.length < 3) problems.push(`too few samples after warm-up (${steady.length}) to judge the heap trend; run longer or sample more often`);
else {
  if (heapSlope > MAX_HEAP_SLOPE) problems.push(`live heap grows ${heapSlope.toFixed(2)} MiB/min (limit ${MAX_HEAP_SLOPE})`);
  if (retained > MAX_RETAINED_MIB) problems.push(`live heap grew ${retained} MiB after warm-up (limit ${MAX_RETAINED_MIB})`);
}
const summary = {
  target,
  service: targetService,
  duration_s: round(elapsed, 1),
  concurrency: CONCURRENCY,
  requests: sorted.length,
  rps: round(sorted.length / elapsed, 1),
  p50_ms: round(pct(sorted, 0.5)),
  p95_ms: round(pct(sorted, 0.95)),
  p99_ms: round(pct(sorted, 0.99)),
  errors: totalErrors,
  errors_by_code: errorsByCode,
  heap_slope_mib_per_min: round(heapSlope, 3),
  heap_slope_least_squares_mib_per_min: round(heapSlopeLs, 3),
  rss_slope_mib_per_min: round(rssSlope, 3),
  heap_mib_first_last: steady.length > 0 ? [steady[0]!.heap_mib, steady.at(-1)!.heap_mib] : [],
  heap_growth_after_warmup_mib: retained,
  verdict: problems.length === 0 ? "PASS" : "FAIL",
  problems,
  samples,
};
if (args.json) console.log(JSON.stringify(summary, null, 2));
else {
  console.log(
    `\ntotal: ${summary.requests} requests in ${summary.duration_s} s = ${summary.rps} req/s; p50 ${summary.p50_ms} ms, p95 ${summary.p95_ms} ms, p99 ${summary.p99_ms} ms; errors ${totalErrors}`,
  );
  for (const [k, v] of Object.entries(errorsByCode)) console.log(`  ${v} x ${k}`);
  console.log(
    `live heap after warm-up: ${summary.heap_mib_first_last.join(" -> ")} MiB (${retained} MiB), trend ${summary.heap_slope_mib_per_min} MiB/min (Theil-Sen; least squares ${summary.heap_slope_least_squares_mib_per_min}); RSS trend ${summary.rss_slope_mib_per_min} MiB/min`,
  );
  console.log(`verdict: ${summary.verdict}${problems.length ? ` (${problems.join("; ")})` : ""}`);
}
await shutdown(summary.verdict === "PASS" ? 0 : 1);
