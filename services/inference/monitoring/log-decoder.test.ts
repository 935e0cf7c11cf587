import assert from "node:assert/strict";
import { test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { PredictionLogBatchSchema, type PredictionLogBatch } from "../../../gen/mlmesh/events/v1/inference_events_pb.js";
import { PbWriter, WIRE_FIXED32, WIRE_LEN } from "../../../lib/pb-writer.js";
import { decodeMonitoredBatch } from "./log-decoder.js";

/** What the monitor read before: the same fields, taken from fromBinary's message. */
function viaFromBinary(bytes: Uint8Array) {
  const batch: PredictionLogBatch = fromBinary(PredictionLogBatchSchema, bytes);
  return batch.records.map((r) => ({
    requestId: r.requestId,
    modelName: r.modelName,
    version: Number(r.version),
    rowIndex: r.rowIndex,
    timeMs: r.time ? timestampMs(r.time) : undefined,
    score: r.output?.score,
    inputs: Object.fromEntries(
      Object.entries(r.inputs).map(([k, v]) => [k, v.kind.case === "floatVectorValue" ? { kind: { case: v.kind.case, value: { values: v.kind.value.values } } } : { kind: { ...v.kind } }]),
    ),
  }));
}

let seed = 7;
const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);

test("reads what fromBinary reads, on random batches", () => {
  for (let round = 0; round < 50; round++) {
    const records = Array.from({ length: 1 + Math.floor(rand() * 5) }, (_, i) => ({
      requestId: rand() < 0.2 ? "" : `r-${round}-${i}-é`,
      traceId: "abc",
      entity: { keys: { user: { kind: { case: "stringValue" as const, value: "u1" } } } },
      modelName: `m${round % 3}`,
      version: BigInt(Math.floor(rand() * 2 ** 40)),
      inputs: {
        a: { kind: { case: "doubleValue" as const, value: rand() * 100 - 50 } },
        b: { kind: { case: "floatValue" as const, value: Math.fround(rand()) } },
        c: { kind: { case: "int64Value" as const, value: BigInt(Math.floor(rand() * 1e6)) - 500_000n } },
        d: { kind: { case: "boolValue" as const, value: rand() < 0.5 } },
        "v:e": { kind: { case: "stringValue" as const, value: `cat${Math.floor(rand() * 4)}` } },
        f: { kind: { case: "floatVectorValue" as const, value: { values: [Math.fround(rand()), Math.fround(-rand())] } } },
        g: {},
      },
      output: rand() < 0.1 ? undefined : { score: rand(), label: "1", classProbabilities: { "0": 0.5 }, outputs: { p: { values: [1, 2], shape: [2n] } } },
      latencyUs: 12n,
      time: rand() < 0.1 ? undefined : timestampFromMs(1_764_000_000_000 + Math.floor(rand() * 1e6)),
      servedAs: "canary",
      rowIndex: rand() < 0.1 ? -1 : i,
      endpoint: "e",
    }));
    const bytes = toBinary(PredictionLogBatchSchema, create(PredictionLogBatchSchema, { meta: { eventId: "x", sequence: 9n }, records }));
    assert.deepEqual(decodeMonitoredBatch(bytes).records, viaFromBinary(bytes));
  }
});

test("skips unknown fields and reads unpacked float vectors", () => {
  const w = new PbWriter();
  w.tag(2, WIRE_LEN).fork();
  w.tag(5, WIRE_LEN).string("m");
  w.tag(99, WIRE_LEN).string("a field from a newer producer");
  w.tag(7, WIRE_LEN).fork();
  w.tag(1, WIRE_LEN).string("vec");
  w.tag(2, WIRE_LEN).fork().tag(6, WIRE_LEN).fork().tag(1, WIRE_FIXED32).float(1.5).tag(1, WIRE_FIXED32).float(-2).join().join();
  w.join();
  w.join();
  const bytes = w.copy();
  assert.deepEqual(decodeMonitoredBatch(bytes).records, viaFromBinary(bytes));
  assert.deepEqual(decodeMonitoredBatch(bytes).records[0]!.inputs.vec, { kind: { case: "floatVectorValue", value: { values: [1.5, -2] } } });
});

test("malformed bytes throw, as fromBinary does", () => {
  const good = toBinary(PredictionLogBatchSchema, create(PredictionLogBatchSchema, { records: [{ modelName: "m", inputs: { a: { kind: { case: "doubleValue", value: 1 } } } }] }));
  for (let cut = 1; cut < good.length; cut++) {
    const bad = good.subarray(0, cut);
    assert.throws(() => fromBinary(PredictionLogBatchSchema, bad));
    assert.throws(() => decodeMonitoredBatch(bad), `truncated at ${cut}`);
  }
  assert.throws(() => decodeMonitoredBatch(Uint8Array.of(0x12, 0x02, 0x2a, 0x05)), /past the end/);
  assert.throws(() => decodeMonitoredBatch(Uint8Array.of(0x12, 0x01, 0x2d)), /wire type/);
});
