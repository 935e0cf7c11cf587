// Benchmark (not a test): the full mesh against the floor users start from.
//
//  1. The seed-style baseline — FastAPI + scikit-learn (`joblib.load`, `predict_proba` per
//     request, uvicorn defaults; Python and packages from Debian) — and our Connect JSON
//     `Predict` (router → features → inference, `mlmesh up` in one process), both loaded by
//     the same client: wrk with the same Lua POST script (bench/baseline/post.lua).
//  2. Full mesh `Predict` vs direct inference `Score` over gRPC at concurrency 1 and 16,
//     from one Node client (the extra hop and the feature fetch, as a ratio).
//
// Both services serve the same model: bench/baseline/make_baseline_model.py trains one
// LogisticRegression and writes it as model.joblib and (same weights) model.onnx.
//
// Run: node --import tsx bench/mesh-vs-fastapi.ts [--seconds 10] [--connections 16] [--save]
// Needs: NATS on MLMESH_NATS_URL or 127.0.0.1:4222; /usr/bin/python3 with python3-fastapi,
// python3-uvicorn, python3-sklearn, python3-joblib, python3-onnx; wrk.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { InferenceService } from "../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RouterService } from "../gen/mlmesh/router/v1/router_service_pb.js";
import { EntityKeySchema, ValueSchema } from "../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../lib/clients.js";
import { freePorts } from "../test/support/ports.js";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh } from "../test/support/mlmesh-process.js";

const { values: opts } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    connections: { type: "string", default: "16" },
    save: { type: "boolean", default: false },
  },
});
const SECONDS = Number(opts.seconds);
const CONNECTIONS = Number(opts.connections);
const PY = "/usr/bin/python3";
const BASELINE = path.join(REPO_ROOT, "bench", "baseline");
const natsUrl = process.env.MLMESH_NATS_URL ?? "nats://127.0.0.1:4222";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-bench-mesh-"));
const made = spawnSync(PY, [path.join(BASELINE, "make_baseline_model.py"), work, "20"], { encoding: "utf8" });
if (made.status !== 0) throw new Error(`make_baseline_model.py failed: ${made.stderr}`);
const expected = JSON.parse(fs.readFileSync(path.join(work, "expected.json"), "utf8")) as {
  features: string[];
  rows: number[][];
  probabilities: number[][];
};
const N_USERS = 1000;
// The router replicates endpoints through the shared NATS stream: names unique to this run.
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;
const ENDPOINT = `bench-${RUN}`;
const MODEL = `bench_lr_${RUN}`;
const VIEW = `bench_users_${RUN}`;

// --- the mesh -----------------------------------------------------------------------------
// BENCH_PROFILE_DIR=DIR: the mesh process writes a CPU profile there when it stops.
const profileDir = process.env.BENCH_PROFILE_DIR;
const env = await isolatedEnv({
  MLMESH_NATS_URL: natsUrl,
  MLMESH_LOG_LEVEL: "warn",
  ...(profileDir ? { NODE_OPTIONS: `--import ${path.join(REPO_ROOT, "bench", "cpu-profile.mjs")}`, BENCH_PROFILE_DIR: profileDir } : {}),
});
const mesh = await startMlmesh(["up"], env, 60_000);
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, [MLMESH_BIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`mlmesh ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
};
const view = {
  name: VIEW,
  entities: ["user_id"],
  ttl: "3650d",
  features: expected.features.map((name) => ({ name, type: "float64" })),
};
fs.writeFileSync(path.join(work, "view.json"), JSON.stringify(view));
cli("features", "apply", path.join(work, "view.json"));
cli("features", "ingest", VIEW, path.join(work, "features.csv"));
const refs = expected.features.map((f) => `${VIEW}:${f}`).join(",");
cli("models", "push", path.join(work, "model.onnx"), "--name", MODEL, "--features", refs, "--entity", "user_id");
cli("models", "promote", MODEL, "1", "--to", "production");
fs.writeFileSync(path.join(work, "endpoint.json"), JSON.stringify({ name: ENDPOINT, model: MODEL, entities: ["user_id"] }));
cli("endpoints", "apply", path.join(work, "endpoint.json"));

// The mesh must give sklearn's numbers before its speed means anything.
const router = createServiceClient(RouterService, mesh.endpoint("router").grpc);
const inference = createServiceClient(InferenceService, mesh.endpoint("inference").grpc);
const entity = (i: number) =>
  create(EntityKeySchema, { keys: { user_id: create(ValueSchema, { kind: { case: "stringValue", value: `u${i}` } }) } });
for (let i = 0; i < expected.rows.length; i++) {
  const r = await router.predict({ endpoint: ENDPOINT, entityKey: entity(i) });
  const diff = Math.abs(r.score - expected.probabilities[i]![1]!);
  if (diff > 1e-5) throw new Error(`mesh score for u${i} is ${r.score}, sklearn says ${expected.probabilities[i]![1]} (diff ${diff})`);
}

// --- the FastAPI baseline -----------------------------------------------------------------
const [fastapiPort] = await freePorts(1);
const fastapi: ChildProcess = spawn(
  PY,
  ["-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", String(fastapiPort), "--log-level", "warning"],
  { cwd: BASELINE, env: { ...process.env, MODEL_PATH: path.join(work, "model.joblib") }, stdio: ["ignore", "ignore", "pipe"] },
);
for (let i = 0; ; i++) {
  try {
    const res = await fetch(`http://127.0.0.1:${fastapiPort}/predict`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ features: expected.rows[0] }),
    });
    const body = (await res.json()) as { score: number };
    if (Math.abs(body.score - expected.probabilities[0]![1]!) > 1e-9) throw new Error(`FastAPI answered ${body.score}`);
    break;
  } catch (err) {
    if (i > 100) throw err;
    await new Promise((r) => setTimeout(r, 100));
  }
}

