// LogOutcomesRequest and LogExposuresRequest read straight from their protobuf bytes (issue #6
// ingest rate): protobuf-es's reflective fromBinary built two message objects, a BigInt and a
// TextDecoder call per event, which was a quarter of the server's time per event.
// Valid input gives exactly what fromBinary gives for the fields ingest reads (a repeated
// scalar: last wins; a repeated `time`: merged; unknown fields skipped; strict UTF-8, as
// protobuf-es checks proto3 strings). Malformed input is refused with INVALID_ARGUMENT
// naming the event and field; unlike fromBinary, that includes a known field sent with
// the wrong wire type or running past the end of its outcome, which fromBinary reads as
// garbage instead of refusing.

import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Exposure, Outcome } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";

/** A batch of outcomes, one array per field, as ingest reads them. */
export interface OutcomeColumns {
  readonly length: number;
  readonly unitId: readonly string[];
  readonly unitType: readonly number[];
  readonly metric: readonly string[];
  readonly value: readonly number[];
  /** Milliseconds since the epoch as timestampMs computes them; NaN: the outcome has no time. */
  readonly timeMs: readonly number[];
  readonly outcomeId: readonly string[];
  readonly experimentKey: readonly string[];
}

/** Columns of decoded Outcome messages (the Connect, grpc-js, in-process and NATS paths). */
export function outcomeColumns(list: readonly Outcome[]): OutcomeColumns {
  const n = list.length;
  const c = emptyColumns();
  for (let i = 0; i < n; i++) {
    const o = list[i]!;
    c.unitId.push(o.unitId);
    c.unitType.push(o.unitType);
    c.metric.push(o.metric);
    c.value.push(o.value);
    c.timeMs.push(o.time ? timestampMs(o.time as Timestamp) : NaN);
    c.outcomeId.push(o.outcomeId);
    c.experimentKey.push(o.experimentKey);
  }
  c.length = n;
  return c;
}

interface MutableColumns {
  length: number;
  unitId: string[];
  unitType: number[];
  metric: string[];
  value: number[];
  timeMs: number[];
  outcomeId: string[];
  experimentKey: string[];
}

function emptyColumns(): MutableColumns {
  return { length: 0, unitId: [], unitType: [], metric: [], value: [], timeMs: [], outcomeId: [], experimentKey: [] };
}

/** One exposure, as ingest reads it. */
export interface ExposureRow {
  readonly experimentKey: string;
  readonly unitId: string;
  readonly arm: string;
  /** Milliseconds since the epoch as timestampMs computes them; NaN: the exposure has no time. */
  readonly timeMs: number;
  readonly phase: number;
}

/** The ExposureRow of a decoded Exposure message. */
export function exposureRow(x: Exposure): ExposureRow {
  return { experimentKey: x.experimentKey, unitId: x.unitId, arm: x.arm, timeMs: x.time ? timestampMs(x.time as Timestamp) : NaN, phase: x.phase };
}

const OUTCOME_FIELDS = ["", "unit_id", "unit_type", "metric", "value", "time", "outcome_id", "experiment_key"];
const EXPOSURE_FIELDS = ["", "experiment_key", "unit_id", "arm", "time", "phase", "source"];

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_SGROUP = 3;
const WIRE_EGROUP = 4;
const WIRE_I32 = 5;
/** Nesting protobuf-es allows while skipping unknown groups. */
const RECURSION_LIMIT = 100;

class WireError extends Error {}

const strict = new TextDecoder("utf-8", { fatal: true });

// Decoder state: the decode is synchronous and not re-entrant, so module variables keep the
// hot loop free of a reader object and its property loads.
let buf: Uint8Array = new Uint8Array(0);
/** `buf` as a Buffer (for its latin1 slice). */
let nodeBuf: Buffer = Buffer.alloc(0);
let view = new DataView(buf.buffer);
let pos = 0;
const EMPTY_NODE_BUF = Buffer.alloc(0);
/** The 64-bit varint read last, as two 32-bit halves. */
let lo = 0;
let hi = 0;

