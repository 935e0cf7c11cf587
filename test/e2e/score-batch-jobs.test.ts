// Batch scoring as server-side jobs (StartBatchJob / GetBatchJob / ListBatchJobs /
// CancelBatchJob) in a real `mlmesh serve inference` with a real registry on real NATS:
// results in a CSV file or a SQLite table under the data dir equal numpy's scores, progress
// is reported, a bad row fails the job with its line, and a running job can be cancelled.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { BatchJobState, FileFormat, type BatchJob } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { closeAllClients, createServiceClient } from "../../lib/clients.js";
import { readCsvColumns } from "../../lib/drift/csv-drift.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const BATCH = path.join(REPO_ROOT, "test/fixtures/batch");
const EXPECTED = JSON.parse(fs.readFileSync(path.join(BATCH, "expected.json"), "utf8")) as { ids: string[]; scores: number[] };
const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];

const code = (c: Code, re?: RegExp) => (e: unknown) => {
  const err = ConnectError.from(e);
  assert.equal(err.code, c, `expected ${Code[c]}, got ${Code[err.code]}: ${err.rawMessage}`);
  if (re) assert.match(err.rawMessage, re);
  return true;
};

describe("inference batch jobs", () => {
  let nats: TestNats;
  let registryProc: MlmeshProcess;
  let inferenceProc: MlmeshProcess;
  let inference: ReturnType<typeof createServiceClient<typeof InferenceService>>;
  let dataDir: string;
  const model = `churn_jobs_${Date.now()}`;

  const waitEnded = async (id: string, timeoutMs = 60_000): Promise<BatchJob> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { job } = await inference.getBatchJob({ jobId: id });
      if (job!.state >= BatchJobState.SUCCEEDED) return job!;
      if (Date.now() > deadline) throw new Error(`job ${id} still ${BatchJobState[job!.state]}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  before(async () => {
    nats = await testNats();
    registryProc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }));
    const env = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn", MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc });
    dataDir = env.MLMESH_DATA_DIR!;
    inferenceProc = await startMlmesh(["serve", "inference"], env);
    const registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
    inference = createServiceClient(InferenceService, inferenceProc.endpoint("inference").grpc);
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } } });
    fs.mkdirSync(path.join(dataDir, "in"), { recursive: true });
    fs.copyFileSync(path.join(BATCH, "churn.csv"), path.join(dataDir, "in/churn.csv"));
    fs.copyFileSync(path.join(BATCH, "churn_bad.csv"), path.join(dataDir, "in/churn_bad.csv"));
  });
  after(async () => {
    closeAllClients();
    await inferenceProc?.stop();
    await registryProc?.stop();
    await nats?.stop();
  });

  it("scores a file into a CSV file under the data dir, reporting progress and the resolved version", async () => {
    const { job } = await inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/churn.csv", outputPath: "out/scored.csv" } });
    assert.equal(job!.state, BatchJobState.QUEUED);
    const done = await waitEnded(job!.jobId);
    assert.equal(done.state, BatchJobState.SUCCEEDED, done.error);
    assert.equal(done.modelName, model);
    assert.equal(done.version, 1n);
    assert.equal(done.rowsRead, 1000n);
    assert.equal(done.rowsScored, 1000n);
    assert.ok(done.rowsPerSecond > 0);
    assert.ok(done.startTime && done.endTime);
    const csv = await readCsvColumns(path.join(dataDir, "out/scored.csv"));
    assert.deepEqual(csv.columns.get("account_id"), EXPECTED.ids);
    const worst = Math.max(...csv.columns.get("score")!.map((s, i) => Math.abs(Number(s) - EXPECTED.scores[i]!)));
    assert.ok(worst <= 1e-6, `max abs diff ${worst}`);
    assert.ok(csv.columns.get("model_version")!.every((v) => v === "1"));
  });

  it("writes a Parquet file when the output path says so", async () => {
    const { job } = await inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/churn.csv", outputPath: "out/scored.parquet" } });
    const done = await waitEnded(job!.jobId);
    assert.equal(done.state, BatchJobState.SUCCEEDED, done.error);
    const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(path.join(dataDir, "out/scored.parquet")) })) as Array<Record<string, unknown>>;
    assert.equal(rows.length, 1000);
    const worst = Math.max(...rows.map((x, i) => Math.abs((x.score as number) - EXPECTED.scores[i]!)));
    assert.ok(worst <= 1e-6, `max abs diff ${worst}`);
  });

  it("writes to a new SQLite table, and refuses a table that exists", async () => {
    const table = `scores_${Date.now()}`;
    const { job } = await inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/churn.csv", inputFormat: FileFormat.CSV, outputPath: table } });
    const done = await waitEnded(job!.jobId);
    assert.equal(done.state, BatchJobState.SUCCEEDED, done.error);
    const db = new Database(path.join(dataDir, "inference/batch-results.db"), { readonly: true });
    try {
      const rows = db.prepare(`SELECT account_id, model_name, model_version, score FROM ${table}`).all() as Array<{ account_id: string; model_name: string; model_version: number; score: number }>;
      assert.equal(rows.length, 1000);
      assert.equal(rows[0]!.model_name, model);
      assert.equal(rows[0]!.model_version, 1);
      const byId = new Map(rows.map((r) => [r.account_id, r.score]));
      const worst = Math.max(...EXPECTED.ids.map((id, i) => Math.abs(byId.get(id)! - EXPECTED.scores[i]!)));
      assert.ok(worst <= 1e-6, `max abs diff ${worst}`);
    } finally {
      db.close();
    }
    await assert.rejects(inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/churn.csv", outputPath: table } }), code(Code.InvalidArgument, /job\.output_path.*already exists/));
  });

  it("fails on a bad row with its line, or rejects it with skip_bad_rows", async () => {
    const { job } = await inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/churn_bad.csv", outputPath: "out/bad.csv" } });
    const failed = await waitEnded(job!.jobId);
    assert.equal(failed.state, BatchJobState.FAILED);
    assert.equal(failed.errorLine, 6n);
    assert.match(failed.error, /line 6, column "acct:calls": "abc" is not a number/);
    const skip = await inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/churn_bad.csv", outputPath: "out/skipped.csv", skipBadRows: true } });
    const ok = await waitEnded(skip.job!.jobId);
    assert.equal(ok.state, BatchJobState.SUCCEEDED, ok.error);
    assert.equal(ok.rowsScored, 18n);
    assert.equal(ok.rowsRejected, 2n);
    const rejects = await readCsvColumns(path.join(dataDir, ok.rejectPath));
    assert.deepEqual(rejects.columns.get("line"), ["6", "15"]);
  });

  it("cancels a running job; rows already written stay; a second cancel is FAILED_PRECONDITION", async () => {
    // 400k rows: long enough to be caught running on a loaded 2-core machine.
    const big = path.join(dataDir, "in/big.csv");
    const src = fs.readFileSync(path.join(BATCH, "churn.csv"), "utf8").trimEnd().split("\n");
    const body = src.slice(1).join("\n");
    fs.writeFileSync(big, `${src[0]}\n${Array.from({ length: 400 }, () => body).join("\n")}\n`);
    const { job } = await inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/big.csv", outputPath: "out/big.csv" } });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { job: j } = await inference.getBatchJob({ jobId: job!.jobId });
      if (j!.state === BatchJobState.RUNNING && j!.rowsScored > 0n) break;
      assert.ok(j!.state <= BatchJobState.RUNNING, `job ended before it could be cancelled: ${BatchJobState[j!.state]}`);
      assert.ok(Date.now() < deadline, "job never started");
      await new Promise((r) => setTimeout(r, 20));
    }
    const { job: cancelled } = await inference.cancelBatchJob({ jobId: job!.jobId });
    assert.equal(cancelled!.state, BatchJobState.CANCELLED);
    assert.ok(cancelled!.rowsScored > 0n && cancelled!.rowsScored < 400_000n, `scored ${cancelled!.rowsScored}`);
    assert.ok(fs.existsSync(path.join(dataDir, "out/big.csv.partial")));
    assert.equal(fs.existsSync(path.join(dataDir, "out/big.csv")), false);
    await assert.rejects(inference.cancelBatchJob({ jobId: job!.jobId }), code(Code.FailedPrecondition, /already ended/));
  });

  it("lists jobs newest first, paged; refuses bad input naming the field", async () => {
    const first = await inference.listBatchJobs({ pageSize: 2 });
    assert.equal(first.jobs.length, 2);
    assert.notEqual(first.nextPageToken, "");
    const rest = await inference.listBatchJobs({ pageSize: 100, pageToken: first.nextPageToken });
    const all = [...first.jobs, ...rest.jobs];
    assert.equal(all.length, 6);
    assert.equal(all[0]!.inputPath, "in/big.csv");
    const times = all.map((j) => Number(j.createTime!.seconds) * 1e9 + j.createTime!.nanos);
    assert.deepEqual(times, [...times].sort((a, b) => b - a));
    await assert.rejects(inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "../etc/passwd.csv", outputPath: "x.csv" } }), code(Code.InvalidArgument, /job\.input_path/));
    await assert.rejects(inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/none.csv", outputPath: "x.csv" } }), code(Code.InvalidArgument, /job\.input_path.*does not exist/));
    await assert.rejects(inference.startBatchJob({ job: { modelRef: `${model}@1`, inputPath: "in/churn.csv", outputPath: "bad-table!" } }), code(Code.InvalidArgument, /job\.output_path/));
    await assert.rejects(inference.getBatchJob({ jobId: "nope" }), code(Code.NotFound));
  });
});
