// scikit-learn models served as sklearn scores them: a logistic regression, a random forest
// (ai.onnx.ml TreeEnsembleClassifier) and an MLP, exported to ONNX by hand from the fitted
// parameters (test/fixtures/sklearn/make_sklearn_models.py), uploaded to a real registry and
// scored by a real inference process through Score and OIP ModelInfer; every probability
// equals sklearn's predict_proba to 1e-5 and every label its predict.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { GRPCInferenceService, ModelInferRequestSchema, ModelInferResponseSchema, ModelMetadataRequestSchema, ModelMetadataResponseSchema } from "../../gen/inference/grpc_service_pb.js";
import { TensorType } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { upload } from "../fixtures/models/registry-client.js";
import { grpcJsClient } from "../support/grpc-js-client.js";
import { isolatedEnv, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const DIR = path.join(REPO_ROOT, "test/fixtures/sklearn");
interface Expected {
  inputs: number[][];
  models: Record<string, { file: string; probabilities: number[][]; labels: number[]; near_tie_rows: number[] }>;
}
const EXPECTED = JSON.parse(readFileSync(path.join(DIR, "expected.json"), "utf8")) as Expected;
const TOL = 1e-5;
const N = EXPECTED.inputs.length;
const WIDTH = EXPECTED.inputs[0]!.length;

function maxAbsDiff(got: ArrayLike<number>, want: readonly number[]): number {
  assert.equal(got.length, want.length);
  let d = 0;
  for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(Number(got[i]) - want[i]!));
  return d;
}

function assertLabels(got: readonly number[], want: Expected["models"][string]): void {
  got.forEach((g, r) => {
    if (!want.near_tie_rows.includes(r)) assert.equal(g, want.labels[r], `row ${r}: label ${g}, sklearn says ${want.labels[r]}`);
  });
}

describe("inference: scikit-learn models score as sklearn does", () => {
  let nats: TestNats;
  let registryProc: MlmeshProcess;
  let inferenceProc: MlmeshProcess;
  let inference: ReturnType<typeof createServiceClient<typeof InferenceService>>;
  const prefix = `skl_${Date.now()}`;

  before(async () => {
    nats = await testNats();
    registryProc = await startMlmesh(["serve", "registry"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }));
    inferenceProc = await startMlmesh(
      ["serve", "inference"],
      await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn", MLMESH_REGISTRY_ADDR: registryProc.endpoint("registry").grpc }),
    );
    const registry = createServiceClient(RegistryService, registryProc.endpoint("registry").grpc);
    inference = createServiceClient(InferenceService, inferenceProc.endpoint("inference").grpc);
    for (const [name, m] of Object.entries(EXPECTED.models)) await upload(registry, `${prefix}_${name}`, readFileSync(path.join(DIR, m.file)), { chunkBytes: 16 * 1024 });
  });
  after(async () => {
    await inferenceProc?.stop();
    await registryProc?.stop();
    await nats?.stop();
  });

  for (const name of Object.keys(EXPECTED.models)) {
    it(`${name}: Score returns sklearn's predict_proba and predict`, async () => {
      const want = EXPECTED.models[name]!;
      const res = await inference.score({
        modelRef: `${prefix}_${name}@1`,
        inputs: { case: "dense", value: { tensors: [{ name: "x", type: TensorType.FLOAT32, shape: [BigInt(N), BigInt(WIDTH)], floatData: EXPECTED.inputs.flat() }] } },
        skipPredictionLog: true,
      });
      assert.equal(res.outputs.length, N);
      const probs = res.outputs.flatMap((o) => o.outputs["probabilities"]!.values);
      const diff = maxAbsDiff(probs, want.probabilities.flat());
      assert.ok(diff <= TOL, `${name}: max abs diff ${diff} > ${TOL}`);
      // The per-class map and the label Score derives from the outputs agree with sklearn too.
      res.outputs.forEach((o, r) => {
        for (let c = 0; c < 3; c++) assert.ok(Math.abs(o.classProbabilities[String(c)]! - want.probabilities[r]![c]!) <= TOL);
      });
      assertLabels(res.outputs.map((o) => Number(o.label)), want);
      console.log(`${name}: Score max abs diff vs sklearn ${diff.toExponential(2)} over ${N} rows`);
    });
  }

  it("OIP ModelInfer (typed contents and raw_input_contents) returns sklearn's numbers", async () => {
    const oip = grpcJsClient(GRPCInferenceService, inferenceProc.endpoint("inference").grpc);
    try {
      for (const [name, want] of Object.entries(EXPECTED.models)) {
        const modelName = `${prefix}_${name}`;
        const meta = await oip.unary("ModelMetadata", ModelMetadataRequestSchema, ModelMetadataResponseSchema, { name: modelName, version: "1" });
        assert.deepEqual(meta.inputs.map((t) => [t.name, t.datatype, t.shape]), [["x", "FP32", [-1n, BigInt(WIDTH)]]]);
        assert.deepEqual(
          meta.outputs.map((t) => [t.name, t.datatype, t.shape]).sort(),
          [["label", "INT64", [-1n]], ["probabilities", "FP32", [-1n, 3n]]],
        );
        const typed = await oip.unary("ModelInfer", ModelInferRequestSchema, ModelInferResponseSchema, {
          modelName,
          modelVersion: "1",
          inputs: [{ name: "x", datatype: "FP32", shape: [BigInt(N), BigInt(WIDTH)], contents: { fp32Contents: EXPECTED.inputs.flat() } }],
          outputs: [{ name: "probabilities" }, { name: "label" }],
        });
        assert.deepEqual(typed.outputs.map((o) => o.name), ["probabilities", "label"]);
        const typedDiff = maxAbsDiff(typed.outputs[0]!.contents!.fp32Contents, want.probabilities.flat());
        assert.ok(typedDiff <= TOL, `${name} typed: max abs diff ${typedDiff}`);
        assertLabels(typed.outputs[1]!.contents!.int64Contents.map(Number), want);

        const raw = await oip.unary("ModelInfer", ModelInferRequestSchema, ModelInferResponseSchema, {
          modelName,
          modelVersion: "1",
          inputs: [{ name: "x", datatype: "FP32", shape: [BigInt(N), BigInt(WIDTH)] }],
          rawInputContents: [new Uint8Array(new Float32Array(EXPECTED.inputs.flat()).buffer)],
          outputs: [{ name: "probabilities" }, { name: "label" }],
        });
        const p = raw.rawOutputContents[0]!;
        const l = raw.rawOutputContents[1]!;
        const rawDiff = maxAbsDiff(new Float32Array(p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength)), want.probabilities.flat());
        assert.ok(rawDiff <= TOL, `${name} raw: max abs diff ${rawDiff}`);
        assertLabels(Array.from(new BigInt64Array(l.buffer.slice(l.byteOffset, l.byteOffset + l.byteLength)), Number), want);
        console.log(`${name}: ModelInfer max abs diff vs sklearn typed ${typedDiff.toExponential(2)}, raw ${rawDiff.toExponential(2)}`);
      }
    } finally {
      oip.close();
    }
  });
});
