import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { UnitType } from "../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { LogOutcomesRequestSchema } from "../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { fastRequestEncoder } from "./fast-request-encoders.js";

const encode = fastRequestEncoder(LogOutcomesRequestSchema.typeName)!;
type Init = MessageInitShape<typeof LogOutcomesRequestSchema>;

let seed = 11;
const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);

describe("hand-written request encoders", () => {
  it("LogOutcomesRequest: the bytes toBinary writes, from init shapes and from messages", () => {
    const cases: Init[] = [
      { outcomes: [] },
      {},
      { outcomes: [{}] },
      {
        outcomes: [
          { unitId: "u1", metric: "revenue", value: 12.5, time: timestampFromMs(1_764_000_000_123), outcomeId: "o1", experimentKey: "checkout" },
          { unitId: "ü-ñ-😀", unitType: UnitType.SESSION, metric: "m", value: -0, outcomeId: "" },
          { unitId: "x", value: 0, time: { seconds: 0n, nanos: 0 } },
          { unitId: "y", value: Number.NaN, time: { seconds: -62_135_596_800n, nanos: 999_999_999 } },
          { unitId: "z".repeat(300), value: Number.POSITIVE_INFINITY, unitType: -1 as UnitType },
        ],
      },
      {
        outcomes: Array.from({ length: 500 }, (_, i) => ({
          unitId: `u${Math.floor(rand() * 1e6)}`,
          unitType: i % 3,
          metric: i % 2 ? "revenue" : "purchase",
          value: rand() * 100 - 50,
          time: rand() < 0.5 ? timestampFromMs(1_700_000_000_000 + Math.floor(rand() * 1e10)) : undefined,
          outcomeId: rand() < 0.3 ? "" : `o${i}`,
          experimentKey: rand() < 0.5 ? "" : "exp",
        })),
      },
    ];
    for (const init of cases) {
      const expected = toBinary(LogOutcomesRequestSchema, create(LogOutcomesRequestSchema, init));
      assert.deepEqual(encode(init), expected);
      assert.deepEqual(encode(create(LogOutcomesRequestSchema, init)), expected);
    }
  });

  it("declines what it does not encode exactly, so the client falls back to toBinary", () => {
    const withUnknown = fromBinary(LogOutcomesRequestSchema, Uint8Array.of(0x0a, 0x03, 0xf8, 0x06, 0x01));
    assert.equal(withUnknown.outcomes[0]!.$unknown?.length, 1);
    assert.equal(encode(withUnknown), undefined);
    assert.equal(encode({ outcomes: [{ unitId: "u", time: { seconds: "12" as never } }] }), undefined);
  });

  it("returns bytes the next call does not overwrite", () => {
    const a = encode({ outcomes: [{ unitId: "first" }] })!;
    const copy = Uint8Array.from(a);
    encode({ outcomes: [{ unitId: "second, longer" }] });
    assert.deepEqual(a, copy);
  });
});
