// The polyglot promise: every proto in proto/ compiles with Python's grpc_tools (Debian's
// python3-grpc-tools), and a Python client generated from them talks to a running service.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { isolatedEnv, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const PYTHON = "/usr/bin/python3";

function protoFiles(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".proto")).sort();
}

describe("Python grpc_tools interop", () => {
  let genDir: string;
  let nats: TestNats;
  let proc: MlmeshProcess;

  before(async () => {
    const probe = spawnSync(PYTHON, ["-c", "import grpc, grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))"], {
      encoding: "utf8",
    });
    assert.equal(probe.status, 0, `needs Debian's python3-grpcio and python3-grpc-tools: ${probe.stderr}`);
    const wktInclude = probe.stdout.trim();
    genDir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-py-"));
    const protoDir = path.join(REPO_ROOT, "proto");
    const files = protoFiles(protoDir);
    const includes = [`-I${protoDir}`];
    if (fs.existsSync(wktInclude)) includes.push(`-I${wktInclude}`);
    else if (fs.existsSync("/usr/include/google/protobuf")) includes.push("-I/usr/include");
    const compile = spawnSync(
      PYTHON,
      ["-m", "grpc_tools.protoc", ...includes, `--python_out=${genDir}`, `--grpc_python_out=${genDir}`, ...files],
      { cwd: protoDir, encoding: "utf8" },
    );
    assert.equal(compile.status, 0, `grpc_tools.protoc failed:\n${compile.stderr}`);
    // Every proto produced its module.
    for (const f of files) assert.ok(fs.existsSync(path.join(genDir, f.replace(/\.proto$/, "_pb2.py"))), f);

    nats = await testNats();
    proc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
  });

  after(async () => {
    await proc?.stop();
    await nats?.stop();
    if (genDir) fs.rmSync(genDir, { recursive: true, force: true });
  });

  it("a Python client gets SERVING and uses the registry", () => {
    const address = proc.endpoint("registry").grpc.replace(/^http:\/\//, "");
    const r = spawnSync(PYTHON, [path.join(REPO_ROOT, "test/interop/python_client.py"), genDir, address], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { overall: "SERVING", registry: "SERVING", models: ["from_python"], missing: "NOT_FOUND" });
  });
});