// --- wrk, same script, same connections, one thread each ----------------------------------
const rows = fs.readFileSync(path.join(work, "features.csv"), "utf8").trim().split("\n").slice(1);
const fastapiBodies = path.join(work, "fastapi-bodies.txt");
fs.writeFileSync(fastapiBodies, rows.map((r) => JSON.stringify({ features: r.split(",").slice(2).map(Number) })).join("\n") + "\n");
const meshBodies = path.join(work, "mesh-bodies.txt");
fs.writeFileSync(
  meshBodies,
  Array.from({ length: N_USERS }, (_, i) => JSON.stringify({ endpoint: ENDPOINT, entityKey: { keys: { user_id: { stringValue: `u${i}` } } } })).join("\n") + "\n",
);

interface WrkResult {
  readonly requestsPerSec: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly errors: number;
  /** CPU time (user + system, every thread) the server spent per request: load-independent. */
  readonly serverCpuUsPerRequest: number;
}

/** User + system CPU ms so far of a process (every thread, children excluded) or one of its threads (Linux /proc). */
function cpuMs(pid: number, thread?: number): number {
  const f = fs.readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ is 100 on Linux
}

function wrk(url: string, bodies: string, serverPid: number): WrkResult {
  const cpu0 = cpuMs(serverPid);
  const r = spawnSync(
    "wrk",
    ["-t", "1", "-c", String(CONNECTIONS), "-d", `${SECONDS}s`, "--latency", "-s", path.join(BASELINE, "post.lua"), url, "--", bodies],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const ms = (label: string) => {
    const m = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(r.stdout);
    if (!m) throw new Error(`no ${label} in wrk output:\n${r.stdout}`);
    return Number(m[1]) * (m[2] === "us" ? 1e-3 : m[2] === "s" ? 1e3 : 1);
  };
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(r.stdout);
  const sockErr = /Socket errors:.*?connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const errors = Number(non2xx?.[1] ?? 0) + (sockErr ? sockErr.slice(1).reduce((s, x) => s + Number(x), 0) : 0);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
  const serverCpuUsPerRequest = requests > 0 ? Math.round(((cpuMs(serverPid) - cpu0) * 1000) / requests) : 0;
  return { requestsPerSec: Number(rps?.[1] ?? 0), p50ms: ms("50%"), p99ms: ms("99%"), errors, serverCpuUsPerRequest };
}

const meshUrl = `${mesh.endpoint("router").http}/mlmesh.router.v1.RouterService/Predict`;
const meshPid = mesh.proc.pid!;
wrk(meshUrl, meshBodies, meshPid); // warm-up: JIT, caches, SQLite pages
// The main thread's share (the event loop every RPC runs on; session workers are the rest).
const mainThreadCpuMs = () => cpuMs(meshPid, meshPid);
const main0 = mainThreadCpuMs();
const meshResult = wrk(meshUrl, meshBodies, meshPid);
const meshRequests = meshResult.requestsPerSec * SECONDS;
const meshMainThreadCpuUsPerRequest = Math.round(((mainThreadCpuMs() - main0) * 1000) / Math.max(1, meshRequests));
wrk(`http://127.0.0.1:${fastapiPort}/predict`, fastapiBodies, fastapi.pid!);
const fastapiResult = wrk(`http://127.0.0.1:${fastapiPort}/predict`, fastapiBodies, fastapi.pid!);
fastapi.kill("SIGTERM");

// --- Predict vs Score over gRPC from one Node client --------------------------------------
const inputRow = (i: number) => expected.rows[i % expected.rows.length]!;
async function closedLoop(concurrency: number, call: (i: number) => Promise<unknown>, seconds: number) {
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await call(n++);
        lat.push(performance.now() - t);
      }
    }),
  );
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  return { requestsPerSec: lat.length / seconds, p50ms: q(0.5), p99ms: q(0.99) };
}
const scoreCall = (i: number) =>
  inference.score({
    modelRef: `${MODEL}@production`,
    inputs: {
      case: "rows",
      value: { rows: [{ values: Object.fromEntries(expected.features.map((f, j) => [`${VIEW}:${f}`, create(ValueSchema, { kind: { case: "doubleValue", value: inputRow(i)[j]! } })])) }] },
    },
  });