/** A varint's low 32 bits (unsigned); a varint of up to 10 bytes is consumed, as protobuf-es does. */
function varint32(end: number): number {
  let v = 0;
  for (let shift = 0; shift < 32; shift += 7) {
    if (pos >= end) throw new WireError("truncated varint");
    const b = buf[pos++]!;
    v |= (b & 0x7f) << shift;
    if (b < 0x80) return v >>> 0;
  }
  for (let i = 0; i < 5; i++) {
    if (pos >= end) throw new WireError("truncated varint");
    if (buf[pos++]! < 0x80) return v >>> 0;
  }
  throw new WireError("varint longer than 10 bytes");
}

/** A 64-bit varint into lo/hi. */
function varint64(end: number): void {
  let l = 0;
  let h = 0;
  let b = 0;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) throw new WireError("truncated varint");
    b = buf[pos++]!;
    l |= (b & 0x7f) << shift;
    if (b < 0x80) {
      lo = l >>> 0;
      hi = 0;
      return;
    }
  }
  if (pos >= end) throw new WireError("truncated varint");
  b = buf[pos++]!;
  l |= (b & 0x0f) << 28;
  h = (b & 0x7f) >> 4;
  if (b >= 0x80) {
    for (let shift = 3; ; shift += 7) {
      if (shift > 31) throw new WireError("varint longer than 10 bytes");
      if (pos >= end) throw new WireError("truncated varint");
      b = buf[pos++]!;
      h |= (b & 0x7f) << shift;
      if (b < 0x80) break;
    }
  }
  lo = l >>> 0;
  hi = h | 0;
}

/** A tag, checked as protobuf-es checks it (uint32, field number > 0, wire type <= 5). */
function tag(end: number): number {
  const start = pos;
  const t = varint32(end);
  const read = pos - start;
  if (read > 5 || (read === 5 && buf[pos - 1]! > 0x0f)) throw new WireError("illegal tag: varint overflows uint32");
  if (t >>> 3 === 0 || (t & 7) > 5) throw new WireError(`illegal tag: field no ${t >>> 3} wire type ${t & 7}`);
  return t;
}

/** The end of a length-delimited field whose length is next; it must lie inside `end`. */
function lengthEnd(end: number): number {
  const len = varint32(end);
  if (len > end - pos) throw new WireError(`length ${len} past the end of the message`);
  return pos + len;
}

function string(end: number): string {
  const stop = lengthEnd(end);
  // Short ASCII (ids, names): Buffer's latin1 slice (ASCII is latin1), no decoder call;
  // appending char by char made a string per character.
  if (stop - pos <= 48) {
    let p = pos;
    while (p < stop && buf[p]! <= 0x7f) p++;
    if (p === stop) {
      const s = nodeBuf.toString("latin1", pos, stop);
      pos = stop;
      return s;
    }
  }
  let s: string;
  try {
    s = strict.decode(buf.subarray(pos, stop));
  } catch {
    throw new WireError("invalid UTF-8");
  }
  pos = stop;
  return s;
}

function double(end: number): number {
  if (end - pos < 8) throw new WireError("truncated double");
  const x = view.getFloat64(pos, true);
  pos += 8;
  return x;
}

/** Skips an unknown field of wire type `wire` (its tag already read). */
function skip(wire: number, fieldNo: number, end: number, depth: number): void {
  switch (wire) {
    case WIRE_VARINT:
      varint32(end);
      return;
    case WIRE_I64:
      if (end - pos < 8) throw new WireError("truncated fixed64");
      pos += 8;
      return;
    case WIRE_LEN:
      pos = lengthEnd(end);
      return;
    case WIRE_I32:
      if (end - pos < 4) throw new WireError("truncated fixed32");
      pos += 4;
      return;
    case WIRE_SGROUP: {
      if (depth >= RECURSION_LIMIT) throw new WireError("maximum recursion depth reached");
      for (;;) {
        const t = tag(end);
        if ((t & 7) === WIRE_EGROUP) {
          if (t >>> 3 !== fieldNo) throw new WireError("invalid end group tag");
          return;
        }
        skip(t & 7, t >>> 3, end, depth + 1);
      }
    }
    default:
      throw new WireError(`unexpected end group tag for field ${fieldNo}`);
  }
}

