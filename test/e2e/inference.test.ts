// The inference service through real processes: `mlmesh serve registry` and `mlmesh serve
// inference` on real NATS. Scores match numpy's (test/fixtures/inference/make_expected.py),
// the Open Inference Protocol works from a generic grpc-js client and over REST, bad inputs
// are refused naming the input and row, batching batches, and an alias move swaps versions
// under steady load without a failed request.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { GRPCInferenceService, ModelInferRequestSchema, ModelInferResponseSchema, ModelMetadataRequestSchema, ModelMetadataResponseSchema, ModelReadyRequestSchema, ModelReadyResponseSchema } from "../../gen/inference/grpc_service_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { TensorType } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { grpcJsClient } from "../support/grpc-js-client.js";
import { isolatedEnv, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const EXPECTED = JSON.parse(readFileSync(path.join(REPO_ROOT, "test/fixtures/inference/expected.json"), "utf8")) as Record<string, { inputs: number[][]; scores: number[] }>;
const V1 = EXPECTED["lr_v1.onnx"]!;
const V2 = EXPECTED["lr_v2.onnx"]!;
const MLP = JSON.parse(readFileSync(path.join(REPO_ROOT, "test/fixtures/inference/mlp30_expected.json"), "utf8")) as { inputs: number[][]; scores: number[] };
const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const TOL = 1e-5;

const code = (c: Code, re?: RegExp) => (e: unknown) => {
  const err = ConnectError.from(e);
  assert.equal(err.code, c, `expected ${Code[c]}, got ${Code[err.code]}: ${err.rawMessage}`);
  if (re) assert.match(err.rawMessage, re);
  return true;
};

function assertClose(got: number[], want: number[]): void {
  assert.equal(got.length, want.length);
  const diff = Math.max(...got.map((g, i) => Math.abs(g - want[i]!)));
  assert.ok(diff <= TOL, `max abs diff ${diff} > ${TOL}`);
}

const rowOf = (x: number[]) => ({ values: Object.fromEntries(FEATURES.map((f, i) => [f.split(":")[1]!, { kind: { case: "floatValue" as const, value: x[i]! } }])) });

describe("inference: serving ONNX models from the registry", () => {
  let nats: TestNats;
  let registryProc: MlmeshProcess;
  let inferenceProc: MlmeshProcess;
  let registry: ReturnType<typeof createServiceClient<typeof RegistryService>>;
  let inference: ReturnType<typeof createServiceClient<typeof InferenceService>>;
  const model = `churn_${Date.now()}`;
  const batched = `${model}_b`;

  before(async () => {
    nats = await testNats();
    registryProc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }));
    inferenceProc = await startMlmesh(
      ["serve", "inference"],
      await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn", MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc }),
    );
    registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
    inference = createServiceClient(InferenceService, inferenceProc.endpoint("inference").grpc);
    const spec = { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } };
    await upload(registry, model, fixture("lr_v1.onnx"), { spec, chunkBytes: 64 });
    await upload(registry, model, fixture("lr_v2.onnx"), { spec });
    await upload(registry, batched, fixture("lr_v1.onnx"), { spec });
    await upload(registry, `${model}_mlp`, readFileSync(path.join(REPO_ROOT, "test/fixtures/inference/mlp30.onnx")), { chunkBytes: 4096 });
  });
  after(async () => {
    await inferenceProc?.stop();
    await registryProc?.stop();
    await nats?.stop();
  });

  it("scores named rows and dense tensors as numpy does, with the resolved version", async () => {
    const rows = await inference.score({ modelRef: `${model}@1`, inputs: { case: "rows", value: { rows: V1.inputs.map(rowOf) } } });
    assert.equal(rows.modelName, model);
    assert.equal(rows.version, 1n);
    assertClose(rows.outputs.map((o) => o.score), V1.scores);
    assert.deepEqual(Object.keys(rows.outputs[0]!.outputs), ["score"]);

    const dense = await inference.score({
      modelRef: `${model}@2`,
      inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT32, shape: [BigInt(V2.inputs.length), 3n], floatData: V2.inputs.flat() }] } },
    });
    assert.equal(dense.version, 2n);
    assertClose(dense.outputs.map((o) => o.score), V2.scores);
    const raw = Buffer.from(new Float32Array(V2.inputs.flat()).buffer);
    const viaRaw = await inference.score({
      modelRef: `${model}@latest`,
      inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT32, shape: [BigInt(V2.inputs.length), 3n], rawData: raw }] } },
    });
    assert.equal(viaRaw.version, 2n);
    assertClose(viaRaw.outputs.map((o) => o.score), V2.scores);

    const mlp = await inference.score({
      modelRef: `${model}_mlp@1`,
      inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT32, shape: [BigInt(MLP.inputs.length), 30n], floatData: MLP.inputs.flat() }] } },
    });
    assertClose(mlp.outputs.map((o) => o.score), MLP.scores);
  });

  it("refuses bad inputs with INVALID_ARGUMENT naming the input and row", async () => {
    const score = (rows: ReturnType<typeof rowOf>[]) => inference.score({ modelRef: `${model}@1`, inputs: { case: "rows", value: { rows } } });
    const missing = rowOf([1, 2, 3]);
    delete missing.values["calls"];
    await assert.rejects(score([rowOf([1, 2, 3]), missing]), code(Code.InvalidArgument, /rows\[1\]\.values\["acct:calls"\].*missing.*input "x"/));
    const unknown = rowOf([1, 2, 3]);
    unknown.values["colour"] = { kind: { case: "floatValue", value: 1 } };
    await assert.rejects(score([unknown]), code(Code.InvalidArgument, /rows\[0\]\.values\["colour"\]: unknown/));
    const text = rowOf([1, 2, 3]);
    text.values["spend"] = { kind: { case: "stringValue", value: "high" } as never };
    await assert.rejects(score([text]), code(Code.InvalidArgument, /rows\[0\]\.values\["acct:spend"\]: expected a number/));
    await assert.rejects(score([rowOf([1, Number.NaN, 3])]), code(Code.InvalidArgument, /rows\[0\]\.values\["acct:calls"\]: NaN is not finite/));
    await assert.rejects(
      inference.score({ modelRef: `${model}@1`, inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT32, shape: [2n, 4n], floatData: [1, 2, 3, 4, 5, 6, 7, 8] }] } } }),
      code(Code.InvalidArgument, /input "x" has shape \[2, 4\], expected \[-1, 3\]/),
    );
    await assert.rejects(
      inference.score({ modelRef: `${model}@1`, inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT64, shape: [1n, 3n], doubleData: [1, 2, 3] }] } } }),
      code(Code.InvalidArgument, /input "x" is float32, got float64/),
    );
    await assert.rejects(inference.score({ modelRef: `${model}@9`, inputs: { case: "rows", value: { rows: [rowOf([1, 2, 3])] } } }), code(Code.NotFound));
    // Still serving after all that.
    const ok = await score([rowOf(V1.inputs[1]!)]);
    assertClose([ok.outputs[0]!.score], [V1.scores[1]!]);
  });

  it("answers OIP ModelReady, ModelMetadata and ModelInfer to a generic grpc-js client", async () => {
    const oip = grpcJsClient(GRPCInferenceService, inferenceProc.endpoint("inference").grpc);
    try {
      const ready = await oip.unary("ModelReady", ModelReadyRequestSchema, ModelReadyResponseSchema, { name: model, version: "1" });
      assert.equal(ready.ready, true);
      const meta = await oip.unary("ModelMetadata", ModelMetadataRequestSchema, ModelMetadataResponseSchema, { name: model, version: "1" });
      assert.equal(meta.platform, "onnx_onnxv1");
      assert.deepEqual(meta.versions, ["1"]);
      assert.deepEqual(meta.inputs.map((t) => [t.name, t.datatype, t.shape]), [["x", "FP32", [-1n, 3n]]]);
      assert.deepEqual(meta.outputs.map((t) => [t.name, t.datatype, t.shape]), [["score", "FP32", [-1n, 1n]]]);

      const n = BigInt(V1.inputs.length);
      const typed = await oip.unary("ModelInfer", ModelInferRequestSchema, ModelInferResponseSchema, {
        modelName: model,
        modelVersion: "1",
        id: "req-1",
        inputs: [{ name: "x", datatype: "FP32", shape: [n, 3n], contents: { fp32Contents: V1.inputs.flat() } }],
        outputs: [{ name: "score" }],
      });
      assert.equal(typed.modelVersion, "1");
      assert.equal(typed.id, "req-1");
      assert.deepEqual(typed.outputs[0]!.shape, [n, 1n]);
      assertClose(typed.outputs[0]!.contents!.fp32Contents, V1.scores);

      const raw = await oip.unary("ModelInfer", ModelInferRequestSchema, ModelInferResponseSchema, {
        modelName: model,
        modelVersion: "2",
        inputs: [{ name: "x", datatype: "FP32", shape: [n, 3n] }],
        rawInputContents: [new Uint8Array(new Float32Array(V2.inputs.flat()).buffer)],
      });
      const out = raw.rawOutputContents[0]!;
      assertClose(Array.from(new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength))), V2.scores);

      await assert.rejects(
        oip.unary("ModelInfer", ModelInferRequestSchema, ModelInferResponseSchema, {
          modelName: model,
          modelVersion: "1",
          inputs: [{ name: "x", datatype: "FP32", shape: [2n, 3n] }],
          rawInputContents: [new Uint8Array(20)],
        }),
        (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /raw_input_contents\[0\].*20 bytes, expected 24/.test(e.details),
      );
      await assert.rejects(
        oip.unary("ModelInfer", ModelInferRequestSchema, ModelInferResponseSchema, {
          modelName: model,
          modelVersion: "1",
          inputs: [{ name: "x", datatype: "FP32", shape: [1n, 3n], contents: { fp32Contents: [1, 2, 3] } }],
          outputs: [{ name: "probabilities" }],
        }),
        (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /unknown output "probabilities"/.test(e.details),
      );
    } finally {
      oip.close();
    }
  });

  it("serves the OIP REST routes on the HTTP port", async () => {
    const base = `${inferenceProc.endpoint("inference").http}/v2/models/${model}/versions/1`;
    const meta = (await (await fetch(base)).json()) as { platform: string; inputs: unknown };
    assert.equal(meta.platform, "onnx_onnxv1");
    assert.deepEqual(meta.inputs, [{ name: "x", datatype: "FP32", shape: [-1, 3] }]);
    const ready = await fetch(`${base}/ready`);
    assert.equal(ready.status, 200);
    const res = await fetch(`${base}/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "r1", inputs: [{ name: "x", shape: [V1.inputs.length, 3], datatype: "FP32", data: V1.inputs }] }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { model_version: string; outputs: Array<{ shape: number[]; data: number[] }> };
    assert.equal(body.model_version, "1");
    assert.deepEqual(body.outputs[0]!.shape, [V1.inputs.length, 1]);
    assertClose(body.outputs[0]!.data, V1.scores);
    const bad = await fetch(`${base}/infer`, {
      method: "POST",
      body: JSON.stringify({ inputs: [{ name: "x", shape: [1, 3], datatype: "FP32", data: [1, "a", 3] }] }),
    });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /input "x" row 0 holds NaN/);
    assert.equal((await fetch(`${inferenceProc.endpoint("inference").http}/v2/models/nope_${model}/ready`)).status, 404);
  });

  it("batches concurrent requests and fails a request whose deadline passes in the queue without running it", async () => {
    await inference.setBatchingConfig({ modelName: batched, batching: { enabled: true, maxBatchSize: 64, maxQueueDelayUs: 20_000n, workers: 1, intraOpThreads: 1 } });
    await inference.loadModel({ modelRef: `${batched}@1` });
    const calls = V1.inputs.map((x) => inference.score({ modelRef: `${batched}@1`, inputs: { case: "rows", value: { rows: [rowOf(x)] } } }));
    const results = await Promise.all(calls);
    assertClose(results.map((r) => r.outputs[0]!.score), V1.scores);
    const metrics = await (await fetch(`${inferenceProc.endpoint("inference").http}/metrics`)).text();
    const series = (name: string) => Number(new RegExp(`^${name}\\{model="${batched}",version="1"\\} (\\S+)$`, "m").exec(metrics)?.[1]);
    const batches = series("mlmesh_inference_batch_size_rows_count");
    assert.equal(series("mlmesh_inference_batch_size_rows_sum"), V1.inputs.length);
    assert.ok(batches >= 1 && batches <= 8, `${V1.inputs.length} concurrent rows ran in ${batches} batches`);
    console.log(`batching: ${V1.inputs.length} concurrent single-row requests ran in ${batches} batch(es)`);
    assert.equal(series("mlmesh_inference_rows_total"), V1.inputs.length);

    await inference.setBatchingConfig({ modelName: batched, batching: { enabled: true, maxQueueDelayUs: 5_000_000n } });
    const started = Date.now();
    await assert.rejects(
      inference.score({ modelRef: `${batched}@1`, inputs: { case: "rows", value: { rows: [rowOf([1, 2, 3])] } } }, { timeoutMs: 300 }),
      code(Code.DeadlineExceeded),
    );
    assert.ok(Date.now() - started < 2_000);
    await new Promise((r) => setTimeout(r, 100));
    const after = await (await fetch(`${inferenceProc.endpoint("inference").http}/metrics`)).text();
    assert.match(after, new RegExp(`^mlmesh_inference_queue_expired_total\\{model="${batched}",version="1"\\} 1$`, "m"));
    assert.match(after, new RegExp(`^mlmesh_inference_failures_total\\{model="${batched}",code="DEADLINE_EXCEEDED"\\} 1$`, "m"));
  });

  it("swaps versions on an alias move under steady load with no failed request", async () => {
    await registry.setAlias({ modelName: model, alias: "champion", version: 1n });
    const ref = `${model}@champion`;
    const first = await inference.score({ modelRef: ref, inputs: { case: "rows", value: { rows: [rowOf(V1.inputs[1]!)] } } });
    assert.equal(first.version, 1n);
    let stop = false;
    let failures = 0;
    const seen: bigint[] = [];
    const worker = async () => {
      let i = 0;
      while (!stop) {
        const k = i++ % V1.inputs.length;
        try {
          const r = await inference.score({ modelRef: ref, inputs: { case: "rows", value: { rows: [rowOf(V1.inputs[k]!)] } } });
          const want = r.version === 1n ? V1.scores[k]! : V2.scores[k]!;
          assert.ok(Math.abs(r.outputs[0]!.score - want) <= TOL);
          seen.push(r.version);
        } catch (err) {
          failures++;
          console.error(err);
        }
      }
    };
    const load = Array.from({ length: 4 }, worker);
    await new Promise((r) => setTimeout(r, 300));
    await registry.setAlias({ modelName: model, alias: "champion", version: 2n });
    const deadline = Date.now() + 10_000;
    while (seen.at(-1) !== 2n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(load);
    assert.equal(failures, 0);
    const firstV2 = seen.indexOf(2n);
    assert.ok(firstV2 > 0, "traffic moved to version 2");
    assert.ok(seen.slice(firstV2 + 8).every((v) => v === 2n), "no request goes back to version 1 after the switch");
    console.log(`swap under load: ${seen.length} requests, ${firstV2} on v1, ${seen.length - firstV2} on v2, 0 failed`);
  });

  it("lists loaded versions and refuses to unload one an alias serves unless forced", async () => {
    const listed = await inference.listLoadedModels({});
    const v2 = listed.models.find((m) => m.modelName === model && m.version === 2n);
    assert.deepEqual(v2?.servingRefs.sort(), [`${model}@champion`, `${model}@latest`]);
    await assert.rejects(inference.unloadModel({ modelName: model, version: 2n }), code(Code.FailedPrecondition, /champion/));
    await inference.unloadModel({ modelName: model, version: 1n, reason: "swapped out" });
    assert.ok(!(await inference.listLoadedModels({})).models.some((m) => m.modelName === model && m.version === 1n));
    // A pinned ref loads it again on demand.
    const again = await inference.score({ modelRef: `${model}@1`, inputs: { case: "rows", value: { rows: [rowOf(V1.inputs[2]!)] } } });
    assertClose([again.outputs[0]!.score], [V1.scores[2]!]);
  });

  it("drains and exits 0 on SIGTERM, with the model cache on disk", async () => {
    const log = inferenceProc.stderr();
    assert.equal(await inferenceProc.stop(), 0, log.slice(-2000));
    const cached = await readdir(path.join(inferenceProc.dataDir, "inference", "cache"));
    assert.ok(cached.length >= 2 && cached.every((f) => /^[0-9a-f]{64}\.onnx$/.test(f)), cached.join(", "));
  });
});
