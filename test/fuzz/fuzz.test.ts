// Hostile input against the real mesh: `mlmesh up` (all five services) on a NATS server of
// this test's own, and every method of every service from the generated descriptors
// (mlmesh.*, inference.GRPCInferenceService, grpc.health.v1) sent the corpus of
// test/fuzz/corpus.ts over gRPC (raw bytes through grpc-js) and Connect JSON (HTTP/1.1).
// Asserted: the process never dies and every service stays SERVING; no answer is INTERNAL
// or UNKNOWN (nor a 500, a hang or a broken stream); RSS stays bounded; a path-traversal
// payload in any name-like field is refused (INVALID_ARGUMENT / NOT_FOUND) and nothing is
// written outside the data dir. MLMESH_FUZZ_SEED=<n> reruns a given corpus.
//
// Findings already routed to their owners are listed in KNOWN below: while one still
// reproduces it is reported as a `todo` subtest naming the case (method, kind, index, recipe)
// instead of failing the run; once fixed it stops appearing. Any other finding fails.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { GRPCInferenceService } from "../../gen/inference/grpc_service_pb.js";
import { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { connectJsonCall } from "../support/connect-json.js";
import { grpcJsClient } from "../support/grpc-js-client.js";
import { processMemory } from "../support/metrics-scrape.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { hasNatsServerBinary, startPrivateNats, type TestNats } from "../support/nats.js";
import { RawGrpcClient } from "../support/raw-grpc.js";
import { corpusBytes, methodCases, type FuzzCase } from "./corpus.js";

const SEED = Number(process.env.MLMESH_FUZZ_SEED ?? 20261128);
/** Small on purpose: "huge" payloads are this big, which keeps the run short. */
const MAX_MESSAGE_BYTES = 1 << 20;
const CALL_DEADLINE_MS = 15_000;
const CONCURRENCY = 6;
/** Peak RSS may grow at most this much over the idle process while fuzzed. */
const RSS_GROWTH_LIMIT = 768 * 1024 * 1024;

type Host = "registry" | "features" | "inference" | "router" | "experiments";
const TARGETS: ReadonlyArray<{ service: DescService; host: Host }> = [
  { service: Health, host: "registry" },
  { service: RegistryService, host: "registry" },
  { service: FeatureService, host: "features" },
  { service: InferenceService, host: "inference" },
  { service: GRPCInferenceService, host: "inference" },
  { service: RouterService, host: "router" },
  { service: ExperimentService, host: "experiments" },
];

/**
 * Findings routed to their owners (key: "<path> <kind>"; value: why, and who). A finding
 * listed here does not fail the run; it becomes a todo subtest with its reproduction.
 */
const KNOWN: Readonly<Record<string, string>> = {
};

interface Finding {
  readonly path: string;
  readonly case: FuzzCase;
  outcome: string;
  readonly why: string;
}

const FORBIDDEN_GRPC = new Set(["INTERNAL", "UNKNOWN", "DATA_LOSS"]);
const FORBIDDEN_CONNECT = new Set(["internal", "unknown", "data_loss", "http_500", "http_502", "http_503", "transport_error", "client_timeout", "no_end_stream", "bad_end_stream"]);

async function pool<T>(items: readonly T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) walk(p, out);
  }
  return out;
}

