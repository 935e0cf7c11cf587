// The hand-written LogOutcomesRequest (and LogExposuresRequest) decoder must read exactly what protobuf-es's
// fromBinary reads (random messages, shuffled and repeated fields, unknown fields, extreme
// values, long strings), and must refuse whatever fromBinary refuses (truncations, flipped
// bytes, invalid UTF-8) with INVALID_ARGUMENT.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ExposureSchema } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { LogExposuresRequestSchema, LogOutcomesRequestSchema } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { decodeLogExposuresRequest, decodeLogOutcomesRequest, encodeLogOutcomesRequest, exposureRow, outcomeColumns, type OutcomeColumns } from "./ingest-wire.js";

let seed = 7;
const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

const ALPHABETS = ["abcdefghijklmnopqrstuvwxyz0123456789-_", "héllo wörld ñ", "日本語テキスト", "😀🎉🚀", "\u0000\u007f"];
function randomString(): string {
  const len = pick([0, 1, 5, 12, 47, 48, 49, 64, 200]);
  const alphabet = [...pick(ALPHABETS)];
  let s = "";
  for (let i = 0; i < len; i++) s += pick(alphabet);
  return s;
}
const VALUES = [0, -0, 1, -1.5, 1e-310, 1.7976931348623157e308, Number.NaN, Infinity, -Infinity, Math.PI];
const SECONDS = [0n, 1n, -1n, 1_700_000_000n, 253402300799n, -62135596800n, 2n ** 53n + 1n, -(2n ** 63n), 2n ** 63n - 1n];
const NANOS = [0, 1, 499_999, 500_000, 999_999_999, -1, 2_147_483_647, -2_147_483_648];

function randomOutcome() {
  return {
    unitId: rand() < 0.1 ? "" : randomString(),
    unitType: pick([0, 1, 2, 3, 99, -1, 2_147_483_647, -2_147_483_648]),
    metric: randomString(),
    value: rand() < 0.5 ? pick(VALUES) : (rand() - 0.5) * 1e6,
    time: rand() < 0.2 ? undefined : { seconds: pick(SECONDS), nanos: pick(NANOS) },
    outcomeId: randomString(),
    experimentKey: rand() < 0.5 ? "" : randomString(),
  };
}

/** What fromBinary reads, in columns (Object.is for values: NaN and -0 must survive). */
function reference(bytes: Uint8Array): OutcomeColumns {
  return outcomeColumns(fromBinary(LogOutcomesRequestSchema, bytes).outcomes);
}

function assertSame(bytes: Uint8Array): void {
  const want = reference(bytes);
  const got = decodeLogOutcomesRequest(bytes);
  assert.equal(got.length, want.length);
  for (const k of ["unitId", "unitType", "metric", "outcomeId", "experimentKey"] as const) assert.deepEqual(got[k], want[k], k);
  for (const k of ["value", "timeMs"] as const) {
    for (let i = 0; i < want.length; i++) assert.ok(Object.is(got[k][i], want[k][i]), `${k}[${i}]: ${got[k][i]} != ${want[k][i]}`);
  }
}

/** Either both refuse (ours with INVALID_ARGUMENT), or ours accepts and reads what fromBinary reads. Ours may refuse more. */
function assertNoLooser(bytes: Uint8Array): void {
  let refErr: unknown;
  try {
    reference(bytes);
  } catch (err) {
    refErr = err;
  }
  let ours: OutcomeColumns | undefined;
  try {
    ours = decodeLogOutcomesRequest(bytes);
  } catch (err) {
    assert.ok(err instanceof ValidationError, `not a ValidationError: ${String(err)}`);
    assert.match(err.message, /^request: is not a valid mlmesh\.experiments\.v1\.LogOutcomesRequest message/);
    return;
  }
  assert.equal(refErr, undefined, `fromBinary refused what the decoder accepted: ${String(refErr)}`);
  assert.ok(ours);
  assertSame(bytes);
}

