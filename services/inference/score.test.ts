import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { RowSchema } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { FeatureBindingSchema } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";
import type { LoadedVersion } from "./loader.js";
import { feedsFromDense, feedsFromRows, rowOutputs } from "./score.js";

const version = (binding?: string[]): LoadedVersion =>
  ({
    name: "churn",
    version: 1,
    inputs: [{ name: "x", type: "float32", dims: [-1, 3] }],
    outputs: [{ name: "score", type: "float32", dims: [-1, 1] }],
    binding: binding ? create(FeatureBindingSchema, { inputs: [{ inputName: "x", features: binding }] }) : undefined,
  }) as unknown as LoadedVersion;
const limits = { maxRows: 100, allowNonFinite: false };
const f = (value: number) => ({ kind: { case: "doubleValue" as const, value } });
const fails = (re: RegExp) => (e: unknown) => e instanceof ValidationError && re.test(e.message);

describe("score: rows and tensors onto model inputs", () => {
  it("maps named rows through the feature binding, by full ref or feature name", () => {
    const v = version(["acct:a", "acct:b", "acct:c"]);
    const rows = [create(RowSchema, { values: { a: f(1), "acct:b": f(2), c: f(3) } }), create(RowSchema, { values: { a: f(4), b: f(5), c: f(6) } })];
    const feeds = feedsFromRows(v, rows, limits);
    assert.deepEqual(feeds.x!.dims, [2, 3]);
    assert.deepEqual(Array.from(feeds.x!.data as Float32Array), [1, 2, 3, 4, 5, 6]);
  });

  it("takes a float vector under the input name when there is no binding", () => {
    const feeds = feedsFromRows(version(), [create(RowSchema, { values: { x: { kind: { case: "floatVectorValue", value: { values: [1, 2, 3] } } } } })], limits);
    assert.deepEqual(Array.from(feeds.x!.data as Float32Array), [1, 2, 3]);
    assert.throws(
      () => feedsFromRows(version(), [create(RowSchema, { values: { x: { kind: { case: "floatVectorValue", value: { values: [1, 2] } } } } })], limits),
      fails(/rows\[0\]\.values\["x"\]: expected 3 values/),
    );
  });

  it("names the row and input of what is wrong", () => {
    const v = version(["acct:a", "acct:b", "acct:c"]);
    assert.throws(() => feedsFromRows(v, [create(RowSchema, { values: { a: f(1), b: f(2) } })], limits), fails(/rows\[0\]\.values\["acct:c"\]: missing/));
    assert.throws(() => feedsFromRows(v, [create(RowSchema, { values: { a: f(1), b: f(2), c: f(Infinity) } })], limits), fails(/not finite/));
    assert.throws(() => feedsFromRows(v, [create(RowSchema, { values: { a: f(1), b: f(2), c: f(3), d: f(4) } })], limits), fails(/rows\[0\]\.values\["d"\]: unknown/));
    assert.throws(() => feedsFromRows(v, Array.from({ length: 101 }, () => create(RowSchema)), limits), fails(/101 rows is more than the 100/));
    assert.throws(() => feedsFromDense(v, [{ name: "x", type: "float32", dims: [1, 3], values: [1, 2] }], () => "inputs[0]", limits), fails(/needs 3 values, got 2/));
    assert.throws(() => feedsFromDense(v, [], () => "", limits), fails(/missing input "x"/));
  });

  it("gives the positive-class probability as the score of a two-column output", () => {
    const out = rowOutputs({ probabilities: { type: "float32", dims: [2, 2], data: Float32Array.from([0.75, 0.25, 0.1, 0.9]) } }, 2, []);
    assert.deepEqual(out.map((o) => o.score), [0.25, Math.fround(0.9)]);
    assert.equal(out[1]!.classProbabilities!["1"], Math.fround(0.9));
    assert.deepEqual(out[0]!.outputs!.probabilities!.values, [0.75, 0.25]);
  });
});
