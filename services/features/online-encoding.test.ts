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
import { encodeOnlineFeaturesColumns, encodeOnlineFeaturesResponse } from "./online-encoding.js";
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

  it("matches protobuf-es byte for byte on long rows, multi-byte lengths and extreme values", () => {
    const kinds: ValueKind[] = [];
    const row: ReadValue[] = [];
    for (let i = 0; i < 150; i++) {
      const kind = (["int64", "string", "float_vector", "float64"] as const)[i % 4]!;
      kinds.push(kind);
      const value = kind === "int64" ? [2n ** 60n, -(2n ** 63n), 2n ** 63n - 1n, 127n][i % 4]! : kind === "string" ? "ü".repeat(i * 3) : kind === "float_vector" ? Array.from({ length: i }, (_, j) => j / 4) : -1e300;
      row.push({ status: "present", value, eventTime: -62135596800000 + i * 1001 });
    }
    const manyRefs = kinds.map((k, i) => `view_${"x".repeat(100)}:f${i}`);
    const now = 253402300799999;
    const slow = reflective(manyRefs, [row, row], kinds, now);
    assert.deepEqual(encodeOnlineFeaturesResponse(manyRefs, [row, row], kinds, now), toBinary(GetOnlineFeaturesResponseSchema, slow));
  });

  it("encodes a columnar read byte for byte as protobuf-es, zero values where not PRESENT", () => {
    const now = 1_700_000_123_456;
    const columns = types.map((type, c) => {
      const zero = { float64: 0, float32: 0, int64: 0n, string: "", bool: false, float_vector: [] as number[] }[type];
      const pick = rows.map((r) => (r[c]!.status === "present" ? r[c]!.value : zero));
      const base = { statuses: rows.map((r) => STATUS[r[c]!.status]), eventTimesMs: rows.map((r) => (Number.isNaN(r[c]!.eventTime) ? 0 : r[c]!.eventTime)) };
      switch (type) {
        case "float64":
          return { ...base, doubleValues: pick as number[] };
        case "float32":
          return { ...base, floatValues: pick as number[] };
        case "int64":
          return { ...base, int64Values: pick as bigint[] };
        case "string":
          return { ...base, stringValues: pick as string[] };
        case "bool":
          return { ...base, boolValues: pick as boolean[] };
        default:
          return { ...base, vectorValues: (pick as number[][]).map((values) => ({ values })) };
      }
    });
    const slow = create(GetOnlineFeaturesResponseSchema, { refs, readTime: timestampFromMs(now), columns });
    const bytes = encodeOnlineFeaturesColumns(refs, rows, types, now);
    assert.deepEqual(bytes, toBinary(GetOnlineFeaturesResponseSchema, slow));
    const decoded = fromBinary(GetOnlineFeaturesResponseSchema, bytes);
    assert.deepEqual(decoded.columns[5]!.vectorValues.map((v) => v.values), [[0.5, -1, 3.25], []]);
    assert.deepEqual(decoded.columns[1]!.statuses, [FeatureStatus.PRESENT, FeatureStatus.EXPIRED]);
    assert.deepEqual(decoded.columns[1]!.eventTimesMs, [1_700_000_000_123, 1_600_000_000_000]);
    // No entities: empty columns, as protobuf-es writes them.
    const none = create(GetOnlineFeaturesResponseSchema, { refs, readTime: timestampFromMs(now), columns: types.map(() => ({})) });
    assert.deepEqual(encodeOnlineFeaturesColumns(refs, [], types, now), toBinary(GetOnlineFeaturesResponseSchema, none));
  });
});