// A failed call ends the run with the mesh's own account of it (its last warnings).
const failWithMeshLog = (e: unknown) => {
  const tail = mesh.stderr().split("\n").filter((l) => !l.includes('"level":"info"')).slice(-40).join("\n");
  console.error(`FAILED: ${(e as Error)?.message ?? e}\n--- mlmesh up, last warnings ---\n${tail}`);
  process.exit(1);
};
process.on("uncaughtException", failWithMeshLog);
process.on("unhandledRejection", failWithMeshLog);
const predictCall = (i: number) => router.predict({ endpoint: ENDPOINT, entityKey: entity(i % N_USERS) });
const grpcCells: Array<Record<string, string | number>> = [];
for (const c of [1, 16]) {
  await closedLoop(c, scoreCall, 1);
  grpcCells.push({ cell: "inference Score (gRPC)", concurrency: c, ...(await closedLoop(c, scoreCall, Math.max(3, SECONDS / 2))) });
  await closedLoop(c, predictCall, 1);
  grpcCells.push({ cell: "router Predict (gRPC, full mesh)", concurrency: c, ...(await closedLoop(c, predictCall, Math.max(3, SECONDS / 2))) });
}
await mesh.stop("SIGTERM");

const round = (x: number, d = 3) => Number(x.toFixed(d));
const table = [
  { cell: "FastAPI + sklearn /predict (wrk)", ...fastapiResult },
  { cell: "mlmesh Connect JSON Predict (wrk)", ...meshResult },
].map((r) => ({ ...r, requestsPerSec: round(r.requestsPerSec, 0) }));
console.log(`\nwrk: ${CONNECTIONS} connections, 1 thread, ${SECONDS} s each, same Lua POST script`);
console.table(table);
console.table(grpcCells.map((r) => ({ ...r, requestsPerSec: round(Number(r.requestsPerSec), 0), p50ms: round(Number(r.p50ms)), p99ms: round(Number(r.p99ms)) })));
const summary = {
  meshOverFastapiRps: round(meshResult.requestsPerSec / fastapiResult.requestsPerSec, 2),
  meshP99VsFastapiP99: round(meshResult.p99ms / fastapiResult.p99ms, 2),
  predictOverScoreP50AtC1: round(Number(grpcCells[1]!.p50ms) / Number(grpcCells[0]!.p50ms), 2),
  // CPU per request does not move with the machine's load the way requests/s does.
  meshCpuUsPerRequest: meshResult.serverCpuUsPerRequest,
  meshMainThreadCpuUsPerRequest,
  fastapiCpuUsPerRequest: fastapiResult.serverCpuUsPerRequest,
  meshOverFastapiCpuPerRequest: round(meshResult.serverCpuUsPerRequest / Math.max(1, fastapiResult.serverCpuUsPerRequest), 2),
};
console.log(summary);
if (opts.save) {
  fs.writeFileSync(
    path.join(REPO_ROOT, "bench", "results-mesh.json"),
    `${JSON.stringify({ date: new Date().toISOString(), seconds: SECONDS, connections: CONNECTIONS, wrk: table, grpc: grpcCells, summary }, null, 2)}\n`,
  );
}
fs.rmSync(work, { recursive: true, force: true });
process.exit(0);
