// `mlmesh score-batch --entity-col --as-of-col` end to end: real registry and feature service
// processes on real NATS, a feature view holding several values per entity at known times, a
// model bound to those features, and an input file of (entity, as-of) rows. Every output row
// must carry the score of the feature values at or before its as-of time (never a later one),
// checked against scores computed in-process by ONNX Runtime from the expected values; a row
// whose as-of precedes all history is rejected (not given a future value).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import ort from "onnxruntime-node";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { closeAllClients, createServiceClient } from "../../lib/clients.js";
import { readCsvColumns } from "../../lib/drift/csv-drift.js";
import { FIXTURES, fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const HOUR = 3_600_000;
const stamp = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const VIEW = `pit_acct_${stamp}`;
const FEATURES = ["tenure", "calls", "spend"].map((f) => `${VIEW}:${f}`);

/** Feature history: per entity, values at hours before `base` (several versions each). */
function history(base: number) {
  const entities = ["a-1", "a-2", "a-3"];
  const rows: Array<{ entity: string; at: number; values: number[] }> = [];
  entities.forEach((entity, e) => {
    for (const [k, hoursAgo] of [10, 6, 2].entries()) {
      // Distinct per entity and version, so a wrong pick changes the score.
      rows.push({ entity, at: base - hoursAgo * HOUR, values: [0.1 * (e + 1) + k, -0.5 + 0.3 * k - 0.2 * e, 1.5 - 0.7 * k + 0.1 * e] });
    }
  });
  return rows;
}

describe("mlmesh score-batch point-in-time", () => {
  let nats: TestNats;
  const procs: MlmeshProcess[] = [];
  let env: Record<string, string>;
  let dir: string;
  const base = Date.now() - HOUR;
  const hist = history(base);
  const model = `pit_batch_${stamp}`;

  const run = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [MLMESH_BIN, "score-batch", ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env } });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      child.on("exit", (code) => resolve({ code, out, err }));
    });

  before(async () => {
    nats = await testNats();
    const isolated = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" });
    const addr = (s: string) => `http://127.0.0.1:${isolated[`MLMESH_${s.toUpperCase()}_GRPC_PORT`]}`;
    env = { ...isolated, MLMESH_REGISTRY_ADDR: addr("registry"), MLMESH_FEATURES_ADDR: addr("features") };
    procs.push(...(await Promise.all([startMlmesh(["serve", "registry"], env, 60_000), startMlmesh(["serve", "features"], env, 60_000)])));
    const features = createServiceClient(FeatureService, addr("features"));
    await features.applyFeatureViews({
      views: [{ name: VIEW, entities: [{ name: "account_id", type: ValueType.STRING }], features: ["tenure", "calls", "spend"].map((name) => ({ name, type: ValueType.FLOAT64 })), ttl: durationFromMs(30 * 24 * HOUR) }],
    });
    await features.writeFeatures({
      view: VIEW,
      featureNames: ["tenure", "calls", "spend"],
      rows: hist.map((h) => ({
        entityKey: { keys: { account_id: { kind: { case: "stringValue" as const, value: h.entity } } } },
        eventTime: timestampFromMs(h.at),
        values: h.values.map((value) => ({ kind: { case: "doubleValue" as const, value } })),
      })),
    });
    const registry = createServiceClient(RegistryService, addr("registry"));
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } } });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-score-batch-pit-"));
  });
  after(async () => {
    closeAllClients();
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await nats?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("scores each row with the feature values at or before its as-of time, never later ones", async () => {
    // As-of times around each entity's versions: exactly at one, between two, after the
    // last, and before the first (no history: rejected, line kept). Mixed time formats.
    const asOfs: Array<{ entity: string; at: number; text: string }> = [];
    for (const entity of ["a-1", "a-2", "a-3"]) {
      for (const offset of [-10 * HOUR, -6 * HOUR, -6 * HOUR + 1, -2 * HOUR - 1, -2 * HOUR, 0, -8 * HOUR, -11 * HOUR]) {
        const at = base + offset;
        asOfs.push({ entity, at, text: asOfs.length % 2 === 0 ? new Date(at).toISOString() : String(at) });
      }
    }
    // Interleave entities so a chunk mixes them; small batches so several chunks are fetched.
    asOfs.sort((a, b) => (a.at % 7) - (b.at % 7) || a.entity.localeCompare(b.entity));
    const input = path.join(dir, "entities.csv");
    fs.writeFileSync(input, `row,account_id,as_of\n${asOfs.map((r, i) => `r${i},${r.entity},${r.text}`).join("\n")}\n`);

    /** The expected version: the latest value at or before the as-of time. */
    const expected = asOfs.map((r) => hist.filter((h) => h.entity === r.entity && h.at <= r.at).sort((a, b) => b.at - a.at)[0]);
    const session = await ort.InferenceSession.create(path.join(FIXTURES, "lr_v1.onnx"));
    const present = expected.filter((e) => e !== undefined);
    const x = new Float32Array(present.flatMap((e) => e!.values));
    const res = await session.run({ [session.inputNames[0]!]: new ort.Tensor("float32", x, [present.length, 3]) });
    const reference = res[session.outputNames[0]!]!.data as Float32Array;
    await session.release();

    const out = path.join(dir, "scored.csv");
    const reject = path.join(dir, "rejects.csv");
    const r = await run([`${model}@1`, "--in", input, "--out", out, "--entity-col", "account_id", "--as-of-col", "as_of", "--skip-bad-rows", "--reject", reject, "--batch-rows", "5", "--json"]);
    assert.equal(r.code, 0, r.err);
    const summary = JSON.parse(r.out) as { rows_scored: number; rows_rejected: number };
    const before = expected.filter((e) => e === undefined).length;
    assert.equal(before, 3, "one as-of before all history per entity");
    assert.equal(summary.rows_scored, asOfs.length - before);
    assert.equal(summary.rows_rejected, before);

    const scored = await readCsvColumns(out);
    assert.deepEqual(scored.header, ["row", "account_id", "as_of", "model_name", "model_version", "score"]);
    const ids = scored.columns.get("row")!;
    const scores = scored.columns.get("score")!.map(Number);
    // In input order, without the rejected rows.
    assert.deepEqual(ids, asOfs.map((_, i) => `r${i}`).filter((_, i) => expected[i] !== undefined));
    let k = 0;
    asOfs.forEach((row, i) => {
      const exp = expected[i];
      if (!exp) return;
      const at = ids.indexOf(`r${i}`);
      assert.ok(Math.abs(scores[at]! - reference[k]!) <= 1e-6, `row r${i} (${row.entity} as of ${new Date(row.at).toISOString()}): score ${scores[at]} != ${reference[k]} of the value at ${new Date(exp.at).toISOString()}`);
      // No later version gives this score (the check would be vacuous if versions scored alike).
      for (const later of hist.filter((h) => h.entity === row.entity && h.at > row.at)) {
        assert.notDeepEqual(later.values, exp.values);
      }
      k++;
    });
    assert.ok(scored.columns.get("model_name")!.every((m) => m === model));

    const rej = await readCsvColumns(reject);
    const rejectedRows = asOfs.map((_, i) => i).filter((i) => expected[i] === undefined);
    assert.deepEqual(rej.columns.get("row"), rejectedRows.map((i) => `r${i}`));
    // Line numbers: the header is line 1.
    assert.deepEqual(rej.columns.get("line"), rejectedRows.map((i) => String(i + 2)));
    for (const e of rej.columns.get("error")!) assert.match(e, /NOT_FOUND|not found|missing|no value/i);
  });

  it("refuses an as-of column the file does not have, naming it", async () => {
    const input = path.join(dir, "entities2.csv");
    fs.writeFileSync(input, "account_id,when\na-1,2020-01-01T00:00:00Z\n");
    const r = await run([`${model}@1`, "--in", input, "--out", path.join(dir, "x.csv"), "--entity-col", "account_id", "--as-of-col", "as_of"]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /as_of_column.*"as_of" is not a column/);
  });
});
