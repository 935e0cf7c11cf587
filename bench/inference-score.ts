// Benchmark (not a test): single-row scoring of a 30-input MLP (test/fixtures/inference/
// mlp30.onnx) through `Score` over gRPC, dynamic batching on and off, against in-process
// onnxruntime-node `run()` (the limit), at concurrency 1, 16 and 64. Two more baselines from
// the same run: a bare grpc.health.v1 Check on the same inference process (the transport's
// floor: what any unary call costs before the service does anything), and in-process `run()`
// of 64-row batches (what batching can gain at most). Ratios are against the in-process
// single-row cell of the same concurrency.
// Run: node --import tsx bench/inference-score.ts   (writes bench/results-inference.json; needs NATS on MLMESH_NATS_URL or 127.0.0.1:4222)

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import ort from "onnxruntime-node";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { InferenceService } from "../gen/mlmesh/inference/v1/inference_service_pb.js";
import { TensorType } from "../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { RegistryService } from "../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../lib/clients.js";
import { upload } from "../test/fixtures/models/registry-client.js";
import { isolatedEnv, REPO_ROOT, startMlmesh } from "../test/support/mlmesh-process.js";

const natsUrl = process.env.MLMESH_NATS_URL ?? "nats://127.0.0.1:4222";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const MODEL_FILE = path.join(REPO_ROOT, "test/fixtures/inference/mlp30.onnx");
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const row = () => Float32Array.from({ length: 30 }, () => Math.random() * 2 - 1);
const BATCH = 64;

/** `rowsPerCall` > 1: each call scores that many rows; latency stays per call. */
async function measure(concurrency: number, call: () => Promise<unknown>, rowsPerCall = 1) {
  const lat: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  const warmEnd = performance.now() + 300;
  while (performance.now() < warmEnd) await call();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await call();
        lat.push((performance.now() - s) * 1000);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return { rowsPerSec: Math.round((lat.length * rowsPerCall) / secs), p50us: Math.round(pct(lat, 50)), p99us: Math.round(pct(lat, 99)) };
}

/** Single calls with 1 ms of idle before each; latency of the call alone. */
async function measureAfterIdle(call: () => Promise<unknown>) {
  const lat: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 1));
    const s = performance.now();
    await call();
    lat.push((performance.now() - s) * 1000);
  }
  return { rowsPerSec: Math.round(lat.length / SECONDS), p50us: Math.round(pct(lat, 50)), p99us: Math.round(pct(lat, 99)) };
}

