// `mlmesh score-batch` through the CLI binary against a real registry (on real NATS): scores
// equal numpy's (test/fixtures/batch/make_batch.py), rows keep their columns and gain the
// model name and version, a bad row stops the run naming its line and column, and
// --skip-bad-rows writes it to a reject file instead; Parquet in and out.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { closeAllClients, createServiceClient } from "../../lib/clients.js";
import { asyncBufferFromFile, parquetReadObjects } from "hyparquet";
import { ParquetSink } from "../../lib/batch-scoring/parquet-writer.js";
import { readCsvColumns } from "../../lib/drift/csv-drift.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const BATCH = path.join(REPO_ROOT, "test/fixtures/batch");
const EXPECTED = JSON.parse(fs.readFileSync(path.join(BATCH, "expected.json"), "utf8")) as { ids: string[]; scores: number[] };
const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];

describe("mlmesh score-batch", () => {
  let nats: TestNats;
  let env: Record<string, string>;
  let registryProc: MlmeshProcess;
  let dir: string;
  const model = `churn_batch_${Date.now()}`;

  const run = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [MLMESH_BIN, "score-batch", ...args], {
        cwd: REPO_ROOT,
        env: { ...process.env, ...env, MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc, MLMESH_LOG_LEVEL: "warn" },
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      child.on("exit", (code) => resolve({ code, out, err }));
    });

  before(async () => {
    nats = await testNats();
    env = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" });
    registryProc = await startMlmesh(["serve", "registry"], env);
    const registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } } });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-score-batch-"));
  });
  after(async () => {
    closeAllClients();
    await registryProc?.stop();
    await nats?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("scores every row as numpy does, keeping the input columns and adding model name and version", async () => {
    const out = path.join(dir, "scored.csv");
    const r = await run([`${model}@1`, "--in", path.join(BATCH, "churn.csv"), "--out", out, "--batch-rows", "128", "--json"]);
    assert.equal(r.code, 0, r.err);
    const summary = JSON.parse(r.out) as Record<string, unknown>;
    assert.equal(summary.model_name, model);
    assert.equal(summary.model_version, 1);
    assert.equal(summary.rows_scored, 1000);
    assert.equal(summary.rows_rejected, 0);
    assert.ok((summary.rows_per_second as number) > 0);
    const csv = await readCsvColumns(out);
    assert.deepEqual(csv.header, ["account_id", "note", "tenure", "calls", "spend", "model_name", "model_version", "score"]);
    assert.equal(csv.rows, 1000);
    assert.deepEqual(csv.columns.get("account_id"), EXPECTED.ids);
    assert.equal(csv.columns.get("note")![7], 'note 7, "quoted"');
    assert.ok(csv.columns.get("model_name")!.every((m) => m === model));
    assert.ok(csv.columns.get("model_version")!.every((v) => v === "1"));
    const scores = csv.columns.get("score")!.map(Number);
    const worst = Math.max(...scores.map((s, i) => Math.abs(s - EXPECTED.scores[i]!)));
    assert.ok(worst <= 1e-6, `max abs diff from numpy ${worst}`);
    assert.equal(fs.existsSync(`${out}.partial`), false);
  });

  it("stops at a bad row, naming its line and column, and leaves no output", async () => {
    const out = path.join(dir, "bad.csv");
    const r = await run([`${model}@1`, "--in", path.join(BATCH, "churn_bad.csv"), "--out", out]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /churn_bad\.csv: line 6, column "acct:calls": "abc" is not a number/);
    assert.equal(fs.existsSync(out), false);
    assert.equal(fs.existsSync(`${out}.partial`), false);
  });

  it("--skip-bad-rows writes bad rows with their line and reason to the reject file", async () => {
    const out = path.join(dir, "skipped.csv");
    const reject = path.join(dir, "rejects.csv");
    const r = await run([`${model}@1`, "--in", path.join(BATCH, "churn_bad.csv"), "--out", out, "--skip-bad-rows", "--reject", reject, "--batch-rows", "8"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /scored 18 rows .* 2 bad rows in/);
    const scored = await readCsvColumns(out);
    assert.equal(scored.rows, 18);
    assert.ok(!scored.columns.get("account_id")!.includes("acct-00004"));
    const rej = await readCsvColumns(reject);
    assert.deepEqual(rej.columns.get("line"), ["6", "15"]);
    assert.deepEqual(rej.columns.get("account_id"), ["acct-00004", "acct-00013"]);
    assert.match(rej.columns.get("error")![0]!, /acct:calls.*"abc" is not a number/);
    assert.match(rej.columns.get("error")![1]!, /acct:spend.*empty/);
  });

  it("writes Parquet (read back with hyparquet) and reads Parquet, naming the row of a bad one", async () => {
    const out = path.join(dir, "scored.parquet");
    const r = await run([`${model}@1`, "--in", path.join(BATCH, "churn.csv"), "--out", out, "--json"]);
    assert.equal(r.code, 0, r.err);
    const file = await asyncBufferFromFile(out);
    const rows = (await parquetReadObjects({ file })) as Array<Record<string, unknown>>;
    assert.equal(rows.length, 1000);
    assert.deepEqual(rows.map((x) => x.account_id), EXPECTED.ids);
    assert.equal(rows[0]!.model_name, model);
    assert.equal(rows[0]!.model_version, 1n);
    const worst = Math.max(...rows.map((x, i) => Math.abs((x.score as number) - EXPECTED.scores[i]!)));
    assert.ok(worst <= 1e-6, `max abs diff ${worst}`);
    // A Parquet input: churn_bad.csv's cells as text columns (the bad row is row 5).
    const bad = await readCsvColumns(path.join(BATCH, "churn_bad.csv"));
    const input = path.join(dir, "bad.parquet");
    const sink = new ParquetSink(input);
    await sink.start(bad.header);
    await sink.write(Array.from({ length: bad.rows }, (_, i) => ({ cells: bad.header.map((h) => bad.columns.get(h)![i]!), raw: undefined, tail: [] })));
    await sink.close(true);
    const failed = await run([`${model}@1`, "--in", input, "--out", path.join(dir, "from-parquet.csv")]);
    assert.equal(failed.code, 1, failed.err);
    assert.match(failed.err, /bad\.parquet: line 5, column "acct:calls": "abc" is not a number/);
    const skipped = await run([`${model}@1`, "--in", input, "--out", path.join(dir, "from-parquet.csv"), "--skip-bad-rows", "--json"]);
    assert.equal(skipped.code, 0, skipped.err);
    assert.equal((JSON.parse(skipped.out) as { rows_scored: number }).rows_scored, 18);
  });

  it("scores a many-chunk file on the scoring workers exactly as the row loop does (quoted line breaks, CRLF, blank lines, bad rows)", async () => {
    // CSV -> CSV runs on the scoring workers (raw byte chunks); CSV -> Parquet runs the row
    // loop. Both must agree on every score, on which rows are bad, and on their line numbers.
    const input = path.join(dir, "many.csv");
    const parts: string[] = ["account_id,note,tenure,calls,spend\n"];
    const badLines: number[] = [];
    let line = 2;
    let seed = 99;
    const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 4 - 2;
    for (let i = 0; i < 30_000; i++) {
      if (i === 5000) {
        parts.push("\n");
        line++;
      }
      const note = i % 97 === 0 ? `"two\nlines, ""quoted"" ${i}"` : `n${i}`;
      const cells = [rand().toPrecision(i % 3 === 0 ? 17 : 5), rand().toFixed(4), rand().toExponential(3)];
      if (i === 12_345) cells[1] = "abc";
      if (i === 23_456) cells[2] = "";
      if (i === 12_345 || i === 23_456) badLines.push(line);
      parts.push(`a${i},${note},${cells.join(",")}${i % 5 === 0 ? "\r\n" : "\n"}`);
      line += i % 97 === 0 ? 2 : 1;
    }
    fs.writeFileSync(input, parts.join(""));

    const csvOut = path.join(dir, "many-out.csv");
    const pqOut = path.join(dir, "many-out.parquet");
    const csvRej = path.join(dir, "many-rej-csv.csv");
    const pqRej = path.join(dir, "many-rej-pq.csv");
    const [a, b] = await Promise.all([
      run([`${model}@1`, "--in", input, "--out", csvOut, "--skip-bad-rows", "--reject", csvRej, "--batch-rows", "700", "--json"]),
      run([`${model}@1`, "--in", input, "--out", pqOut, "--skip-bad-rows", "--reject", pqRej, "--batch-rows", "700", "--json"]),
    ]);
    assert.equal(a.code, 0, a.err);
    assert.equal(b.code, 0, b.err);
    assert.equal((JSON.parse(a.out) as { rows_scored: number }).rows_scored, 29_998);
    const fromCsv = await readCsvColumns(csvOut);
    const fromPq = (await parquetReadObjects({ file: await asyncBufferFromFile(pqOut) })) as Array<Record<string, unknown>>;
    assert.equal(fromCsv.rows, 29_998);
    assert.equal(fromPq.length, 29_998);
    assert.deepEqual(fromCsv.columns.get("account_id"), fromPq.map((r) => r.account_id));
    assert.deepEqual(fromCsv.columns.get("note"), fromPq.map((r) => r.note));
    const scores = fromCsv.columns.get("score")!.map(Number);
    fromPq.forEach((r, i) => assert.ok(Math.abs((r.score as number) - scores[i]!) <= 1e-7, `row ${i}: ${scores[i]} vs ${r.score as number}`));
    for (const rej of [csvRej, pqRej]) {
      const got = await readCsvColumns(rej);
      assert.deepEqual(got.columns.get("line"), badLines.map(String), rej);
      assert.deepEqual(got.columns.get("account_id"), ["a12345", "a23456"], rej);
    }

    // Without --skip-bad-rows both stop at the first bad row, with its line.
    const [c, d] = await Promise.all([
      run([`${model}@1`, "--in", input, "--out", path.join(dir, "many-stop.csv"), "--batch-rows", "700"]),
      run([`${model}@1`, "--in", input, "--out", path.join(dir, "many-stop.parquet"), "--batch-rows", "700"]),
    ]);
    for (const r of [c, d]) {
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, new RegExp(`many\\.csv: line ${badLines[0]}, column "acct:calls": "abc" is not a number`));
    }
    assert.equal(fs.existsSync(path.join(dir, "many-stop.csv")), false);
  });

  it("refuses a missing input, an unknown model and bad flags with the right exit codes", async () => {
    const missing = await run([`${model}@1`, "--in", path.join(dir, "nope.csv"), "--out", path.join(dir, "x.csv")]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /no such file/);
    const unknown = await run([`${model}_nope@1`, "--in", path.join(BATCH, "churn.csv"), "--out", path.join(dir, "y.csv")]);
    assert.equal(unknown.code, 1, unknown.err);
    assert.match(unknown.err, /not found|NOT_FOUND|unknown/i);
    const usage = await run([`${model}@1`, "--in", path.join(BATCH, "churn.csv"), "--out", path.join(dir, "z.txt")]);
    assert.equal(usage.code, 2);
    assert.match(usage.err, /--out.*\.csv or \.parquet/);
  });
});