function expect(wire: number, want: number, what: string): void {
  if (wire !== want) throw new WireError(`${what} sent with wire type ${wire}, expected ${want}`);
}

// Timestamp of the outcome being read (fields merge when `time` repeats, as in fromBinary).
let tsSet = false;
let tsSeconds = 0;
let tsNanos = 0;

function readTimestamp(end: number): void {
  tsSet = true;
  while (pos < end) {
    const t = tag(end);
    const wire = t & 7;
    switch (t >>> 3) {
      case 1:
        expect(wire, WIRE_VARINT, "time.seconds");
        varint64(end);
        // Exact below 2^53 and rounded once above it, as Number(BigInt) rounds.
        tsSeconds = hi * 4294967296 + lo;
        break;
      case 2:
        expect(wire, WIRE_VARINT, "time.nanos");
        tsNanos = varint32(end) | 0;
        break;
      default:
        skip(wire, t >>> 3, end, 1);
    }
  }
}

/** Field of the outcome being read, for the error message. */
let field = 0;

function readOutcome(c: MutableColumns, end: number): void {
  let unitId = "";
  let unitType = 0;
  let metric = "";
  let value = 0;
  let outcomeId = "";
  let experimentKey = "";
  tsSet = false;
  tsSeconds = 0;
  tsNanos = 0;
  while (pos < end) {
    field = 0;
    const t = tag(end);
    const wire = t & 7;
    const no = t >>> 3;
    if (no <= 7) field = no;
    switch (no) {
      case 1:
        expect(wire, WIRE_LEN, "string field");
        unitId = string(end);
        break;
      case 2:
        expect(wire, WIRE_VARINT, "enum field");
        unitType = varint32(end) | 0;
        break;
      case 3:
        expect(wire, WIRE_LEN, "string field");
        metric = string(end);
        break;
      case 4:
        expect(wire, WIRE_I64, "double field");
        value = double(end);
        break;
      case 5: {
        expect(wire, WIRE_LEN, "message field");
        const stop = lengthEnd(end);
        readTimestamp(stop);
        break;
      }
      case 6:
        expect(wire, WIRE_LEN, "string field");
        outcomeId = string(end);
        break;
      case 7:
        expect(wire, WIRE_LEN, "string field");
        experimentKey = string(end);
        break;
      default:
        skip(wire, no, end, 1);
    }
  }
  field = 0;
  c.unitId.push(unitId);
  c.unitType.push(unitType);
  c.metric.push(metric);
  c.value.push(value);
  c.timeMs.push(tsSet ? tsSeconds * 1000 + Math.round(tsNanos / 1000000) : NaN);
  c.outcomeId.push(outcomeId);
  c.experimentKey.push(experimentKey);
}

function readExposure(rows: ExposureRow[], end: number): void {
  let experimentKey = "";
  let unitId = "";
  let arm = "";
  let phase = 0;
  tsSet = false;
  tsSeconds = 0;
  tsNanos = 0;
  while (pos < end) {
    field = 0;
    const t = tag(end);
    const wire = t & 7;
    const no = t >>> 3;
    if (no <= 6) field = no;
    switch (no) {
      case 1:
        expect(wire, WIRE_LEN, "string field");
        experimentKey = string(end);
        break;
      case 2:
        expect(wire, WIRE_LEN, "string field");
        unitId = string(end);
        break;
      case 3:
        expect(wire, WIRE_LEN, "string field");
        arm = string(end);
        break;
      case 4: {
        expect(wire, WIRE_LEN, "message field");
        const stop = lengthEnd(end);
        readTimestamp(stop);
        break;
      }
      case 5:
        expect(wire, WIRE_VARINT, "int32 field");
        phase = varint32(end) | 0;
        break;
      case 6:
        // Not used by ingest, but read: fromBinary refuses invalid UTF-8 in it too.
        expect(wire, WIRE_LEN, "string field");
        string(end);
        break;
      default:
        skip(wire, no, end, 1);
    }
  }
  field = 0;
  rows.push({ experimentKey, unitId, arm, timeMs: tsSet ? tsSeconds * 1000 + Math.round(tsNanos / 1000000) : NaN, phase });
}

