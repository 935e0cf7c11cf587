// The hand-read GetOnlineFeaturesRequest must equal what protobuf-es decodes, for every key
// kind and for the shapes it hands to protobuf-es; malformed bytes are INVALID_ARGUMENT.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetOnlineFeaturesRequestSchema } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { decodeOnlineRequest, fromMessage } from "./online-request.js";

function both(init: Parameters<typeof create<typeof GetOnlineFeaturesRequestSchema>>[1]) {
  const bytes = toBinary(GetOnlineFeaturesRequestSchema, create(GetOnlineFeaturesRequestSchema, init));
  return { fast: decodeOnlineRequest(bytes), slow: fromMessage(fromBinary(GetOnlineFeaturesRequestSchema, bytes)) };
}

describe("decodeOnlineRequest", () => {
  it("reads int64, string, double and bool keys, refs, feature_set and columnar as protobuf-es", () => {
    const { fast, slow } = both({
      entities: [
        { keys: { user_id: { kind: { case: "int64Value", value: 42n } }, item: { kind: { case: "stringValue", value: "naïve ✓" } } } },
        { keys: { user_id: { kind: { case: "int64Value", value: -(2n ** 63n) } } } },
        { keys: { user_id: { kind: { case: "int64Value", value: 2n ** 63n - 1n } } } },
        { keys: { user_id: { kind: { case: "int64Value", value: 300_000_000n } } } },
        { keys: { d: { kind: { case: "doubleValue", value: 1.5 } }, b: { kind: { case: "boolValue", value: true } }, empty: {} } },
        { keys: {} },
      ],
      refs: ["v:a", "v:b"],
      featureSet: "set1",
      columnar: true,
    });
    assert.deepEqual(fast, slow);
  });

  it("hands request data and float keys to protobuf-es, with the same result", () => {
    const { fast, slow } = both({
      entities: [{ keys: { user_id: { kind: { case: "int64Value", value: 1n } } } }, { keys: { user_id: { kind: { case: "floatValue", value: 0.5 } } } }],
      refs: ["v:a"],
      requestData: { x: { kind: { case: "doubleValue", value: 2 } } },
      entityRequestData: [{ fields: {} }, { fields: { x: { kind: { case: "doubleValue", value: 3 } } } }],
    });
    assert.deepEqual(fast, slow);
    assert.equal(fast.entities[1]!.request!.x, 3);
  });

  it("refuses malformed bytes with INVALID_ARGUMENT naming the request", () => {
    const bytes = toBinary(GetOnlineFeaturesRequestSchema, create(GetOnlineFeaturesRequestSchema, { refs: ["v:a"], entities: [{ keys: { id: { kind: { case: "int64Value", value: 5n } } } }] }));
    assert.throws(() => decodeOnlineRequest(bytes.subarray(0, bytes.length - 2)), (e) => e instanceof ValidationError && e.field === "request");
    assert.throws(() => decodeOnlineRequest(Uint8Array.of(0x0f)), ValidationError);
  });
});