const registryProc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: natsUrl, MLMESH_LOG_LEVEL: "warn" }));
const inferenceProc = await startMlmesh(
  ["serve", "inference"],
  await isolatedEnv({
    MLMESH_NATS_URL: natsUrl,
    MLMESH_LOG_LEVEL: "warn",
    MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc,
    // BENCH_PROFILE_DIR=DIR: the inference process writes a CPU profile there when it stops.
    ...(process.env.BENCH_PROFILE_DIR ? { NODE_OPTIONS: `--import ${path.join(REPO_ROOT, "bench", "cpu-profile.mjs")}`, BENCH_PROFILE_DIR: process.env.BENCH_PROFILE_DIR } : {}),
  }),
);
const results: Array<Record<string, string | number>> = [];
try {
  const registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
  const inference = createServiceClient(InferenceService, inferenceProc.endpoint("inference").grpc);
  const model = `mlp30_${Date.now()}`;
  await upload(registry, model, fs.readFileSync(MODEL_FILE), { chunkBytes: 64 * 1024 });
  const session = await ort.InferenceSession.create(MODEL_FILE, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const inProcess = () => session.run({ x: new ort.Tensor("float32", row(), [1, 30]) });
  const batchInput = () => {
    const data = new Float32Array(BATCH * 30);
    for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
    return data;
  };
  const inProcessBatch = () => session.run({ x: new ort.Tensor("float32", batchInput(), [BATCH, 30]) });
  const health = createServiceClient(Health, inferenceProc.endpoint("inference").grpc);
  const check = () => health.check({ service: "" });
  const score = () =>
    inference.score({
      modelRef: `${model}@1`,
      inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT32, shape: [1n, 30n], floatData: Array.from(row()) }] } },
    });
  // JIT warm-up of every path (client and server) before the first cell: otherwise the first
  // Score cell pays for it and reads as transport overhead.
  for (const f of [inProcess, inProcessBatch, check, score]) {
    const until = performance.now() + 1500;
    while (performance.now() < until) await f();
  }
  for (const concurrency of [1, 16, 64]) {
    results.push({ cell: "in-process ort run()", concurrency, ...(await measure(concurrency, inProcess)) });
    results.push({ cell: `in-process ort run(), ${BATCH}-row batches`, concurrency, ...(await measure(concurrency, inProcessBatch, BATCH)) });
    // What a model costs a service that waits for its next request: on this machine a run
    // after ~1 ms idle takes several times a back-to-back run (caches and clocks go cold),
    // and over gRPC at c=1 every run comes after such a wait. Timed around run() alone.
    if (concurrency === 1) results.push({ cell: "in-process ort run(), 1 ms idle before each", concurrency, ...(await measureAfterIdle(inProcess)) });
    results.push({ cell: "floor: grpc.health.v1 Check, same process", concurrency, ...(await measure(concurrency, check)) });
    for (const enabled of [false, true]) {
      await inference.setBatchingConfig({ modelName: model, batching: { enabled, maxBatchSize: 64, maxQueueDelayUs: 0n } });
      results.push({ cell: `Score over gRPC, batching ${enabled ? "on" : "off"}`, concurrency, ...(await measure(concurrency, score)) });
    }
  }
  const metrics = await (await fetch(`${inferenceProc.endpoint("inference").http}/metrics`)).text();
  const count = Number(/^mlmesh_inference_batch_size_rows_count\{[^}]*\} (\S+)$/m.exec(metrics)?.[1]);
  const sum = Number(/^mlmesh_inference_batch_size_rows_sum\{[^}]*\} (\S+)$/m.exec(metrics)?.[1]);
  const cell = (c: string, n: number) => results.find((r) => r.cell === c && r.concurrency === n)!;
  for (const r of results) {
    const base = cell("in-process ort run()", Number(r.concurrency));
    r["rows/s vs in-process"] = Number((Number(r.rowsPerSec) / Number(base.rowsPerSec)).toFixed(4));
    r["P50 - in-process P50 (us)"] = Number(r.p50us) - Number(base.p50us);
  }
  console.table(results);
  const summary = {
    grpcOverheadP50usAtC1: Number(cell("Score over gRPC, batching off", 1).p50us) - Number(cell("in-process ort run()", 1).p50us),
    grpcOverheadP50usAtC1BatchingOn: Number(cell("Score over gRPC, batching on", 1).p50us) - Number(cell("in-process ort run()", 1).p50us),
    transportFloorP50usAtC1: Number(cell("floor: grpc.health.v1 Check, same process", 1).p50us),
    inProcessRunAfterIdleP50us: Number(cell("in-process ort run(), 1 ms idle before each", 1).p50us),
    scoreOverFloorP50usAtC1: Number(cell("Score over gRPC, batching off", 1).p50us) - Number(cell("floor: grpc.health.v1 Check, same process", 1).p50us),
    batchingSpeedupAtC64: Number(cell("Score over gRPC, batching on", 64).rowsPerSec) / Number(cell("Score over gRPC, batching off", 64).rowsPerSec),
    floorCallsPerSecAtC64: Number(cell("floor: grpc.health.v1 Check, same process", 64).rowsPerSec),
    inProcessBatchSpeedupAtC1: Number(cell(`in-process ort run(), ${BATCH}-row batches`, 1).rowsPerSec) / Number(cell("in-process ort run()", 1).rowsPerSec),
    meanBatchRowsOverall: sum / count,
    // Requests a small model ran on the service's own thread (MLMESH_INFERENCE_INLINE_MAX_US).
    inlineRuns: Number(/^mlmesh_inference_inline_runs_total\{[^}]*\} (\S+)$/m.exec(metrics)?.[1] ?? 0),
    requests: Number(/^mlmesh_inference_requests_total\{[^}]*\} (\S+)$/m.exec(metrics)?.[1] ?? 0),
    loadAverage: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
  console.log(summary);
  fs.writeFileSync(path.join(REPO_ROOT, "bench/results-inference.json"), JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, results, summary }, null, 2) + "\n");
} finally {
  await inferenceProc.stop();
  await registryProc.stop();
}