/**
 * Reads the repeated message field 1 of a request (its only field), calling `readOne` with
 * each element's end; `count` says how many were read, for the error message.
 */
function decodeRequest(bytes: Uint8Array, typeName: string, list: string, fields: readonly string[], readOne: (end: number) => void, count: () => number): void {
  buf = bytes;
  nodeBuf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  field = 0;
  const end = bytes.length;
  let inElement = false;
  try {
    while (pos < end) {
      const t = tag(end);
      if (t >>> 3 === 1) {
        expect(t & 7, WIRE_LEN, list);
        const stop = lengthEnd(end);
        inElement = true;
        readOne(stop);
        inElement = false;
      } else {
        skip(t & 7, t >>> 3, end, 0);
      }
    }
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    const where = inElement ? ` at ${list}[${count()}]${field ? `.${fields[field]}` : ""}` : "";
    throw new ValidationError("request", `is not a valid ${typeName} message (${err.message}${where})`);
  } finally {
    buf = EMPTY;
    nodeBuf = EMPTY_NODE_BUF;
    view = EMPTY_VIEW;
  }
}

/** Decodes a LogOutcomesRequest; ValidationError (INVALID_ARGUMENT) on malformed bytes. */
export function decodeLogOutcomesRequest(bytes: Uint8Array): OutcomeColumns {
  const c = emptyColumns();
  decodeRequest(
    bytes,
    "mlmesh.experiments.v1.LogOutcomesRequest",
    "outcomes",
    OUTCOME_FIELDS,
    (end) => {
      readOutcome(c, end);
      c.length++;
    },
    () => c.length,
  );
  return c;
}

/** Decodes a LogExposuresRequest; ValidationError (INVALID_ARGUMENT) on malformed bytes. */
export function decodeLogExposuresRequest(bytes: Uint8Array): ExposureRow[] {
  const rows: ExposureRow[] = [];
  decodeRequest(bytes, "mlmesh.experiments.v1.LogExposuresRequest", "exposures", EXPOSURE_FIELDS, (end) => readExposure(rows, end), () => rows.length);
  return rows;
}

const EMPTY = new Uint8Array(0);
const EMPTY_VIEW = new DataView(EMPTY.buffer);

// The encoder: a producer that logs outcomes at a high rate (a collector, the bench) builds
// the request bytes straight from columns; protobuf-es's reflective toBinary costs ~6 µs an
// outcome, more than the server's whole ingest. The output is ordinary protobuf: fields in
// number order, default values omitted, as toBinary writes them.

/** UTF-8 byte length of a string. */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: 4 bytes for 2 UTF-16 units
      i++;
    } else n += 2;
  }
  return n;
}

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Bytes of a signed 64-bit varint (a negative number takes 10). */
function varint64Size(v: number): number {
  if (v < 0) return 10;
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

const encoder = new TextEncoder();
let out = new Uint8Array(0);
let at = 0;

function putVarint(v: number): void {
  while (v > 0x7f) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at++] = v;
}

