// PredictionLogged records and their PredictionLogBatch written straight to protobuf bytes.
// Building a record with create() and encoding it with toBinary() walks reflection for every
// field of every row (20 inputs, the output maps): it was the largest single cost of a
// Predict in the mesh's CPU profile. The bytes are the same as toBinary's for the same
// record (prediction-log-wire.test.ts checks that), so every consumer decodes them with the
// generated schema as before. PII columns are written as their salted hash here, in the one
// place a record's inputs are written.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { EntityKey, Value, ValueSchema } from "../../gen/mlmesh/types/v1/types_pb.js";
import type { RowOutputSchema } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { PbWriter, WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT } from "../../lib/pb-writer.js";

type ValueInit = MessageInitShape<typeof ValueSchema>;
type RowOutputInit = MessageInitShape<typeof RowOutputSchema>;
/** A Value as decoded from a request or as built for dense inputs. */
export type LoggedValue = Value | ValueInit;

/** One row's record, in the fields PredictionLogged has (meta is never set on records). */
export interface RecordFields {
  readonly requestId: string;
  readonly traceId: string;
  readonly entity: EntityKey | undefined;
  readonly modelName: string;
  readonly version: number;
  readonly inputs: Readonly<Record<string, LoggedValue>>;
  readonly output: RowOutputInit | undefined;
  readonly latencyUs: number;
  readonly time: Timestamp;
  readonly servedAs: string;
  readonly rowIndex: number;
  readonly endpoint: string;
}

/** Input keys to log as a hash instead of their value, and how to hash. */
export interface Masking {
  readonly columns: ReadonlySet<string>;
  readonly hash: (clear: string) => string;
}

/** The text a PII value is hashed from (a vector as its comma-joined values). */
export function clearTextOf(v: LoggedValue): string {
  const kind = v.kind;
  if (!kind || kind.case === undefined) return "";
  if (kind.case === "floatVectorValue") return (kind.value.values ?? []).join(",");
  return String(kind.value);
}

function isMasked(key: string, columns: ReadonlySet<string>): boolean {
  if (columns.has(key)) return true;
  const colon = key.indexOf(":");
  return colon >= 0 && columns.has(key.slice(colon + 1));
}

/** A double with implicit presence is written unless it is +0 (-0 is written, as toBinary does). */
const isPositiveZero = (x: number) => x === 0 && 1 / x > 0;

function writeValue(w: PbWriter, v: LoggedValue): void {
  const kind = v.kind;
  if (!kind) return;
  switch (kind.case) {
    case "doubleValue":
      w.tag(1, WIRE_FIXED64).double(kind.value);
      break;
    case "floatValue":
      w.tag(2, WIRE_FIXED32).float(kind.value);
      break;
    case "int64Value":
      w.tag(3, WIRE_VARINT).int64(kind.value);
      break;
    case "stringValue":
      w.tag(4, WIRE_LEN).string(kind.value);
      break;
    case "boolValue":
      w.tag(5, WIRE_VARINT).bool(kind.value);
      break;
    case "floatVectorValue": {
      const values = kind.value.values ?? [];
      w.tag(6, WIRE_LEN).fork();
      if (values.length > 0) {
        w.tag(1, WIRE_LEN).fork();
        for (const x of values) w.float(x);
        w.join();
      }
      w.join();
      break;
    }
  }
}

function writeValueMap(w: PbWriter, field: number, map: Readonly<Record<string, LoggedValue>>, masking: Masking | undefined): void {
  for (const key in map) {
    const v = map[key]!;
    w.tag(field, WIRE_LEN).fork();
    w.tag(1, WIRE_LEN).string(key);
    w.tag(2, WIRE_LEN).fork();
    if (masking && isMasked(key, masking.columns)) w.tag(4, WIRE_LEN).string(masking.hash(clearTextOf(v)));
    else writeValue(w, v);
    w.join();
    w.join();
  }
}

function writeRowOutput(w: PbWriter, o: RowOutputInit): void {
  const score = o.score ?? 0;
  if (!isPositiveZero(score)) w.tag(1, WIRE_FIXED64).double(score);
  if (o.label) w.tag(2, WIRE_LEN).string(o.label);
  const probs = o.classProbabilities;
  if (probs) {
    for (const key in probs) {
      w.tag(3, WIRE_LEN).fork();
      w.tag(1, WIRE_LEN).string(key);
      w.tag(2, WIRE_FIXED64).double(probs[key]!);
      w.join();
    }
  }
  const outputs = o.outputs;
  if (outputs) {
    for (const key in outputs) {
      const ov = outputs[key]!;
      w.tag(4, WIRE_LEN).fork();
      w.tag(1, WIRE_LEN).string(key);
      w.tag(2, WIRE_LEN).fork();
      const values = ov.values ?? [];
      if (values.length > 0) {
        w.tag(1, WIRE_LEN).fork();
        for (const x of values) w.double(x);
        w.join();
      }
      for (const s of ov.strings ?? []) w.tag(2, WIRE_LEN).string(s);
      const shape = ov.shape ?? [];
      if (shape.length > 0) {
        w.tag(3, WIRE_LEN).fork();
        for (const d of shape) w.int64(d);
        w.join();
      }
      w.join();
      w.join();
    }
  }
}

function writeTimestamp(w: PbWriter, t: Timestamp): void {
  if (t.seconds !== 0n) w.tag(1, WIRE_VARINT).int64(t.seconds);
  if (t.nanos !== 0) w.tag(2, WIRE_VARINT).int32(t.nanos);
}

/** Appends one record as PredictionLogBatch field 2 (`records`). */
export function writeBatchRecord(w: PbWriter, r: RecordFields, masking: Masking | undefined): void {
  w.tag(2, WIRE_LEN).fork();
  if (r.requestId) w.tag(2, WIRE_LEN).string(r.requestId);
  if (r.traceId) w.tag(3, WIRE_LEN).string(r.traceId);
  if (r.entity) {
    w.tag(4, WIRE_LEN).fork();
    writeValueMap(w, 1, r.entity.keys, undefined);
    w.join();
  }
  if (r.modelName) w.tag(5, WIRE_LEN).string(r.modelName);
  if (r.version !== 0) w.tag(6, WIRE_VARINT).int64(r.version);
  writeValueMap(w, 7, r.inputs, masking);
  if (r.output) {
    w.tag(8, WIRE_LEN).fork();
    writeRowOutput(w, r.output);
    w.join();
  }
  if (r.latencyUs !== 0) w.tag(9, WIRE_VARINT).int64(r.latencyUs);
  w.tag(10, WIRE_LEN).fork();
  writeTimestamp(w, r.time);
  w.join();
  if (r.servedAs) w.tag(11, WIRE_LEN).string(r.servedAs);
  if (r.rowIndex !== 0) w.tag(12, WIRE_VARINT).int32(r.rowIndex);
  if (r.endpoint) w.tag(13, WIRE_LEN).string(r.endpoint);
  w.join();
}

/** The batch's EventMeta as PredictionLogBatch field 1. */
export function writeBatchMeta(w: PbWriter, meta: { eventId: string; occurredAt: Timestamp; producer: string; sequence: bigint }): void {
  w.tag(1, WIRE_LEN).fork();
  if (meta.eventId) w.tag(1, WIRE_LEN).string(meta.eventId);
  w.tag(2, WIRE_LEN).fork();
  writeTimestamp(w, meta.occurredAt);
  w.join();
  if (meta.producer) w.tag(3, WIRE_LEN).string(meta.producer);
  if (meta.sequence !== 0n) w.tag(5, WIRE_VARINT).int64(meta.sequence);
  w.join();
}
