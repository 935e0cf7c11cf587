// The drift monitor's reader of PredictionLogBatch: every replica's whole prediction log
// passes through it, so it decodes only what the monitor counts (model, version, request id,
// row index, time, inputs, score) straight from the bytes, and skips the rest (entity keys,
// output maps, trace and routing fields). It agrees with fromBinary on every field it reads
// (log-decoder.test.ts), and throws on malformed bytes as fromBinary does.

import { PbReadError, PbReader, StringInterner } from "../../../lib/pb-reader.js";
import { WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT } from "../../../lib/pb-writer.js";

/** A logged input value, shaped as the generated Value's `kind` (so a Value fits too). */
export type LoggedValueView = {
  readonly kind:
    | { readonly case: "doubleValue" | "floatValue"; readonly value: number }
    | { readonly case: "int64Value"; readonly value: bigint }
    | { readonly case: "stringValue"; readonly value: string }
    | { readonly case: "boolValue"; readonly value: boolean }
    | { readonly case: "floatVectorValue"; readonly value: { readonly values: readonly number[] } }
    | { readonly case: undefined; readonly value?: undefined };
};

/** The fields of a PredictionLogged record the monitor uses. */
export interface MonitoredRecord {
  readonly requestId: string;
  readonly modelName: string;
  readonly version: number;
  readonly rowIndex: number;
  /** Record time, epoch ms; undefined when the record has none. */
  readonly timeMs: number | undefined;
  readonly inputs: Readonly<Record<string, LoggedValueView>>;
  /** RowOutput.score; undefined when the record has no output. */
  readonly score: number | undefined;
}

export interface MonitoredBatch {
  readonly records: MonitoredRecord[];
}

const EMPTY: LoggedValueView = { kind: { case: undefined } };

function expectWire(got: number, want: number, what: string): void {
  if (got !== want) throw new PbReadError(`${what}: wire type ${got}, expected ${want}`);
}

function readValue(r: PbReader, end: number): LoggedValueView {
  let v: LoggedValueView = EMPTY;
  while (r.pos < end) {
    const t = r.tag();
    const wire = t & 7;
    switch (t >>> 3) {
      case 1:
        expectWire(wire, WIRE_FIXED64, "Value.double_value");
        v = { kind: { case: "doubleValue", value: r.double() } };
        break;
      case 2:
        expectWire(wire, WIRE_FIXED32, "Value.float_value");
        v = { kind: { case: "floatValue", value: r.float() } };
        break;
      case 3:
        expectWire(wire, WIRE_VARINT, "Value.int64_value");
        v = { kind: { case: "int64Value", value: r.int64() } };
        break;
      case 4:
        expectWire(wire, WIRE_LEN, "Value.string_value");
        v = { kind: { case: "stringValue", value: r.string() } };
        break;
      case 5:
        expectWire(wire, WIRE_VARINT, "Value.bool_value");
        v = { kind: { case: "boolValue", value: r.bool() } };
        break;
      case 6: {
        expectWire(wire, WIRE_LEN, "Value.float_vector_value");
        const vecEnd = r.lengthEnd();
        const values: number[] = [];
        while (r.pos < vecEnd) {
          const vt = r.tag();
          if (vt >>> 3 !== 1) {
            r.skip(vt & 7);
            continue;
          }
          if ((vt & 7) === WIRE_LEN) {
            const packedEnd = r.lengthEnd();
            if ((packedEnd - r.pos) % 4 !== 0) throw new PbReadError("FloatVector.values: packed length not a multiple of 4");
            while (r.pos < packedEnd) values.push(r.float());
          } else {
            expectWire(vt & 7, WIRE_FIXED32, "FloatVector.values");
            values.push(r.float());
          }
        }
        v = { kind: { case: "floatVectorValue", value: { values } } };
        break;
      }
      default:
        r.skip(wire);
    }
  }
  if (r.pos !== end) throw new PbReadError("Value overruns its length");
  return v;
}