/** One outcome's fields written by hand: shuffled, some repeated, with unknown fields between. */
function handWritten(): Uint8Array {
  const w = new BinaryWriter();
  const outcomes = 1 + Math.floor(rand() * 5);
  for (let i = 0; i < outcomes; i++) {
    const o = new BinaryWriter();
    const writers: Array<() => void> = [
      () => o.tag(1, WireType.LengthDelimited).string(randomString()),
      () => o.tag(2, WireType.Varint).int32(pick([0, 1, -5, 2_147_483_647])),
      () => o.tag(3, WireType.LengthDelimited).string(randomString()),
      () => o.tag(4, WireType.Bit64).double(pick(VALUES)),
      () => {
        // A partial Timestamp: repeats of `time` merge field by field.
        const t = new BinaryWriter();
        if (rand() < 0.7) t.tag(1, WireType.Varint).int64(pick(SECONDS));
        if (rand() < 0.7) t.tag(2, WireType.Varint).int32(pick(NANOS));
        if (rand() < 0.3) t.tag(9, WireType.Varint).uint32(5);
        o.tag(5, WireType.LengthDelimited).bytes(t.finish());
      },
      () => o.tag(6, WireType.LengthDelimited).string(randomString()),
      () => o.tag(7, WireType.LengthDelimited).string(randomString()),
      () => o.tag(8 + Math.floor(rand() * 1000), WireType.Varint).uint64(2n ** 64n - 1n),
      () => o.tag(20, WireType.Bit32).fixed32(7),
      () => o.tag(21, WireType.Bit64).fixed64(9n),
      () => o.tag(22, WireType.LengthDelimited).bytes(new Uint8Array([1, 2, 3])),
      () => o.tag(23, WireType.StartGroup).tag(1, WireType.Varint).uint32(1).tag(2, WireType.StartGroup).tag(2, WireType.EndGroup).tag(23, WireType.EndGroup),
    ];
    const count = Math.floor(rand() * 14);
    for (let k = 0; k < count; k++) pick(writers)();
    w.tag(1, WireType.LengthDelimited).bytes(o.finish());
    if (rand() < 0.2) w.tag(2, WireType.Varint).uint32(3); // unknown field of the request
  }
  return w.finish();
}

describe("decodeLogOutcomesRequest", () => {
  it("reads random messages as fromBinary does", () => {
    for (let r = 0; r < 300; r++) {
      const req = create(LogOutcomesRequestSchema, { outcomes: Array.from({ length: Math.floor(rand() * 20) }, randomOutcome) });
      assertSame(toBinary(LogOutcomesRequestSchema, req));
    }
  });

  it("reads shuffled, repeated and unknown fields as fromBinary does", () => {
    for (let r = 0; r < 1000; r++) assertSame(handWritten());
  });

  it("reads the empty message, an empty outcome and strings of a megabyte", () => {
    assert.equal(decodeLogOutcomesRequest(new Uint8Array(0)).length, 0);
    assertSame(toBinary(LogOutcomesRequestSchema, create(LogOutcomesRequestSchema, { outcomes: [{}] })));
    const big = "x".repeat(1 << 20) + "é".repeat(1000);
    assertSame(toBinary(LogOutcomesRequestSchema, create(LogOutcomesRequestSchema, { outcomes: [{ unitId: big, metric: "m", outcomeId: big }] })));
  });

  it("refuses every truncation and flipped byte fromBinary refuses", () => {
    for (let r = 0; r < 40; r++) {
      const bytes = r % 2 ? handWritten() : toBinary(LogOutcomesRequestSchema, create(LogOutcomesRequestSchema, { outcomes: Array.from({ length: 3 }, randomOutcome) }));
      for (let cut = 0; cut < bytes.length; cut++) assertNoLooser(bytes.subarray(0, cut));
      for (let k = 0; k < 60; k++) {
        const flipped = bytes.slice();
        flipped[Math.floor(rand() * flipped.length)] = Math.floor(rand() * 256);
        assertNoLooser(flipped);
      }
    }
  });

  it("refuses invalid UTF-8, a bad tag and a wrong wire type with the outcome and field named", () => {
    const bad = new BinaryWriter();
    bad.tag(1, WireType.LengthDelimited).bytes(new BinaryWriter().tag(6, WireType.LengthDelimited).bytes(new Uint8Array([0x61, 0xff, 0x62])).finish());
    const badBytes = bad.finish();
    assert.throws(() => fromBinary(LogOutcomesRequestSchema, badBytes));
    assert.throws(() => decodeLogOutcomesRequest(badBytes), /invalid UTF-8 at outcomes\[0\]\.outcome_id/);
    assert.throws(() => decodeLogOutcomesRequest(new Uint8Array([0])), /illegal tag: field no 0/);
    const wrongWire = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.Varint).uint32(1).finish()).finish();
    assert.throws(() => decodeLogOutcomesRequest(wrongWire), (err: unknown) => err instanceof ValidationError && /outcomes\[0\]\.unit_id/.test(err.message));
  });
});

