// A Python client generated at test time with grpc_tools from the KServe proto
// (proto/inference/grpc_service.proto) talks to a real inference process: ServerLive,
// ModelReady, ModelMetadata and ModelInfer (typed contents and raw_input_contents) on the
// scikit-learn fixtures, and gets sklearn's numbers (max abs diff 1e-5).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const SKLEARN = path.join(REPO_ROOT, "test/fixtures/sklearn");
const CLIENT = path.join(REPO_ROOT, "test/fixtures/inference/oip_client.py");
const EXPECTED = JSON.parse(readFileSync(path.join(SKLEARN, "expected.json"), "utf8")) as {
  inputs: number[][];
  models: Record<string, { file: string; probabilities: number[][]; labels: number[]; near_tie_rows: number[] }>;
};
const TOL = 1e-5;

/** Why the Python side cannot run here, or undefined when it can. */
async function missingPython(): Promise<string | undefined> {
  try {
    await run(PYTHON, ["-c", "import grpc, grpc_tools"]);
    return undefined;
  } catch (err) {
    const msg = (err as { stderr?: string }).stderr?.trim().split("\n").at(-1) ?? String(err);
    return `${PYTHON} lacks grpcio/grpc_tools (${msg}); .ci/run installs python3-grpcio and python3-grpc-tools`;
  }
}

const skip = await missingPython();

describe("OIP: a Python client generated with grpc_tools", { skip }, () => {
  let nats: TestNats;
  let registryProc: MlmeshProcess;
  let inferenceProc: MlmeshProcess;
  let dir: string;
  const prefix = `pyoip_${Date.now()}`;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "mlmesh-pyoip-"));
    // The stubs are generated from the proto the server is built from, as a user would.
    await run(PYTHON, ["-m", "grpc_tools.protoc", `-I${path.join(REPO_ROOT, "proto/inference")}`, `--python_out=${dir}`, `--grpc_python_out=${dir}`, "grpc_service.proto"], { cwd: REPO_ROOT });
    nats = await testNats();
    registryProc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }));
    inferenceProc = await startMlmesh(
      ["serve", "inference"],
      await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn", MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc }),
    );
    const registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
    for (const [name, m] of Object.entries(EXPECTED.models)) await upload(registry, `${prefix}_${name}`, readFileSync(path.join(SKLEARN, m.file)), { chunkBytes: 16 * 1024 });
  });
  after(async () => {
    await inferenceProc?.stop();
    await registryProc?.stop();
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("calls ServerLive, ModelReady, ModelMetadata and ModelInfer and gets sklearn's numbers", async () => {
    const names = Object.keys(EXPECTED.models).map((n) => `${prefix}_${n}`);
    const req = path.join(dir, "request.json");
    writeFileSync(req, JSON.stringify({ models: names, version: "1", inputs: EXPECTED.inputs }));
    const address = inferenceProc.endpoint("inference").grpc.replace(/^https?:\/\//, "");
    const { stdout } = await run(PYTHON, [CLIENT, dir, address, req], { timeout: 60_000 });
    type ModelOut = {
      ready: boolean;
      platform: string;
      versions: string[];
      inputs: unknown;
      outputs: unknown;
      typed: { id: string; model_version: string; probabilities_shape: number[]; probabilities: number[]; labels: number[] };
      raw: { probabilities: number[]; labels: number[] };
    };
    const out = JSON.parse(stdout) as { server_live: boolean; models: Record<string, ModelOut> };
    assert.equal(out.server_live, true);
    const n = EXPECTED.inputs.length;
    for (const [short, want] of Object.entries(EXPECTED.models)) {
      const got = out.models[`${prefix}_${short}`]!;
      assert.equal(got.ready, true);
      assert.equal(got.platform, "onnx_onnxv1");
      assert.deepEqual(got.versions, ["1"]);
      assert.deepEqual(got.inputs, [["x", "FP32", [-1, 6]]]);
      assert.deepEqual(got.outputs, [["label", "INT64", [-1]], ["probabilities", "FP32", [-1, 3]]]);
      assert.equal(got.typed.id, "py-typed");
      assert.equal(got.typed.model_version, "1");
      assert.deepEqual(got.typed.probabilities_shape, [n, 3]);
      const flat = want.probabilities.flat();
      for (const [how, probs, labels] of [["typed", got.typed.probabilities, got.typed.labels], ["raw", got.raw.probabilities, got.raw.labels]] as const) {
        assert.equal(probs.length, flat.length);
        const diff = Math.max(...probs.map((p, i) => Math.abs(p - flat[i]!)));
        assert.ok(diff <= TOL, `${short} ${how}: max abs diff ${diff} > ${TOL}`);
        labels.forEach((l, r) => {
          if (!want.near_tie_rows.includes(r)) assert.equal(l, want.labels[r], `${short} ${how} row ${r}`);
        });
        console.log(`python client, ${short} ${how}: max abs diff vs sklearn ${diff.toExponential(2)}`);
      }
    }
  });
});