describe("hostile input: every method, gRPC and Connect JSON", { skip: hasNatsServerBinary() ? false : "needs nats-server on PATH" }, () => {
  let nats: TestNats;
  let mesh: MlmeshProcess;
  const raw = new Map<Host, RawGrpcClient>();

  before(async () => {
    nats = await startPrivateNats();
    mesh = await startMlmesh(
      ["up"],
      await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "error", MLMESH_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) }),
      60_000,
    );
    for (const t of TARGETS) if (!raw.has(t.host)) raw.set(t.host, new RawGrpcClient(mesh.endpoint(t.host).grpc));
  });
  after(async () => {
    for (const c of raw.values()) c.close();
    await mesh?.stop("SIGKILL");
    await nats?.stop();
  });

  async function allServing(): Promise<string[]> {
    const down: string[] = [];
    if (mesh.proc.exitCode !== null || mesh.proc.signalCode !== null) return [`process exited (${mesh.proc.exitCode ?? mesh.proc.signalCode})`];
    for (const host of ["registry", "features", "inference", "router", "experiments"] as const) {
      const c = grpcJsClient(Health, mesh.endpoint(host).grpc);
      try {
        const r = await c.unary("Check", HealthCheckRequestSchema, HealthCheckResponseSchema, { service: "" }, { deadlineMs: 10_000 });
        if (r.status !== ServingStatus.SERVING) down.push(`${host}: ${ServingStatus[r.status]}`);
      } catch (err) {
        down.push(`${host}: ${(err as Error).message}`);
      } finally {
        c.close();
      }
    }
    return down;
  }

  async function send(host: Host, service: DescService, method: DescMethod, c: FuzzCase): Promise<{ code: string; detail: string; ms: number }> {
    const p = `/${service.typeName}/${method.name}`;
    const watch = service === Health && method.name === "Watch";
    if (c.transport === "grpc") {
      const r = await raw.get(host)!.call(p, method.methodKind, c.frames as Uint8Array[], watch ? 1000 : CALL_DEADLINE_MS);
      return { code: r.code, detail: r.details, ms: r.ms };
    }
    const streaming = method.methodKind !== "unary";
    const r = await connectJsonCall(mesh.endpoint(host).http, p, streaming, c.frames as string[], watch ? 1000 : CALL_DEADLINE_MS);
    return { code: r.code, detail: r.message, ms: r.ms };
  }

  function judge(service: DescService, method: DescMethod, c: FuzzCase, code: string): string | undefined {
    const watch = service === Health && method.name === "Watch";
    if (c.transport === "grpc") {
      if (FORBIDDEN_GRPC.has(code)) return `answered ${code}`;
      if (code === "DEADLINE_EXCEEDED" && !watch) return `no answer within ${CALL_DEADLINE_MS} ms`;
      // A List* filter matching nothing is an empty page, not a lookup of the name.
      const filter = method.name.startsWith("List") && code === "OK";
      if (c.expect && code !== "UNIMPLEMENTED" && !filter && !c.expect.includes(code)) return `traversal answered ${code}, want ${c.expect.join(" or ")}`;
      return undefined;
    }
    if (FORBIDDEN_CONNECT.has(code)) return `answered ${code}`;
    if (code === "deadline_exceeded" && !watch) return `no answer within ${CALL_DEADLINE_MS} ms`;
    if (c.expect && code !== "unimplemented" && !(method.name.startsWith("List") && code === "ok") && !c.expect.includes(code)) return `traversal answered ${code}, want ${c.expect.join(" or ")}`;
    return undefined;
  }

  it(`sends the seeded corpus (seed ${SEED}) to every method; nothing crashes, leaks or answers INTERNAL`, { timeout: 600_000 }, async (t) => {
    const started = Date.now();
    const baseline = await processMemory(mesh.endpoint("inference").http);
    let peakRss = baseline.rssBytes;
    const sampler = setInterval(() => {
      processMemory(mesh.endpoint("inference").http)
        .then((m) => void (peakRss = Math.max(peakRss, m.rssBytes)))
        .catch(() => undefined);
    }, 1000);
    const findings: Finding[] = [];
    const codes = new Map<string, number>();
    let cases = 0;
    let bytes = 0;
    let methods = 0;
    const perService: string[] = [];
    try {
      for (const { service, host } of TARGETS) {
        const t0 = Date.now();
        let n = 0;
        for (const method of service.methods) {
          methods++;
          const list = methodCases(service, method, { seed: SEED, maxMessageBytes: MAX_MESSAGE_BYTES });
          cases += list.length;
          n += list.length;
          bytes += corpusBytes(list);
          const p = `/${service.typeName}/${method.name}`;
          await pool(list, CONCURRENCY, async (c) => {
            const r = await send(host, service, method, c);
            codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
            const why = judge(service, method, c, r.code);
            if (why) findings.push({ path: p, case: c, outcome: `${r.code}: ${r.detail.slice(0, 160)}`, why });
          });
          const down = await allServing();
          assert.deepEqual(down, [], `after ${p} (seed ${SEED}) a service is down: ${down.join("; ")}\n${mesh.stderr().slice(-3000)}`);
        }
        perService.push(`${service.typeName}: ${service.methods.length} methods, ${n} cases, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      }
    } finally {
      clearInterval(sampler);
    }
    const end = await processMemory(mesh.endpoint("inference").http);
    peakRss = Math.max(peakRss, end.rssBytes);
    const seconds = (Date.now() - started) / 1000;
    const mib = (b: number) => (b / 1048576).toFixed(0);
    t.diagnostic(`fuzz corpus: seed ${SEED}, ${methods} methods, ${cases} cases, ${(bytes / 1048576).toFixed(1)} MiB, ${seconds.toFixed(1)} s`);
    for (const line of perService) t.diagnostic(`  ${line}`);
    t.diagnostic(`answers: ${[...codes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(" ")}`);
    t.diagnostic(`RSS: idle ${mib(baseline.rssBytes)} MiB, peak ${mib(peakRss)} MiB, end ${mib(end.rssBytes)} MiB; heap used end ${mib(end.heapUsedBytes)} MiB`);
    console.log(`fuzz: seed ${SEED}: ${methods} methods, ${cases} cases (${(bytes / 1048576).toFixed(1)} MiB) in ${seconds.toFixed(1)} s; RSS idle ${mib(baseline.rssBytes)} / peak ${mib(peakRss)} / end ${mib(end.rssBytes)} MiB`);

    // Nothing named by a traversal payload may exist outside (or, renamed, inside) the data dir.
    const escaped = [
      "/tmp/fuzz-escape-abs",
      path.join(mesh.dataDir, "..", "fuzz-escape"),
      path.join(os.tmpdir(), "fuzz-escape"),
      path.resolve(mesh.dataDir, "../../fuzz-escape"),
    ].filter((p) => fs.existsSync(p));
    const inside = walk(mesh.dataDir).filter((p) => /fuzz-escape/.test(path.basename(p)));
    assert.deepEqual(escaped, [], "a traversal payload wrote outside the data dir");
    assert.deepEqual(inside, [], "a traversal payload became a file name in the data dir");

    // INTERNAL answers name a trace id; the server's log line under it says what broke. Read
    // at the end: the (asynchronous) log line can land after the answer.
    const logLines = mesh.stderr().split("\n");
    for (const f of findings) {
      const trace = /trace ([0-9a-f]{32})/.exec(f.outcome)?.[1];
      const line = trace ? logLines.find((l) => l.includes(trace)) : undefined;
      const err = line ? /"err":\{"type":"([^"]*)","message":"([^"]{0,200})/.exec(line) : null;
      if (err) f.outcome += ` | server log: ${err[1]}: ${err[2]}`;
    }
    const known = findings.filter((f) => KNOWN[`${f.path} ${f.case.kind}`]);
    const unknown = findings.filter((f) => !KNOWN[`${f.path} ${f.case.kind}`]);
    const describeFinding = (f: Finding) =>
      `${f.path} [${f.case.transport} ${f.case.kind} #${f.case.index}: ${f.case.recipe}] -> ${f.outcome} (${f.why})`;
    // One todo subtest per known finding class, with how many cases hit it and the first one.
    const byKey = new Map<string, Finding[]>();
    for (const f of known) byKey.set(`${f.path} ${f.case.kind}`, [...(byKey.get(`${f.path} ${f.case.kind}`) ?? []), f]);
    for (const [key, fs_] of byKey) {
      await t.test(`KNOWN ${key} (${fs_.length} cases)`, { todo: KNOWN[key] }, () => {
        assert.fail(`${fs_.length} cases, e.g. ${describeFinding(fs_[0]!)}`);
      });
    }
    assert.ok(peakRss - baseline.rssBytes < RSS_GROWTH_LIMIT, `RSS grew from ${mib(baseline.rssBytes)} to ${mib(peakRss)} MiB`);
    assert.equal(unknown.length, 0, `${unknown.length} findings (reproduce with MLMESH_FUZZ_SEED=${SEED}):\n${unknown.slice(0, 80).map(describeFinding).join("\n")}`);
  });
});