describe("encodeLogOutcomesRequest", () => {
  it("writes what fromBinary and the decoder read back as given", () => {
    const MS = [0, 1, 999, 1000, 1_700_000_000_123, -1, -1001, 253402300799999, -62135596800000];
    for (let r = 0; r < 300; r++) {
      const n = Math.floor(rand() * 20);
      const c: OutcomeColumns = {
        length: n,
        unitId: Array.from({ length: n }, randomString),
        unitType: Array.from({ length: n }, () => pick([0, 1, 2, 99, -1, 2_147_483_647, -2_147_483_648])),
        metric: Array.from({ length: n }, randomString),
        value: Array.from({ length: n }, () => (rand() < 0.5 ? pick(VALUES) : (rand() - 0.5) * 1e6)),
        timeMs: Array.from({ length: n }, () => (rand() < 0.2 ? NaN : rand() < 0.5 ? pick(MS) : Math.floor(rand() * 4e12))),
        outcomeId: Array.from({ length: n }, randomString),
        experimentKey: Array.from({ length: n }, randomString),
      };
      const bytes = encodeLogOutcomesRequest(c);
      assertSame(bytes);
      const back = decodeLogOutcomesRequest(bytes);
      for (const k of ["unitId", "unitType", "metric", "outcomeId", "experimentKey"] as const) assert.deepEqual(back[k], c[k], k);
      for (const k of ["value", "timeMs"] as const) {
        for (let i = 0; i < n; i++) assert.ok(Object.is(back[k][i], c[k][i]), `${k}[${i}]: ${back[k][i]} != ${c[k][i]}`);
      }
    }
  });
});

describe("decodeLogExposuresRequest", () => {
  const randomExposure = () => ({
    experimentKey: randomString(),
    unitId: randomString(),
    arm: randomString(),
    time: rand() < 0.2 ? undefined : { seconds: pick(SECONDS), nanos: pick(NANOS) },
    phase: pick([0, 1, 7, -1, 2_147_483_647]),
    source: randomString(),
  });
  const same = (bytes: Uint8Array) => {
    const want = fromBinary(LogExposuresRequestSchema, bytes).exposures.map(exposureRow);
    const got = decodeLogExposuresRequest(bytes);
    assert.equal(got.length, want.length);
    got.forEach((g, i) => {
      const w = want[i]!;
      assert.deepEqual([g.experimentKey, g.unitId, g.arm, g.phase], [w.experimentKey, w.unitId, w.arm, w.phase]);
      assert.ok(Object.is(g.timeMs, w.timeMs), `timeMs[${i}]: ${g.timeMs} != ${w.timeMs}`);
    });
  };

  it("reads random messages, with unknown and repeated fields, as fromBinary does", () => {
    for (let r = 0; r < 300; r++) {
      const bytes = toBinary(LogExposuresRequestSchema, create(LogExposuresRequestSchema, { exposures: Array.from({ length: Math.floor(rand() * 20) }, randomExposure) }));
      same(bytes);
      // The same exposures followed by unknown fields and a repeated, partial time in each.
      const w = new BinaryWriter();
      for (const x of fromBinary(LogExposuresRequestSchema, bytes).exposures) {
        const extra = new BinaryWriter().tag(9, WireType.Varint).uint32(1).tag(4, WireType.LengthDelimited).bytes(new BinaryWriter().tag(2, WireType.Varint).int32(pick(NANOS)).finish()).finish();
        const body = toBinary(ExposureSchema, x);
        w.tag(1, WireType.LengthDelimited).bytes(new Uint8Array([...body, ...extra]));
      }
      same(w.finish());
    }
  });

  it("refuses every truncation and flipped byte fromBinary refuses, naming the exposure", () => {
    for (let r = 0; r < 20; r++) {
      const bytes = toBinary(LogExposuresRequestSchema, create(LogExposuresRequestSchema, { exposures: Array.from({ length: 3 }, randomExposure) }));
      const check = (b: Uint8Array) => {
        let refErr: unknown;
        try {
          fromBinary(LogExposuresRequestSchema, b);
        } catch (err) {
          refErr = err;
        }
        try {
          decodeLogExposuresRequest(b);
        } catch (err) {
          assert.ok(err instanceof ValidationError);
          assert.match(err.message, /^request: is not a valid mlmesh\.experiments\.v1\.LogExposuresRequest message/);
          return;
        }
        assert.equal(refErr, undefined, `fromBinary refused what the decoder accepted: ${String(refErr)}`);
        same(b);
      };
      for (let cut = 0; cut < bytes.length; cut++) check(bytes.subarray(0, cut));
      for (let k = 0; k < 60; k++) {
        const flipped = bytes.slice();
        flipped[Math.floor(rand() * flipped.length)] = Math.floor(rand() * 256);
        check(flipped);
      }
    }
    const bad = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(new BinaryWriter().tag(3, WireType.LengthDelimited).bytes(new Uint8Array([0xc3])).finish()).finish();
    assert.throws(() => decodeLogExposuresRequest(bad), /invalid UTF-8 at exposures\[0\]\.arm/);
  });
});
