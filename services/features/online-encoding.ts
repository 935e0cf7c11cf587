// Hand-written protobuf encoding of GetOnlineFeaturesResponse, the feature service's hot
// response: a 100 x 20 read is ~6,000 nested messages. protobuf-es's reflective
// create + toBinary takes ~6 ms to build them, and even its BinaryWriter allocates per
// value (a chunk list per fork, an 8-byte array and a DataView per double). Here every
// length is computed first, then the bytes are written into one buffer of exactly that
// size: one allocation per response. A test proves the bytes equal protobuf-es's.

import type { ReadValue, ValueKind } from "./types.js";

// Tags (field number << 3 | wire type), from proto/mlmesh/features/v1 and
// proto/mlmesh/types/v1/types.proto.
const RESP_REFS = 0x0a; // 1, length-delimited
const RESP_ROWS = 0x12; // 2, length-delimited
const RESP_READ_TIME = 0x1a; // 3, length-delimited
const ROW_VALUES = 0x0a; // OnlineFeatureRow.values = 1
const FV_VALUE = 0x0a; // FeatureValue.value = 1
const FV_STATUS = 0x10; // FeatureValue.status = 2, varint
const FV_EVENT_TIME = 0x1a; // FeatureValue.event_time = 3
const TS_SECONDS = 0x08;
const TS_NANOS = 0x10;
const VALUE_DOUBLE = 0x09; // 1, fixed64
const VALUE_FLOAT = 0x15; // 2, fixed32
const VALUE_INT64 = 0x18; // 3, varint
const VALUE_STRING = 0x22; // 4, length-delimited
const VALUE_BOOL = 0x28; // 5, varint
const VALUE_FLOAT_VECTOR = 0x32; // 6, length-delimited
const VECTOR_VALUES = 0x0a; // FloatVector.values = 1, packed

// FeatureStatus enum numbers (PRESENT=1, NOT_FOUND=2, EXPIRED=3, NULL=4).
const STATUS_NUMBER: Readonly<Record<ReadValue["status"], number>> = { present: 1, not_found: 2, expired: 3, null: 4 };

const TWO_POW_53 = 2 ** 53;

