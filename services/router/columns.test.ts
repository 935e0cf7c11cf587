import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FeatureStatus } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { GetOnlineFeaturesResponseSchema } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { featureGrid } from "./columns.js";

const { PRESENT, NOT_FOUND, EXPIRED, NULL } = FeatureStatus;

describe("featureGrid", () => {
  // The same three entities x four refs in both shapes: a present, a missing, an expired and a null cell.
  const columnar = fromBinary(
    GetOnlineFeaturesResponseSchema,
    toBinary(
      GetOnlineFeaturesResponseSchema,
      create(GetOnlineFeaturesResponseSchema, {
        refs: ["v:d", "v:i", "v:s", "v:vec"],
        columns: [
          { statuses: [PRESENT, NOT_FOUND, PRESENT], eventTimesMs: [1, 0, 3], doubleValues: [0.5, 0, 0] },
          { statuses: [EXPIRED, PRESENT, PRESENT], eventTimesMs: [1, 2, 3], int64Values: [0n, 7n, -2n] },
          { statuses: [PRESENT, NULL, PRESENT], eventTimesMs: [1, 2, 3], stringValues: ["a", "", ""] },
          { statuses: [PRESENT, PRESENT, NOT_FOUND], eventTimesMs: [1, 2, 0], vectorValues: [{ values: [1, 2] }, { values: [] }, { values: [] }] },
        ],
      }),
    ),
  );
  const f = (x: number) => ({ status: PRESENT, value: { kind: { case: "doubleValue" as const, value: x } } });
  const rows = create(GetOnlineFeaturesResponseSchema, {
    refs: ["v:d", "v:i"],
    rows: [{ values: [f(0.5), { status: EXPIRED }] }, { values: [{ status: NOT_FOUND }, { status: PRESENT, value: { kind: { case: "int64Value", value: 7n } } }] }],
  });

  it("reads a columnar response: values only where PRESENT, zero fillers never leak", () => {
    const g = featureGrid(columnar, 3);
    assert.deepEqual(g.value(0, 0)?.kind, { case: "doubleValue", value: 0.5 });
    assert.equal(g.value(1, 0), undefined);
    assert.equal(g.status(1, 0), NOT_FOUND);
    // A PRESENT 0.0 is a value, not a missing one.
    assert.deepEqual(g.value(2, 0)?.kind, { case: "doubleValue", value: 0 });
    assert.equal(g.value(0, 1), undefined, "EXPIRED has no value");
    assert.equal(g.status(0, 1), EXPIRED);
    assert.deepEqual(g.value(2, 1)?.kind, { case: "int64Value", value: -2n });
    assert.equal(g.value(1, 2), undefined, "NULL has no value");
    assert.deepEqual(g.value(2, 2)?.kind, { case: "stringValue", value: "" });
    assert.deepEqual(g.value(0, 3)?.kind.case, "floatVectorValue");
    const empty = g.value(1, 3)?.kind;
    assert.deepEqual(empty?.case === "floatVectorValue" ? empty.value.values : "not a vector", [], "a PRESENT empty vector is a value");
    assert.equal(g.value(2, 3), undefined);
  });

  it("reads a row-shaped response the same way (a features service without columnar)", () => {
    const g = featureGrid(rows, 2);
    assert.deepEqual(g.value(0, 0)?.kind, { case: "doubleValue", value: 0.5 });
    assert.equal(g.value(0, 1), undefined);
    assert.equal(g.status(0, 1), EXPIRED);
    assert.equal(g.value(1, 0), undefined);
    assert.deepEqual(g.value(1, 1)?.kind, { case: "int64Value", value: 7n });
  });
});