/**
 * Feature refs repeat, in the same order, in every record of a model: the n-th key of a
 * record is looked up by its bytes in slot n and decoded only when it differs.
 */
const INPUT_KEYS = new StringInterner(1024);

function readInputEntry(r: PbReader, end: number, into: Record<string, LoggedValueView>, position: number): void {
  let key = "";
  let value: LoggedValueView = EMPTY;
  while (r.pos < end) {
    const t = r.tag();
    if (t >>> 3 === 1) {
      expectWire(t & 7, WIRE_LEN, "inputs key");
      key = r.internedString(INPUT_KEYS, position);
    } else if (t >>> 3 === 2) {
      expectWire(t & 7, WIRE_LEN, "inputs value");
      const vEnd = r.lengthEnd();
      value = readValue(r, vEnd);
    } else r.skip(t & 7);
  }
  into[key] = value;
}

function readScore(r: PbReader, end: number): number {
  let score = 0;
  while (r.pos < end) {
    const t = r.tag();
    if (t >>> 3 === 1) {
      expectWire(t & 7, WIRE_FIXED64, "RowOutput.score");
      score = r.double();
    } else r.skip(t & 7);
  }
  return score;
}

function readTimestampMs(r: PbReader, end: number): number {
  let seconds = 0n;
  let nanos = 0;
  while (r.pos < end) {
    const t = r.tag();
    if (t >>> 3 === 1) {
      expectWire(t & 7, WIRE_VARINT, "Timestamp.seconds");
      seconds = r.int64();
    } else if (t >>> 3 === 2) {
      expectWire(t & 7, WIRE_VARINT, "Timestamp.nanos");
      nanos = r.int32();
    } else r.skip(t & 7);
  }
  return Number(seconds) * 1000 + Math.round(nanos / 1_000_000);
}

function readRecord(r: PbReader, end: number): MonitoredRecord {
  let requestId = "";
  let modelName = "";
  let version = 0;
  let rowIndex = 0;
  let timeMs: number | undefined;
  let score: number | undefined;
  const inputs: Record<string, LoggedValueView> = {};
  let inputCount = 0;
  while (r.pos < end) {
    const t = r.tag();
    const wire = t & 7;
    switch (t >>> 3) {
      case 2:
        expectWire(wire, WIRE_LEN, "PredictionLogged.request_id");
        requestId = r.string();
        break;
      case 5:
        expectWire(wire, WIRE_LEN, "PredictionLogged.model_name");
        modelName = r.string();
        break;
      case 6:
        expectWire(wire, WIRE_VARINT, "PredictionLogged.version");
        version = Number(r.int64());
        break;
      case 7: {
        expectWire(wire, WIRE_LEN, "PredictionLogged.inputs");
        readInputEntry(r, r.lengthEnd(), inputs, inputCount++);
        break;
      }
      case 8:
        expectWire(wire, WIRE_LEN, "PredictionLogged.output");
        score = readScore(r, r.lengthEnd());
        break;
      case 10:
        expectWire(wire, WIRE_LEN, "PredictionLogged.time");
        timeMs = readTimestampMs(r, r.lengthEnd());
        break;
      case 12:
        expectWire(wire, WIRE_VARINT, "PredictionLogged.row_index");
        rowIndex = r.int32();
        break;
      default:
        r.skip(wire);
    }
  }
  if (r.pos !== end) throw new PbReadError("PredictionLogged overruns its length");
  return { requestId, modelName, version, rowIndex, timeMs, inputs, score };
}

/** Decodes the monitor's view of a PredictionLogBatch. */
export function decodeMonitoredBatch(bytes: Uint8Array): MonitoredBatch {
  const r = new PbReader(bytes);
  const records: MonitoredRecord[] = [];
  while (!r.done()) {
    const t = r.tag();
    if (t >>> 3 === 2) {
      expectWire(t & 7, WIRE_LEN, "PredictionLogBatch.records");
      records.push(readRecord(r, r.lengthEnd()));
    } else r.skip(t & 7);
  }
  return { records };
}
