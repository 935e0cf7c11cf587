// The lean GetOnlineFeatures client must read exactly what protobuf-es writes: every column
// type, every status, empty columns, vectors, negative int64s and times; its request must
// decode (protobuf-es as the reference) to the message a normal client would send.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetOnlineFeaturesRequestSchema, GetOnlineFeaturesResponseSchema } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { FeatureStatus } from "../gen/mlmesh/features/v1/features_resources_pb.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { decodeColumnarResponse, encodeColumnarRequest } from "./features-online-client.js";

describe("features-online-client", () => {
  it("encodes the request as protobuf-es would (int64 and string keys, columnar)", () => {
    const bytes = encodeColumnarRequest([{ user_id: 42n, item: "x\u00e9" }, { user_id: -7 }, { user_id: 2 ** 40 }], ["v:a", "v:b"]);
    const req = fromBinary(GetOnlineFeaturesRequestSchema, bytes);
    assert.equal(req.columnar, true);
    assert.deepEqual(req.refs, ["v:a", "v:b"]);
    assert.equal(req.entities.length, 3);
    assert.deepEqual(req.entities[0]!.keys.user_id!.kind, { case: "int64Value", value: 42n });
    assert.deepEqual(req.entities[0]!.keys.item!.kind, { case: "stringValue", value: "x\u00e9" });
    assert.deepEqual(req.entities[1]!.keys.user_id!.kind, { case: "int64Value", value: -7n });
    assert.deepEqual(req.entities[2]!.keys.user_id!.kind, { case: "int64Value", value: BigInt(2 ** 40) });
    const withSet = fromBinary(GetOnlineFeaturesRequestSchema, encodeColumnarRequest([], [], "fs1"));
    assert.equal(withSet.featureSet, "fs1");
    assert.throws(() => encodeColumnarRequest([{ user_id: 1.5 }], ["v:a"]), /not an integer/);
  });

  it("decodes every column type as protobuf-es encodes it", () => {
    const S = FeatureStatus;
    const msg = create(GetOnlineFeaturesResponseSchema, {
      refs: ["v:d", "v:f", "v:i", "v:s", "v:b", "v:vec", "v:empty"],
      readTime: timestampFromMs(-1234),
      columns: [
        { statuses: [S.PRESENT, S.NOT_FOUND, S.EXPIRED], eventTimesMs: [1.7e12, 0, -5], doubleValues: [1.5, 0, -Infinity] },
        { statuses: [S.PRESENT, S.NULL, S.PRESENT], eventTimesMs: [1, 2, 3], floatValues: [0.25, 0, -3] },
        { statuses: [S.PRESENT, S.PRESENT, S.PRESENT], eventTimesMs: [1, 2, 3], int64Values: [-(2n ** 63n), 0n, 2n ** 63n - 1n] },
        { statuses: [S.PRESENT, S.PRESENT, S.NOT_FOUND], eventTimesMs: [1, 2, 0], stringValues: ["a", "\u00fcber", ""] },
        { statuses: [S.PRESENT, S.PRESENT, S.PRESENT], eventTimesMs: [1, 2, 3], boolValues: [true, false, true] },
        { statuses: [S.PRESENT, S.PRESENT, S.NOT_FOUND], eventTimesMs: [1, 2, 0], vectorValues: [{ values: [1, 2.5] }, { values: [] }, { values: [] }] },
        {},
      ],
    });
    const got = decodeColumnarResponse(toBinary(GetOnlineFeaturesResponseSchema, msg));
    assert.deepEqual(got.refs, msg.refs);
    assert.equal(got.readTimeMs, -1234);
    assert.equal(got.columns.length, 7);
    for (let c = 0; c < 6; c++) {
      assert.deepEqual([...got.columns[c]!.statuses], msg.columns[c]!.statuses, `statuses of column ${c}`);
      assert.deepEqual([...got.columns[c]!.eventTimesMs], msg.columns[c]!.eventTimesMs, `times of column ${c}`);
    }
    assert.deepEqual([...got.columns[0]!.doubles!], [1.5, 0, -Infinity]);
    assert.deepEqual([...got.columns[1]!.floats!], [0.25, 0, -3]);
    assert.deepEqual([...got.columns[2]!.int64s!], [-(2n ** 63n), 0n, 2n ** 63n - 1n]);
    assert.deepEqual(got.columns[3]!.strings, ["a", "\u00fcber", ""]);
    assert.deepEqual([...got.columns[4]!.bools!], [1, 0, 1]);
    assert.deepEqual(got.columns[5]!.vectors!.map((v) => [...v]), [[1, 2.5], [], []]);
    assert.equal(got.columns[6]!.statuses.length, 0);
    assert.equal(got.columns[6]!.doubles, undefined);
  });

  it("refuses a truncated or row-major answer", () => {
    const bytes = toBinary(GetOnlineFeaturesResponseSchema, create(GetOnlineFeaturesResponseSchema, { refs: ["v:a"], columns: [{ statuses: [1], eventTimesMs: [1], doubleValues: [2] }] }));
    assert.throws(() => decodeColumnarResponse(bytes.subarray(0, bytes.length - 3)), /truncated|overruns/);
    const rows = toBinary(GetOnlineFeaturesResponseSchema, create(GetOnlineFeaturesResponseSchema, { refs: ["v:a"], rows: [{ values: [] }] }));
    assert.throws(() => decodeColumnarResponse(rows), /rows/);
  });
});
