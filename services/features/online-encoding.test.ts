// The hand-written encoder must produce exactly what the reflective mapping produces:
// decode its bytes and compare with the message built the ordinary way, for every value
// kind, every status, vectors, negative and sub-second times.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetOnlineFeaturesResponseSchema } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { FeatureStatus } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { valueToProto } from "./mapping.js";
import { encodeOnlineFeaturesResponse } from "./online-encoding.js";
import type { ReadValue, ValueKind } from "./types.js";

const STATUS: Record<ReadValue["status"], FeatureStatus> = {
  present: FeatureStatus.PRESENT,
  not_found: FeatureStatus.NOT_FOUND,
  expired: FeatureStatus.EXPIRED,
  null: FeatureStatus.NULL,
};

function reflective(refs: string[], rows: ReadValue[][], types: ValueKind[], now: number) {
  return create(GetOnlineFeaturesResponseSchema, {
    refs,
    rows: rows.map((row) => ({
      values: row.map((v, c) => ({
        status: STATUS[v.status],
        value: v.status === "present" ? valueToProto(v.value, types[c]!) : undefined,
        eventTime: Number.isNaN(v.eventTime) ? undefined : timestampFromMs(v.eventTime),
      })),
    })),
    readTime: timestampFromMs(now),
  });
}

describe("encodeOnlineFeaturesResponse", () => {
  const types: ValueKind[] = ["float64", "float32", "int64", "string", "bool", "float_vector", "float64"];
  const refs = types.map((t, i) => `v:f${i}_${t}`);
  const rows: ReadValue[][] = [
    [
      { status: "present", value: 1.5, eventTime: 1_700_000_000_123 },
      { status: "present", value: 0.25, eventTime: 1_700_000_000_123 },
      { status: "present", value: -42n, eventTime: 1_700_000_000_000 },
      { status: "present", value: "naïve ✓", eventTime: -1_500 },
      { status: "present", value: false, eventTime: 0 },
      { status: "present", value: [0.5, -1, 3.25], eventTime: 5 },
      { status: "present", value: 0, eventTime: 1 },
    ],
    [
      { status: "not_found", value: null, eventTime: NaN },
      { status: "expired", value: null, eventTime: 1_600_000_000_000 },
      { status: "null", value: null, eventTime: 1_600_000_000_000 },
      { status: "present", value: "", eventTime: 10 },
      { status: "present", value: true, eventTime: 10 },
      { status: "present", value: [], eventTime: 10 },
      { status: "present", value: -0.0001, eventTime: 999 },
    ],
  ];

  it("decodes to the message the reflective mapping builds", () => {
    const now = 1_700_000_123_456;
    const fast = fromBinary(GetOnlineFeaturesResponseSchema, encodeOnlineFeaturesResponse(refs, rows, types, now));
    const slow = reflective(refs, rows, types, now);
    assert.ok(equals(GetOnlineFeaturesResponseSchema, fast, slow), JSON.stringify({ fast: fast.rows[0], slow: slow.rows[0] }, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
    // And the bytes are the same as protobuf-es writes them.
    assert.deepEqual(encodeOnlineFeaturesResponse(refs, rows, types, now), toBinary(GetOnlineFeaturesResponseSchema, slow));
  });
});
