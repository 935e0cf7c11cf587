// `mlmesh experiments create|start|assign|report|stop` against a real `mlmesh serve
// experiments`, run as the real binary; its --json output is checked against the service and
// the library, and usage errors exit 2.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { spawn } from "node:child_process";
import { closeAllClients } from "../../lib/clients.js";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

/** Runs the real `mlmesh experiments ...` binary, as a user does. */
async function capture(argv: string[], env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MLMESH_BIN, "experiments", ...argv], { cwd: REPO_ROOT, env: { ...process.env, ...env } });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => resolve({ code: code ?? -1, out, err }));
  });
}

describe("mlmesh experiments", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let env: Record<string, string>;
  const key = `cli-${Math.random().toString(36).slice(2, 8)}`;

  before(async () => {
    nats = await testNats();
    const base = await isolatedEnv({ MLMESH_NATS_URL: nats.url });
    proc = await startMlmesh(["serve", "experiments"], base);
    env = { ...base, MLMESH_EXPERIMENTS_ADDR: proc.endpoint("experiments").grpc, MLMESH_LOG_LEVEL: "silent" };
  });
  after(async () => {
    closeAllClients();
    await proc.stop();
    await nats.stop();
  });

  it("creates, starts, assigns, reports and stops an experiment", async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-exp-")), "exp.json");
    fs.writeFileSync(
      file,
      JSON.stringify({
        key,
        unitType: "UNIT_TYPE_USER",
        arms: [{ name: "control", weight: 0.5, control: true }, { name: "treatment", weight: 0.5 }],
        metrics: [{ name: "conversion", role: "METRIC_ROLE_PRIMARY", type: "METRIC_TYPE_PROPORTION", direction: "METRIC_DIRECTION_HIGHER_IS_BETTER", baselineMean: 0.1 }],
        mde: 0.02,
      }),
    );
    const created = await capture(["create", file, "--json"], env);
    assert.equal(created.code, 0);
    const body = JSON.parse(created.out) as { experiment: { status: string }; plan: { nPerArm: string } };
    assert.equal(body.experiment.status, "EXPERIMENT_STATUS_DRAFT");
    assert.ok(Number(body.plan.nPerArm) > 0);
    assert.equal((await capture(["start", key, "--json"], env)).code, 0);
    const assigned = JSON.parse((await capture(["assign", key, "user-7", "--json"], env)).out) as { arm: string; inExperiment: boolean };
    assert.ok(assigned.inExperiment && ["control", "treatment"].includes(assigned.arm));
    const report = JSON.parse((await capture(["report", key, "--json"], env)).out) as { decision: string };
    assert.equal(report.decision, "DECISION_KEEP_RUNNING");
    const htmlFile = path.join(os.tmpdir(), `mlmesh-report-${key}.html`);
    const html = await capture(["report", key, "--html", htmlFile], env);
    assert.equal(html.code, 0, html.err);
    const page = fs.readFileSync(htmlFile, "utf8");
    assert.match(page, /^<!doctype html>/);
    assert.ok(page.includes(key), "the page names the experiment");
    assert.match(page, /Traffic split \(SRM\)/);
    assert.ok(!/<script|https?:\/\//.test(page.replace(/<html lang="en">/, "")), "self-contained: no scripts, no network");
    fs.rmSync(htmlFile, { force: true });
    const missing = await capture(["report", `${key}-nope`], env);
    assert.equal(missing.code, 1);
    const stopped = JSON.parse((await capture(["stop", key, "--reason", "done", "--json"], env)).out) as { experiment: { status: string } };
    assert.equal(stopped.experiment.status, "EXPERIMENT_STATUS_STOPPED");
    const usage = await capture(["start"], env);
    assert.equal(usage.code, 2, usage.err);
  });
});