/** Bytes of a non-negative integer (< 2^53) as a varint. */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Bytes of an int64 varint: negative numbers take ten (two's complement). */
function int64Size(v: number | bigint): number {
  if (typeof v === "number") return v < 0 ? 10 : varintSize(v);
  if (v >= 0n && v < TWO_POW_53) return varintSize(Number(v));
  if (v < 0n) return 10;
  let size = 1;
  for (let u = v; u >= 128n; u >>= 7n) size++;
  return size;
}

function timestampSize(ms: number): number {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  return (seconds !== 0 ? 1 + int64Size(seconds) : 0) + (nanos !== 0 ? 1 + varintSize(nanos) : 0);
}

/** Size of the Value message body of a present value. */
function valueSize(v: ReadValue["value"], kind: ValueKind): number {
  switch (kind) {
    case "float64":
      return 9;
    case "float32":
      return 5;
    case "int64":
      return 1 + int64Size(typeof v === "bigint" ? v : BigInt(v as number));
    case "string": {
      const n = Buffer.byteLength(v as string, "utf8");
      return 1 + varintSize(n) + n;
    }
    case "bool":
      return 2;
    case "float_vector": {
      const len = (v as readonly number[]).length;
      const inner = len > 0 ? 1 + varintSize(len * 4) + len * 4 : 0;
      return 1 + varintSize(inner) + inner;
    }
  }
}

class Out {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  byte(b: number): void {
    this.buf[this.pos++] = b;
  }

  varint(n: number): void {
    const buf = this.buf;
    while (n >= 128) {
      buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    buf[this.pos++] = n;
  }

  int64(v: number | bigint): void {
    if (typeof v === "number" && v >= 0) return this.varint(v);
    let u = BigInt.asUintN(64, BigInt(v));
    if (u < TWO_POW_53) return this.varint(Number(u));
    while (u >= 128n) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  timestamp(ms: number, size: number): void {
    const seconds = Math.floor(ms / 1000);
    const nanos = Math.round((ms - seconds * 1000) * 1e6);
    this.varint(size);
    if (seconds !== 0) {
      this.byte(TS_SECONDS);
      this.int64(seconds);
    }
    if (nanos !== 0) {
      this.byte(TS_NANOS);
      this.varint(nanos);
    }
  }

  value(v: ReadValue["value"], kind: ValueKind, size: number): void {
    this.varint(size);
    const buf = this.buf;
    switch (kind) {
      case "float64":
        buf[this.pos++] = VALUE_DOUBLE;
        buf.writeDoubleLE(Number(v), this.pos);
        this.pos += 8;
        return;
      case "float32":
        buf[this.pos++] = VALUE_FLOAT;
        buf.writeFloatLE(Number(v), this.pos);
        this.pos += 4;
        return;
      case "int64":
        buf[this.pos++] = VALUE_INT64;
        this.int64(typeof v === "bigint" ? v : BigInt(v as number));
        return;
      case "string": {
        buf[this.pos++] = VALUE_STRING;
        const s = v as string;
        // The size already holds the byte length; write it again from the string.
        const n = Buffer.byteLength(s, "utf8");
        this.varint(n);
        this.pos += buf.write(s, this.pos, n, "utf8");
        return;
      }
      case "bool":
        buf[this.pos++] = VALUE_BOOL;
        buf[this.pos++] = v ? 1 : 0;
        return;
      case "float_vector": {
        const values = v as readonly number[];
        buf[this.pos++] = VALUE_FLOAT_VECTOR;
        const inner = values.length > 0 ? 1 + varintSize(values.length * 4) + values.length * 4 : 0;
        this.varint(inner);
        if (values.length > 0) {
          buf[this.pos++] = VECTOR_VALUES;
          this.varint(values.length * 4);
          for (let i = 0; i < values.length; i++) {
            buf.writeFloatLE(values[i]!, this.pos);
            this.pos += 4;
          }
        }
        return;
      }
    }
  }
}

// Scratch space for the sizes of one response, grown as needed (the service is single
// threaded, and an encode never yields).
let fvSizes = new Int32Array(4096);
let valueSizes = new Int32Array(4096);
let tsSizes = new Int32Array(4096);

/** The bytes of GetOnlineFeaturesResponse{refs, rows, read_time}. */
export function encodeOnlineFeaturesResponse(
  refs: readonly string[],
  rows: ReadonlyArray<readonly ReadValue[]>,
  types: readonly ValueKind[],
  readTimeMs: number,
): Uint8Array {
  let cells = 0;
  for (const row of rows) cells += row.length;
  if (fvSizes.length < cells) {
    fvSizes = new Int32Array(cells * 2);
    valueSizes = new Int32Array(cells * 2);
    tsSizes = new Int32Array(cells * 2);
  }
  const rowSizes = new Int32Array(rows.length);
  // Pass 1: every nested length.
  let total = 0;
  for (const ref of refs) {
    const n = Buffer.byteLength(ref, "utf8");
    total += 1 + varintSize(n) + n;
  }
  let k = 0;
  let lastTime = NaN;
  let lastTsSize = 0;
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    let rowSize = 0;
    for (let c = 0; c < row.length; c++, k++) {
      const v = row[c]!;
      let fv = 2; // status, always set (PRESENT..NULL are non-zero)
      if (v.status === "present") {
        const vs = valueSize(v.value, types[c]!);
        valueSizes[k] = vs;
        fv += 1 + varintSize(vs) + vs;
      }
      if (!Number.isNaN(v.eventTime)) {
        // Values of one entity mostly share one event time.
        if (v.eventTime !== lastTime) {
          lastTime = v.eventTime;
          lastTsSize = timestampSize(v.eventTime);
        }
        tsSizes[k] = lastTsSize;
        fv += 1 + varintSize(lastTsSize) + lastTsSize;
      }
      fvSizes[k] = fv;
      rowSize += 1 + varintSize(fv) + fv;
    }
    rowSizes[r] = rowSize;
    total += 1 + varintSize(rowSize) + rowSize;
  }
  const readTsSize = timestampSize(readTimeMs);
  total += 1 + varintSize(readTsSize) + readTsSize;

  // Pass 2: the bytes.
  const out = new Out(Buffer.allocUnsafe(total));
  for (const ref of refs) {
    out.byte(RESP_REFS);
    const n = Buffer.byteLength(ref, "utf8");
    out.varint(n);
    out.pos += out.buf.write(ref, out.pos, n, "utf8");
  }
  k = 0;
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    out.byte(RESP_ROWS);
    out.varint(rowSizes[r]!);
    for (let c = 0; c < row.length; c++, k++) {
      const v = row[c]!;
      out.byte(ROW_VALUES);
      out.varint(fvSizes[k]!);
      if (v.status === "present") {
        out.byte(FV_VALUE);
        out.value(v.value, types[c]!, valueSizes[k]!);
      }
      out.byte(FV_STATUS);
      out.byte(STATUS_NUMBER[v.status]);
      if (!Number.isNaN(v.eventTime)) {
        out.byte(FV_EVENT_TIME);
        out.timestamp(v.eventTime, tsSizes[k]!);
      }
    }
  }
  out.byte(RESP_READ_TIME);
  out.timestamp(readTimeMs, readTsSize);
  if (out.pos !== total) throw new Error(`online response encoding: wrote ${out.pos} bytes, computed ${total}`);
  return new Uint8Array(out.buf.buffer, out.buf.byteOffset, out.buf.length);
}

// OnlineFeatureColumn tags.
const RESP_COLUMNS = 0x22; // GetOnlineFeaturesResponse.columns = 4
const COL_STATUSES = 0x0a; // 1, packed enum
const COL_EVENT_TIMES = 0x12; // 2, packed double
const COL_DOUBLE = 0x1a; // 3, packed double
const COL_FLOAT = 0x22; // 4, packed float
const COL_INT64 = 0x2a; // 5, packed int64
const COL_STRING = 0x32; // 6, one per entity
const COL_BOOL = 0x3a; // 7, packed bool
const COL_VECTOR = 0x42; // 8, one FloatVector per entity

const present = (v: ReadValue) => v.status === "present";

/** Body size of the value part of column `c` (zero values where not PRESENT). */
function columnValuesSize(rows: ReadonlyArray<readonly ReadValue[]>, c: number, kind: ValueKind): number {
  const n = rows.length;
  switch (kind) {
    case "float64":
      return 1 + varintSize(8 * n) + 8 * n;
    case "float32":
      return 1 + varintSize(4 * n) + 4 * n;
    case "bool":
      return 1 + varintSize(n) + n;
    case "int64": {
      let len = 0;
      for (let i = 0; i < n; i++) {
        const v = rows[i]![c]!;
        len += present(v) ? int64Size(v.value as bigint) : 1;
      }
      return 1 + varintSize(len) + len;
    }
    case "string": {
      let size = 0;
      for (let i = 0; i < n; i++) {
        const v = rows[i]![c]!;
        const len = present(v) ? Buffer.byteLength(v.value as string, "utf8") : 0;
        size += 1 + varintSize(len) + len;
      }
      return size;
    }
    case "float_vector": {
      let size = 0;
      for (let i = 0; i < n; i++) {
        const v = rows[i]![c]!;
        const len = present(v) ? (v.value as readonly number[]).length : 0;
        const inner = len > 0 ? 1 + varintSize(len * 4) + len * 4 : 0;
        size += 1 + varintSize(inner) + inner;
      }
      return size;
    }
  }
}

/**
 * The bytes of GetOnlineFeaturesResponse{refs, read_time, columns} for a columnar read:
 * one OnlineFeatureColumn of packed arrays per ref.
 */
export function encodeOnlineFeaturesColumns(
  refs: readonly string[],
  rows: ReadonlyArray<readonly ReadValue[]>,
  types: readonly ValueKind[],
  readTimeMs: number,
): Uint8Array {
  const n = rows.length;
  const columns = types.length;
  const colSizes = new Int32Array(columns);
  let total = 0;
  for (const ref of refs) {
    const len = Buffer.byteLength(ref, "utf8");
    total += 1 + varintSize(len) + len;
  }
  const readTsSize = timestampSize(readTimeMs);
  total += 1 + varintSize(readTsSize) + readTsSize;
  for (let c = 0; c < columns; c++) {
    // Empty packed fields are left out, as protobuf-es does.
    const size = n === 0 ? 0 : 1 + varintSize(n) + n + (1 + varintSize(8 * n) + 8 * n) + columnValuesSize(rows, c, types[c]!);
    colSizes[c] = size;
    total += 1 + varintSize(size) + size;
  }
  const out = new Out(Buffer.allocUnsafe(total));
  const buf = out.buf;
  for (const ref of refs) {
    out.byte(RESP_REFS);
    const len = Buffer.byteLength(ref, "utf8");
    out.varint(len);
    out.pos += buf.write(ref, out.pos, len, "utf8");
  }
  out.byte(RESP_READ_TIME);
  out.timestamp(readTimeMs, readTsSize);
  for (let c = 0; c < columns; c++) {
    out.byte(RESP_COLUMNS);
    out.varint(colSizes[c]!);
    if (n === 0) continue;
    out.byte(COL_STATUSES);
    out.varint(n);
    for (let i = 0; i < n; i++) buf[out.pos++] = STATUS_NUMBER[rows[i]![c]!.status];
    out.byte(COL_EVENT_TIMES);
    out.varint(8 * n);
    for (let i = 0; i < n; i++) {
      const t = rows[i]![c]!.eventTime;
      buf.writeDoubleLE(Number.isNaN(t) ? 0 : t, out.pos);
      out.pos += 8;
    }
    const kind = types[c]!;
    switch (kind) {
      case "float64":
      case "float32": {
        const width = kind === "float64" ? 8 : 4;
        out.byte(kind === "float64" ? COL_DOUBLE : COL_FLOAT);
        out.varint(width * n);
        for (let i = 0; i < n; i++) {
          const v = rows[i]![c]!;
          const x = present(v) ? Number(v.value) : 0;
          if (width === 8) buf.writeDoubleLE(x, out.pos);
          else buf.writeFloatLE(x, out.pos);
          out.pos += width;
        }
        break;
      }
      case "bool":
        out.byte(COL_BOOL);
        out.varint(n);
        for (let i = 0; i < n; i++) {
          const v = rows[i]![c]!;
          buf[out.pos++] = present(v) && v.value ? 1 : 0;
        }
        break;
      case "int64": {
        out.byte(COL_INT64);
        let len = 0;
        for (let i = 0; i < n; i++) {
          const v = rows[i]![c]!;
          len += present(v) ? int64Size(v.value as bigint) : 1;
        }
        out.varint(len);
        for (let i = 0; i < n; i++) {
          const v = rows[i]![c]!;
          out.int64(present(v) ? (v.value as bigint) : 0);
        }
        break;
      }
      case "string":
        for (let i = 0; i < n; i++) {
          const v = rows[i]![c]!;
          const s = present(v) ? (v.value as string) : "";
          const len = Buffer.byteLength(s, "utf8");
          out.byte(COL_STRING);
          out.varint(len);
          out.pos += buf.write(s, out.pos, len, "utf8");
        }
        break;
      case "float_vector":
        for (let i = 0; i < n; i++) {
          const v = rows[i]![c]!;
          const values = present(v) ? (v.value as readonly number[]) : [];
          const inner = values.length > 0 ? 1 + varintSize(values.length * 4) + values.length * 4 : 0;
          out.byte(COL_VECTOR);
          out.varint(inner);
          if (values.length > 0) {
            out.byte(VECTOR_VALUES);
            out.varint(values.length * 4);
            for (let j = 0; j < values.length; j++) {
              buf.writeFloatLE(values[j]!, out.pos);
              out.pos += 4;
            }
          }
        }
        break;
    }
  }
  if (out.pos !== total) throw new Error(`online columnar encoding: wrote ${out.pos} bytes, computed ${total}`);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}
