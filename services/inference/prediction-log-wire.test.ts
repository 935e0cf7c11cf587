import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { PredictionLogBatchSchema } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { EntityKeySchema, ValueSchema } from "../../gen/mlmesh/types/v1/types_pb.js";
import { PbWriter } from "../../lib/pb-writer.js";
import { clearTextOf, writeBatchMeta, writeBatchRecord, type LoggedValue, type Masking, type RecordFields } from "./prediction-log-wire.js";

const hash = (s: string) => `h(${s})`;

/** What toBinary writes for the same records, masked the way the log masks them. */
function reference(meta: Parameters<typeof writeBatchMeta>[1], records: RecordFields[], masking: Masking | undefined): Uint8Array {
  return toBinary(
    PredictionLogBatchSchema,
    create(PredictionLogBatchSchema, {
      meta,
      records: records.map((r) => {
        const inputs: Record<string, LoggedValue> = {};
        for (const [k, v] of Object.entries(r.inputs)) {
          const masked = masking && (masking.columns.has(k) || (k.includes(":") && masking.columns.has(k.slice(k.indexOf(":") + 1))));
          inputs[k] = masked ? { kind: { case: "stringValue", value: masking.hash(clearTextOf(v)) } } : v;
        }
        return { ...r, version: BigInt(r.version), latencyUs: BigInt(r.latencyUs), inputs: inputs as never, output: r.output };
      }),
    }),
  );
}

function ours(meta: Parameters<typeof writeBatchMeta>[1], records: RecordFields[], masking: Masking | undefined, w = new PbWriter(16)): Uint8Array {
  const head = new PbWriter(8);
  writeBatchMeta(head, meta);
  w.reset();
  for (const r of records) writeBatchRecord(w, r, masking);
  const out = new Uint8Array(head.pos + w.pos);
  out.set(head.copy(), 0);
  out.set(w.copy(), head.pos);
  return out;
}

const meta = { eventId: "0b7a3c1e-5f6d-4e2a-9c8b-1d2e3f4a5b6c", occurredAt: timestampFromMs(1_764_000_000_123), producer: "inference", sequence: 42n };

function record(i: number, over: Partial<RecordFields> = {}): RecordFields {
  return {
    requestId: `req-${i}`,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    entity: create(EntityKeySchema, { keys: { user_id: { kind: { case: "int64Value", value: BigInt(i) } } } }),
    modelName: "churn",
    version: 3,
    inputs: {
      "user_stats:spend_7d": { kind: { case: "doubleValue", value: 12.5 * i } },
      x0: create(ValueSchema, { kind: { case: "floatValue", value: Math.fround(0.1 * i) } }),
      country: { kind: { case: "stringValue", value: "Ελλάδα 🇬🇷" } },
      flag: { kind: { case: "boolValue", value: i % 2 === 0 } },
      emb: { kind: { case: "floatVectorValue", value: { values: [0.5, -1.25, Math.fround(1 / 3)] } } },
      empty_vec: { kind: { case: "floatVectorValue", value: { values: [] } } },
      none: create(ValueSchema, {}),
      big: { kind: { case: "int64Value", value: -(2n ** 62n) } },
    },
    output: {
      score: 0.75,
      label: "1",
      classProbabilities: { "0": 0.25, "1": 0.75 },
      outputs: { probabilities: { values: [0.25, 0.75], shape: [2n] }, label: { values: [1], strings: ["yes", ""], shape: [] } },
    },
    latencyUs: 1234,
    time: timestampFromMs(1_764_000_000_000 + i),
    servedAs: "canary",
    rowIndex: i,
    endpoint: "churn-web",
    ...over,
  };
}

describe("prediction log wire encoding", () => {
  it("writes the bytes toBinary writes, record for record", () => {
    const records = Array.from({ length: 5 }, (_, i) => record(i));
    assert.deepEqual(ours(meta, records, undefined), reference(meta, records, undefined));
  });

  it("matches on zero, negative and default values (implicit presence, -0, empty strings and maps)", () => {
    const records = [
      record(0, { requestId: "", traceId: "", entity: undefined, version: 0, latencyUs: 0, servedAs: "", endpoint: "", output: undefined, inputs: {} }),
      record(1, { output: { score: 0 } }),
      record(2, { output: { score: -0, label: "", classProbabilities: {}, outputs: {} } }),
      record(3, { output: { score: Number.NaN, outputs: { o: { values: [Number.POSITIVE_INFINITY, -0, 0] } } } }),
      record(4, { time: timestampFromMs(0), version: 2 ** 40, latencyUs: 2 ** 33 }),
      record(5, { inputs: { z: { kind: { case: "doubleValue", value: 0 } }, n: { kind: { case: "int64Value", value: 0n } }, s: { kind: { case: "stringValue", value: "" } } } }),
    ];
    assert.deepEqual(ours({ ...meta, sequence: 0n, producer: "" }, records, undefined), reference({ ...meta, sequence: 0n, producer: "" }, records, undefined));
  });

  it("hashes masked columns by full ref and by feature name, leaving the rest", () => {
    const masking: Masking = { columns: new Set(["spend_7d", "country", "emb"]), hash };
    const records = [record(7), record(8)];
    const bytes = ours(meta, records, masking);
    assert.deepEqual(bytes, reference(meta, records, masking));
    const text = Buffer.from(bytes).toString("utf8");
    assert.ok(text.includes("h(87.5)") && text.includes("h(Ελλάδα 🇬🇷)") && text.includes(`h(0.5,-1.25,${Math.fround(1 / 3)})`));
    assert.ok(!text.includes("Ελλάδα 🇬🇷\u0012"), "no clear PII value left");
  });

  it("handles bodies longer than one length byte and strings of every UTF-8 width", () => {
    const long = "é".repeat(70) + "x".repeat(200) + "𝄞".repeat(50);
    const wide = record(9, { requestId: long, inputs: Object.fromEntries(Array.from({ length: 300 }, (_, k) => [`f${k}`, { kind: { case: "doubleValue", value: k / 7 } } as LoggedValue])) });
    const records = [wide, record(10, { endpoint: "a".repeat(127) }), record(11, { endpoint: "b".repeat(128) })];
    // A small starting buffer makes it grow mid-record.
    assert.deepEqual(ours(meta, records, undefined, new PbWriter(16)), reference(meta, records, undefined));
  });

  it("reuses its buffer: a second batch is independent of the first", () => {
    const w = new PbWriter(64);
    const first = ours(meta, [record(1), record(2)], undefined, w);
    const second = ours(meta, [record(3)], undefined, w);
    assert.deepEqual(first, reference(meta, [record(1), record(2)], undefined));
    assert.deepEqual(second, reference(meta, [record(3)], undefined));
  });
});
