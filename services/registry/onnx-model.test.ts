// The signature and artifact metadata read from the fixture models (made by
// test/fixtures/models/make_models.py with onnx.helper, so the expected values are known).

import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { toJson } from "@bufbuild/protobuf";
import { ArtifactSchema, SignatureSchema } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { REPO_ROOT } from "../../test/support/mlmesh-process.js";
import { inspectOnnxFile } from "./onnx-model.js";

const fixture = (f: string) => path.join(REPO_ROOT, "test/fixtures/models", f);

describe("inspectOnnxFile", () => {
  it("reads names, element types, symbolic and fixed dims, doc strings, opsets and producer", async () => {
    const r = await inspectOnnxFile(fixture("lr_v1.onnx"));
    assert.deepEqual(toJson(SignatureSchema, r.signature), {
      inputs: [
        { name: "x", kind: "ONNX_VALUE_KIND_TENSOR", elementType: "ELEMENT_TYPE_FLOAT", shape: { dims: [{ symbol: "batch" }, { size: "3" }] }, typeDescription: "tensor(float)", docString: "feature matrix" },
      ],
      outputs: [{ name: "score", kind: "ONNX_VALUE_KIND_TENSOR", elementType: "ELEMENT_TYPE_FLOAT", shape: { dims: [{ symbol: "batch" }, { size: "1" }] }, typeDescription: "tensor(float)" }],
    });
    assert.deepEqual(toJson(ArtifactSchema, r.artifact), {
      irVersion: "8",
      opsetVersions: { "": "13" },
      producerName: "mlmesh-fixtures",
      producerVersion: "1.0",
      metadataProps: { task: "binary_classification" },
    });
  });

  it("refuses a file that is not ONNX with a ValidationError on the chunks", async () => {
    await assert.rejects(inspectOnnxFile(path.join(REPO_ROOT, "package.json")), (e: unknown) => e instanceof ValidationError && /not an ONNX model/.test(e.message));
  });
});
