// `mlmesh up`: all five services in one process on embedded defaults; every one answers
// health, `mlmesh health` agrees, /metrics passes promtool, /healthz and /readyz answer,
// and SIGTERM stops the whole mesh with exit 0.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

describe("mlmesh up", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let env: Record<string, string>;

  before(async () => {
    nats = await testNats();
    env = await isolatedEnv({ MLMESH_NATS_URL: nats.url });
    proc = await startMlmesh(["up"], env);
  });
  after(async () => {
    await proc.stop("SIGKILL");
    await nats.stop();
  });

  it("runs the five services with NATS and embedded SQLite under MLMESH_DATA_DIR", () => {
    assert.deepEqual(
      proc.services.map((s) => s.service),
      ["registry", "features", "inference", "router", "experiments"],
    );
    assert.equal(proc.events, "nats");
    assert.ok(fs.existsSync(path.join(env.MLMESH_DATA_DIR!, "registry.db")));
  });

  it("`mlmesh health` reports all five SERVING and exits 0", () => {
    const r = spawnSync(process.execPath, [MLMESH_BIN, "health", "--json"], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const rows = JSON.parse(r.stdout) as Array<{ service: string; status: string }>;
    assert.deepEqual(
      rows.map((x) => x.status),
      ["SERVING", "SERVING", "SERVING", "SERVING", "SERVING"],
    );
  });

  it("serves /healthz, /readyz and /metrics on every HTTP port; the metrics pass promtool", async () => {
    for (const s of proc.services) {
      assert.equal((await fetch(`${s.http}/healthz`)).status, 200);
      assert.equal((await fetch(`${s.http}/readyz`)).status, 200);
    }
    // Make some traffic so the RPC series exist, including an error code.
    const registry = proc.endpoint("registry").http;
    await fetch(`${registry}/mlmesh.registry.v1.RegistryService/ListModels`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    await fetch(`${registry}/mlmesh.registry.v1.RegistryService/GetModel`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "absent" }),
    });
    const text = await (await fetch(`${registry}/metrics`)).text();
    assert.match(text, /mlmesh_rpc_server_requests_total\{service="mlmesh.registry.v1.RegistryService",method="ListModels",code="OK"\} 1/);
    assert.match(text, /mlmesh_rpc_server_requests_total\{service="mlmesh.registry.v1.RegistryService",method="GetModel",code="NOT_FOUND"\} 1/);
    assert.match(text, /mlmesh_rpc_server_duration_seconds_bucket\{le="0.0001",service="mlmesh.registry.v1.RegistryService",method="ListModels",code="OK"\}/);
    assert.match(text, /process_cpu_seconds_total/);
    for (const s of proc.services) {
      const body = await (await fetch(`${s.http}/metrics`)).text();
      const check = spawnSync("promtool", ["check", "metrics"], { input: body, encoding: "utf8" });
      assert.equal(check.error, undefined, "promtool must be installed (Debian package prometheus)");
      assert.equal(check.status, 0, `${s.service}: ${check.stdout}${check.stderr}`);
    }
  });

  it("OIP server-level calls answer over REST on the inference HTTP port", async () => {
    const inference = proc.endpoint("inference").http;
    assert.deepEqual(await (await fetch(`${inference}/v2/health/live`)).json(), { live: true });
    assert.deepEqual(await (await fetch(`${inference}/v2/health/ready`)).json(), { ready: true });
    const meta = (await (await fetch(`${inference}/v2`)).json()) as { name: string };
    assert.equal(meta.name, "mlmesh");
  });

  it("SIGTERM drains all five and exits 0", async () => {
    assert.equal(await proc.stop("SIGTERM"), 0, proc.stderr());
  });
});
