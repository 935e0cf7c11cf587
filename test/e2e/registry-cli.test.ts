// `mlmesh models ...` against a real registry process, run as a user runs it.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { FIXTURES } from "../fixtures/models/registry-client.js";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

describe("mlmesh models", () => {
  let nats: TestNats;
  let env: Record<string, string>;
  let proc: MlmeshProcess;

  const run = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [MLMESH_BIN, "models", ...args], {
        cwd: REPO_ROOT,
        env: { ...process.env, ...env, MLMESH_REGISTRY_ADDR: proc.endpoint("registry").grpc, MLMESH_LOG_LEVEL: "silent" },
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      child.on("exit", (code) => resolve({ code, out, err }));
    });

  before(async () => {
    nats = await testNats();
    env = await isolatedEnv({ MLMESH_NATS_URL: nats.url });
    proc = await startMlmesh(["serve", "registry"], env);
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
  });

  it("pushes, gates, promotes with override, aliases and audits, with --json and exit codes", async () => {
    const card = path.join(FIXTURES, "CARD.md");
    const push1 = await run(["push", path.join(FIXTURES, "lr_v1.onnx"), "--name", "churn", "--metric", "auc=0.84", "--param", "C=1.0", "--features", "user:tenure,user:spend,user:visits", "--entity", "user_id", "--dataset", "s3://b/train.parquet@v3", "--code-version", "abc123", "--card", card, "--json"]);
    assert.equal(push1.code, 0, push1.err);
    const v1 = JSON.parse(push1.out);
    assert.equal(v1.version, "1");
    assert.equal(v1.modelCreated, true);
    assert.match(v1.card.intendedUse, /churn/);
    assert.deepEqual(v1.featureBinding.entityKeys, ["user_id"]);
    const push2 = await run(["push", path.join(FIXTURES, "lr_v2.onnx"), "--name", "churn", "--metric", "auc=0.79"]);
    assert.equal(push2.code, 0, push2.err);
    assert.match(push2.out, /pushed churn@2/);

    const bad = await run(["push", path.join(FIXTURES, "lr_v2.onnx"), "--name", "churn", "--metric", "auc=high"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /not a finite number/);
    const notOnnx = await run(["push", path.join(FIXTURES, "make_models.py"), "--name", "churn"]);
    assert.equal(notOnnx.code, 1);
    assert.match(notOnnx.err, /INVALID_ARGUMENT: chunk: .*not an ONNX model/);

    const policy = await run(["policy", "set", "churn", "auc>=0.80", "auc>=production.auc-0.005", "card:intended_use", "signature", "lineage:code_version", "--json"]);
    assert.equal(policy.code, 0, policy.err);
    assert.deepEqual(JSON.parse(policy.out).rules.map((r: { description: string }) => r.description), ["auc >= 0.8", "auc >= production.auc - 0.005", "card:intended_use", "signature:compatible", "lineage:code_version"]);
    const badRule = await run(["policy", "set", "churn", "auc>=>1"]);
    assert.equal(badRule.code, 2);

    assert.equal((await run(["promote", "churn", "1", "--to", "production"])).code, 0);
    const refused = await run(["promote", "churn", "2", "--to", "production"]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /FAILED_PRECONDITION/);
    assert.match(refused.err, /auc >= 0.8: actual 0.79, required >= 0.8/);
    assert.match(refused.err, /lineage:code_version: actual missing: code_version/);
    assert.equal((await run(["promote", "churn", "2", "--to", "production", "--override"])).code, 2);
    const forced = await run(["promote", "churn", "2", "--to", "production", "--override", "--reason", "incident 42", "--json"]);
    assert.equal(forced.code, 0, forced.err);
    assert.equal(JSON.parse(forced.out).overridden, true);

    assert.equal((await run(["alias", "churn", "champion", "1"])).code, 0);
    const show = await run(["show", "churn@champion"]);
    assert.equal(show.code, 0, show.err);
    assert.match(show.out, /^# churn v1/);
    assert.match(show.out, /\| auc \| 0.84 \|/);
    const list = await run(["list", "--json"]);
    assert.deepEqual(JSON.parse(list.out)[0].aliases, { champion: "1", production: "2" });
    const table = await run(["show", "churn"]);
    assert.match(table.out, /VERSION\s+STAGE/);
    const audit = await run(["audit", "churn", "--json"]);
    const actions = JSON.parse(audit.out).map((r: { action: string }) => r.action);
    assert.deepEqual(actions, ["model.create", "version.create", "version.create", "policy.set", "version.promote", "version.promote", "alias.set"]);
    const missing = await run(["show", "nope@1"]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /NOT_FOUND/);
  });

  it("captures a reference distribution from --reference and renders the card", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-ref-"));
    const sample = path.join(dir, "ref.csv");
    const lines = ["user:tenure,user:spend,user:visits"];
    for (let i = 0; i < 50; i++) lines.push(`${i},${(i * 7) % 13}.5,${i % 4}`);
    fs.writeFileSync(sample, `${lines.join("\n")}\n`);
    const push = await run(["push", path.join(FIXTURES, "lr_v1.onnx"), "--name", "refmodel", "--features", "user:tenure,user:spend,user:visits", "--reference", sample, "--json"]);
    assert.equal(push.code, 0, push.err);
    assert.equal(JSON.parse(push.out).hasReferenceDistributions, true);
    const card = await run(["card", "refmodel@latest"]);
    assert.equal(card.code, 0, card.err);
    assert.match(card.out, /^# refmodel v1/m);
    assert.match(card.out, /`user:tenure`, `user:spend`, `user:visits`/);
    const bad = await run(["push", path.join(FIXTURES, "lr_v1.onnx"), "--name", "refmodel", "--features", "user:tenure,user:spend,user:visits", "--reference", path.join(dir, "absent.csv")]);
    assert.equal(bad.code, 2);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
