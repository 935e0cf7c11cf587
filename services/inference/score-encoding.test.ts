// The hand-written ScoreResponse encoder writes exactly the bytes protobuf-es writes for the
// response rowOutputs describes: binary, multi-class and regression outputs, integer labels,
// requested outputs, outputs without a batch dimension, zero scores and empty heads.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ScoreResponseSchema } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { rowOutputs } from "./score.js";
import { encodeScoreResponse, type ScoreResponseHead } from "./score-encoding.js";
import type { DenseTensor } from "./tensors.js";

const f32 = (dims: number[], xs: number[]): DenseTensor => ({ type: "float32", dims, data: Float32Array.from(xs) });
const i64 = (dims: number[], xs: number[]): DenseTensor => ({ type: "int64", dims, data: BigInt64Array.from(xs.map(BigInt)) });

function reference(head: ScoreResponseHead, outputs: Record<string, DenseTensor>, rows: number, wanted: string[]): Uint8Array {
  return toBinary(
    ScoreResponseSchema,
    create(ScoreResponseSchema, {
      modelName: head.modelName,
      version: BigInt(head.version),
      outputs: rowOutputs(outputs, rows, wanted),
      requestId: head.requestId,
      queueTimeUs: BigInt(head.queueTimeUs),
      computeTimeUs: BigInt(head.computeTimeUs),
    }),
  );
}

const head: ScoreResponseHead = { modelName: "churn", version: 3, requestId: "req-1", queueTimeUs: 17, computeTimeUs: 1234567 };

describe("encodeScoreResponse", () => {
  const cases: Array<[string, ScoreResponseHead, Record<string, DenseTensor>, number, string[]]> = [
    ["one score per row [N, 1]", head, { score: f32([3, 1], [0.25, 0, 0.9]) }, 3, []],
    ["binary probabilities + int64 label", head, { label: i64([2], [1, 0]), probabilities: f32([2, 2], [0.2, 0.8, 0.6, 0.4]) }, 2, []],
    ["multi-class probabilities + label", { ...head, version: 1, queueTimeUs: 0 }, { label: i64([2], [2, 0]), probabilities: f32([2, 3], [0.1, 0.2, 0.7, 0.5, 0.3, 0.2]) }, 2, []],
    ["multi-class without a label output", head, { probabilities: f32([1, 4], [0.1, 0.6, 0.2, 0.1]) }, 1, []],
    ["requested outputs only, in the requested order", head, { label: i64([2], [1, 0]), probabilities: f32([2, 2], [0.3, 0.7, 0.9, 0.1]) }, 2, ["probabilities", "label", "label"]],
    ["an output without the batch dimension", head, { score: f32([2, 1], [0.5, 0.5]), bias: f32([3], [1, 2, 3]) }, 2, []],
    ["integer-like output names and an empty head", { modelName: "", version: 0, requestId: "", queueTimeUs: 0, computeTimeUs: 0 }, { "1": f32([1, 1], [0.5]), "0": f32([1, 2], [1, 2]) }, 1, []],
    ["NaN and negative-zero scores", head, { score: f32([3, 1], [Number.NaN, -0, 1e-30]) }, 3, []],
    ["a regression output [N] and a 2-d output", head, { variable: f32([2], [12.5, -3]), embedding: f32([2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]) }, 2, []],
  ];
  for (const [name, h, outputs, rows, wanted] of cases) {
    it(name, () => {
      const got = encodeScoreResponse(h, outputs, rows, wanted);
      const want = reference(h, outputs, rows, wanted);
      assert.deepEqual(Buffer.from(got).toString("hex"), Buffer.from(want).toString("hex"));
      assert.equal(fromBinary(ScoreResponseSchema, got).outputs.length, rows);
    });
  }

  it("refuses an unknown requested output like rowOutputs", () => {
    assert.throws(() => encodeScoreResponse(head, { score: f32([1, 1], [0.5]) }, 1, ["nope"]), (e: unknown) => e instanceof ValidationError && /unknown output "nope"/.test(e.message));
  });
});
