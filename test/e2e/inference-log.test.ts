// The prediction log through real processes: `mlmesh serve registry` and `mlmesh serve
// inference` on a NATS server of this test's own, which it stops and starts again. Every
// scored row is one PredictionLogged record on `mlmesh.inference.predictions.<model>`;
// rows scored while NATS is down are spooled locally and replayed when it is back: exactly
// N+M records, none duplicated, in row order within each batch.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { connect, type NatsConnection } from "nats";
import { PredictionLogBatchSchema } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { freePort } from "../support/ports.js";

const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const rowOf = (i: number) => ({
  values: Object.fromEntries(FEATURES.map((f, c) => [f.split(":")[1]!, { kind: { case: "floatValue" as const, value: i + c } }])),
  entity: { keys: { account_id: { kind: { case: "stringValue" as const, value: `a${i}` } } } },
});

function natsBinary(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).concat(["/usr/sbin", "/usr/local/bin"])) {
    const c = path.join(dir, "nats-server");
    if (fs.existsSync(c)) return c;
  }
  return undefined;
}

async function waitPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nats-server did not listen on ${port}`);
}

/** A nats-server of this test's own, on a fixed port and store dir, so it can be down for a while. */
class OwnNats {
  proc: ChildProcess | undefined;
  readonly storeDir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-nats-log-"));
  constructor(
    readonly bin: string,
    readonly port: number,
  ) {}
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.proc = spawn(this.bin, ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.storeDir], { stdio: "ignore" });
    await waitPort(this.port);
  }
  async down(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await exited;
  }
  async dispose(): Promise<void> {
    await this.down();
    fs.rmSync(this.storeDir, { recursive: true, force: true });
  }
}

interface Seen {
  batches: number;
  msgIds: string[];
  records: Array<{ requestId: string; rowIndex: number }>;
  orderedWithinBatches: boolean;
}

/** Reads every batch on the subject from the start of the stream (an ordered consumer). */
async function readAll(nc: NatsConnection, subject: string): Promise<Seen> {
  const js = nc.jetstream();
  const consumer = await js.consumers.get("MLMESH_INFERENCE", { filterSubjects: subject });
  const seen: Seen = { batches: 0, msgIds: [], records: [], orderedWithinBatches: true };
  const info = await (await nc.jetstreamManager()).streams.info("MLMESH_INFERENCE", { subjects_filter: subject });
  const total = info.state.subjects?.[subject] ?? 0;
  while (seen.batches < total) {
    const msgs = await consumer.fetch({ max_messages: 256, expires: 1000 });
    let got = 0;
    for await (const m of msgs) {
      got++;
      seen.batches++;
      seen.msgIds.push(m.headers?.get("Nats-Msg-Id") ?? "");
      const batch = fromBinary(PredictionLogBatchSchema, m.data);
      let prev: { requestId: string; rowIndex: number } | undefined;
      for (const r of batch.records) {
        const cur = { requestId: r.requestId, rowIndex: r.rowIndex };
        if (prev && prev.requestId === cur.requestId && cur.rowIndex !== prev.rowIndex + 1) seen.orderedWithinBatches = false;
        seen.records.push(cur);
        prev = cur;
      }
    }
    if (got === 0) break;
  }
  return seen;
}

async function waitForCount(nc: NatsConnection, subject: string, want: number, timeoutMs = 12_000): Promise<Seen> {
  const deadline = Date.now() + timeoutMs;
  let seen = await readAll(nc, subject);
  while (seen.records.length < want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    seen = await readAll(nc, subject);
  }
  return seen;
}

const bin = natsBinary();

describe("inference: prediction log with a NATS outage", { skip: bin ? false : "needs nats-server on PATH" }, () => {
  let nats: OwnNats;
  let registryProc: MlmeshProcess;
  let inferenceProc: MlmeshProcess;
  let inference: ReturnType<typeof createServiceClient<typeof InferenceService>>;
  const model = `plog_${Date.now()}`;
  const subject = `mlmesh.inference.predictions.${model}`;

  before(async () => {
    nats = new OwnNats(bin!, await freePort());
    await nats.start();
    registryProc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }));
    inferenceProc = await startMlmesh(
      ["serve", "inference"],
      await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn", MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc }),
    );
    const registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
    inference = createServiceClient(InferenceService, inferenceProc.endpoint("inference").grpc);
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } } });
  });
  after(async () => {
    await inferenceProc?.stop();
    await registryProc?.stop();
    await nats?.dispose();
  });

  it("logs every scored row once, spooling while NATS is down and replaying after", async () => {
    const score = (from: number, n: number, requestId: string) =>
      inference.score({ modelRef: `${model}@1`, requestId, inputs: { case: "rows", value: { rows: Array.from({ length: n }, (_, i) => rowOf(from + i)) } } });

    // N rows while NATS is up.
    const N = 4 * 150;
    for (let q = 0; q < 4; q++) await score(q * 150, 150, `up-${q}`);
    let nc = await connect({ servers: nats.url });
    const first = await waitForCount(nc, subject, N);
    assert.equal(first.records.length, N);
    const one = first.records[0]!;
    assert.equal(one.requestId, "up-0");
    await nc.close();

    // M rows while it is down: scoring still answers; the records go to the spool.
    await nats.down();
    const M = 5 * 40;
    for (let q = 0; q < 5; q++) {
      const res = await score(10_000 + q * 40, 40, `down-${q}`);
      assert.equal(res.outputs.length, 40);
      await new Promise((r) => setTimeout(r, 150));
    }
    const spool = path.join(inferenceProc.dataDir, "inference", "prediction-log.spool");
    const deadline = Date.now() + 6000;
    while (Date.now() < deadline && !(fs.existsSync(spool) && fs.statSync(spool).size > 0)) await new Promise((r) => setTimeout(r, 100));
    assert.ok(fs.existsSync(spool) && fs.statSync(spool).size > 0, "records spooled while NATS is down");

    // Back up: the spool replays in order with the original msg ids.
    await nats.start();
    nc = await connect({ servers: nats.url });
    try {
      const all = await waitForCount(nc, subject, N + M);
      assert.equal(all.records.length, N + M, "exactly N+M records");
      const keys = new Set(all.records.map((r) => `${r.requestId}#${r.rowIndex}`));
      assert.equal(keys.size, N + M, "no record duplicated");
      assert.equal(new Set(all.msgIds).size, all.msgIds.length, "no batch stored twice");
      assert.ok(all.orderedWithinBatches, "rows of a request are in order within each batch");
      for (let q = 0; q < 5; q++) for (let i = 0; i < 40; i++) assert.ok(keys.has(`down-${q}#${i}`));
      // The order of requests survives the outage.
      const firstIndex = (id: string) => all.records.findIndex((r) => r.requestId === id);
      for (let q = 1; q < 5; q++) assert.ok(firstIndex(`down-${q - 1}`) < firstIndex(`down-${q}`));
      assert.ok(firstIndex("up-3") < firstIndex("down-0"));
      // The spool is emptied once everything in it is acked.
      const until = Date.now() + 5000;
      while (Date.now() < until && fs.statSync(spool).size > 0) await new Promise((r) => setTimeout(r, 100));
      assert.equal(fs.statSync(spool).size, 0);
      const metrics = await (await fetch(`${inferenceProc.endpoint("inference").http}/metrics`)).text();
      assert.match(metrics, new RegExp(`mlmesh_inference_prediction_log_records_total\\{model="${model}"\\} ${N + M}`));
      assert.match(metrics, /mlmesh_inference_prediction_log_records_spooled_total [1-9]/);
    } finally {
      await nc.close();
    }
  });
});