function putInt64(v: number): void {
  // Two's complement over 64 bits, split into halves as the wire format wants.
  let lo = v >>> 0;
  let hi = Math.floor(v / 4294967296) >>> 0;
  if (v < 0) {
    lo = (v % 4294967296) >>> 0;
    hi = (Math.floor(v / 4294967296) + 4294967296) >>> 0;
  }
  while (hi > 0 || lo > 0x7f) {
    out[at++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  out[at++] = lo;
}

function putString(fieldTag: number, s: string, bytes: number): void {
  out[at++] = fieldTag;
  putVarint(bytes);
  if (bytes === s.length) {
    for (let i = 0; i < s.length; i++) out[at++] = s.charCodeAt(i);
  } else {
    at += encoder.encodeInto(s, out.subarray(at, at + bytes)).written;
  }
}

/** Encodes a LogOutcomesRequest from columns (timeMs NaN: no time); fromBinary reads it back as given. */
export function encodeLogOutcomesRequest(c: OutcomeColumns): Uint8Array {
  const n = c.length;
  const sizes = new Array<number>(n);
  const lens = new Array<number>(n * 4);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const u = utf8Length(c.unitId[i]!);
    const m = utf8Length(c.metric[i]!);
    const o = utf8Length(c.outcomeId[i]!);
    const e = utf8Length(c.experimentKey[i]!);
    lens[4 * i] = u;
    lens[4 * i + 1] = m;
    lens[4 * i + 2] = o;
    lens[4 * i + 3] = e;
    let size = 0;
    if (u) size += 1 + varintSize(u) + u;
    const type = c.unitType[i]!;
    if (type !== 0) size += 1 + (type < 0 ? 10 : varintSize(type));
    if (m) size += 1 + varintSize(m) + m;
    if (!Object.is(c.value[i], 0)) size += 9;
    const ms = c.timeMs[i]!;
    if (!Number.isNaN(ms)) size += 1 + 1 + timestampSize(ms);
    if (o) size += 1 + varintSize(o) + o;
    if (e) size += 1 + varintSize(e) + e;
    sizes[i] = size;
    total += 1 + varintSize(size) + size;
  }
  out = new Uint8Array(total);
  at = 0;
  const view = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    out[at++] = 0x0a; // field 1, length-delimited
    putVarint(sizes[i]!);
    if (lens[4 * i]) putString(0x0a, c.unitId[i]!, lens[4 * i]!);
    const type = c.unitType[i]!;
    if (type !== 0) {
      out[at++] = 0x10;
      if (type < 0) putInt64(type);
      else putVarint(type);
    }
    if (lens[4 * i + 1]) putString(0x1a, c.metric[i]!, lens[4 * i + 1]!);
    const v = c.value[i]!;
    if (!Object.is(v, 0)) {
      out[at++] = 0x21;
      view.setFloat64(at, v, true);
      at += 8;
    }
    const ms = c.timeMs[i]!;
    if (!Number.isNaN(ms)) {
      out[at++] = 0x2a;
      const seconds = Math.floor(ms / 1000);
      const nanos = Math.round((ms - seconds * 1000) * 1e6);
      out[at++] = (seconds !== 0 ? 1 + varint64Size(seconds) : 0) + (nanos !== 0 ? 1 + varintSize(nanos) : 0);
      if (seconds !== 0) {
        out[at++] = 0x08;
        putInt64(seconds);
      }
      if (nanos !== 0) {
        out[at++] = 0x10;
        putVarint(nanos);
      }
    }
    if (lens[4 * i + 2]) putString(0x32, c.outcomeId[i]!, lens[4 * i + 2]!);
    if (lens[4 * i + 3]) putString(0x3a, c.experimentKey[i]!, lens[4 * i + 3]!);
  }
  const bytes = out;
  out = new Uint8Array(0);
  return bytes;
}

/** Bytes of a Timestamp's fields for `ms` (nanos within [0, 1e9)). */
function timestampSize(ms: number): number {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  return (seconds !== 0 ? 1 + varint64Size(seconds) : 0) + (nanos !== 0 ? 1 + varintSize(nanos) : 0);
}
