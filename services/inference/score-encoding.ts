// A hand-written encoder for ScoreResponse, straight from the model's output tensors. The
// Score path otherwise builds RowOutput objects (rowOutputs), which protobuf-es then turns
// into messages (reflective create) and bytes (toBinary): per single-row request that was
// more CPU than the rest of the handler. Byte-identical to protobuf-es for the same response
// (proved by score-encoding.test.ts); served as pre-encoded bytes on the gRPC port only.
//
// Wire format (proto3, implicit presence: zero values are not written):
//   ScoreResponse  1 model_name string | 2 version int64 | 3 outputs RowOutput (repeated)
//                  4 request_id string | 5 queue_time_us int64 | 6 compute_time_us int64
//   RowOutput      1 score double | 2 label string | 3 class_probabilities map<string,double>
//                  4 outputs map<string,OutputValues>
//   OutputValues   1 values packed double | 3 shape packed int64

import { ValidationError } from "../../lib/errors.js";
import { product, type DenseTensor } from "./tensors.js";

export interface ScoreResponseHead {
  readonly modelName: string;
  readonly version: number;
  readonly requestId: string;
  readonly queueTimeUs: number;
  readonly computeTimeUs: number;
}

function varintSize(n: number): number {
  if (n < 0) return 10;
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

const lenField = (bytes: number) => 1 + varintSize(bytes) + bytes;

/** proto3 leaves out a double that is +0 only (protobuf-es writes -0 and NaN). */
const isPositiveZero = (x: number) => x === 0 && 1 / x > 0;

class Out {
  at = 0;
  constructor(readonly buf: Buffer) {}
  byte(b: number): void {
    this.buf[this.at++] = b;
  }
  varint(n: number): void {
    if (n < 0) {
      // Two's complement in 10 bytes, as int64 wants.
      let v = BigInt.asUintN(64, BigInt(n));
      while (v >= 0x80n) {
        this.byte(Number(v & 0x7fn) | 0x80);
        v >>= 7n;
      }
      this.byte(Number(v));
      return;
    }
    while (n >= 0x80) {
      this.byte((n % 128) | 0x80);
      n = Math.floor(n / 128);
    }
    this.byte(n);
  }
  double(x: number): void {
    this.buf.writeDoubleLE(x, this.at);
    this.at += 8;
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.at);
    this.at += b.length;
  }
}

/** What one row carries besides its raw outputs, decided as rowOutputs decides it. */
interface RowExtras {
  score: number;
  label: Uint8Array | undefined;
  /** Class probabilities in key order "0", "1", ... (none when empty). */
  probs: ArrayLike<number> | undefined;
}

/** Encoded keys "0".."n-1" for class probabilities, built once. */
const CLASS_KEYS: Uint8Array[] = [];
function classKey(i: number): Uint8Array {
  for (let k = CLASS_KEYS.length; k <= i; k++) CLASS_KEYS.push(Buffer.from(String(k)));
  return CLASS_KEYS[i]!;
}

/**
 * The ScoreResponse bytes for `rows` rows of `outputs` — what
 * `toBinary(ScoreResponseSchema, create(ScoreResponseSchema, { ...head, outputs: rowOutputs(outputs, rows, wanted) }))`
 * gives, without building either.
 */
export function encodeScoreResponse(head: ScoreResponseHead, outputs: Record<string, DenseTensor>, rows: number, wanted: readonly string[]): Uint8Array {
  const names = Object.keys(outputs);
  for (const w of wanted) if (!outputs[w]) throw new ValidationError("output_names", `unknown output "${w}"; the model's outputs are ${names.join(", ")}`);
  const probName = names.find((n) => /prob/i.test(n) && outputs[n]!.type.startsWith("float")) ?? names.find((n) => outputs[n]!.type.startsWith("float"));
  const labelName = names.find((n) => /label/i.test(n) && !outputs[n]!.type.startsWith("float"));
  // Map entries in the order protobuf-es writes them: an object's key order.
  const shown = Object.keys(Object.fromEntries((wanted.length > 0 ? wanted : names).map((n) => [n, true])));
  const cols = shown.map((n) => {
    const t = outputs[n]!;
    const per = rows > 0 && t.dims[0] === rows ? product(t.dims.slice(1)) : 0;
    const count = per > 0 ? per : t.data.length;
    const shape = t.dims.slice(1);
    let shapeBytes = 0;
    for (const d of shape) shapeBytes += varintSize(d);
    const valuesField = count > 0 ? lenField(8 * count) : 0;
    const shapeField = shape.length > 0 ? lenField(shapeBytes) : 0;
    const key = Buffer.from(n);
    const entry = lenField(key.length) + lenField(valuesField + shapeField);
    return { t, per, count, shape, shapeBytes, valuesField, shapeField, key, entry };
  });
  const probT = probName ? outputs[probName]! : undefined;
  const probPer = probT ? product(probT.dims.slice(1)) : 0;
  const labelT = labelName ? outputs[labelName]! : undefined;
  const labelPer = labelT ? product(labelT.dims.slice(1)) || 1 : 0;

  const extras: RowExtras[] = new Array(rows);
  const rowSizes = new Int32Array(rows);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const e: RowExtras = { score: 0, label: undefined, probs: undefined };
    let size = 0;
    for (const c of cols) size += lenField(c.entry);
    if (probT) {
      const p = probT.data.subarray(r * probPer, (r + 1) * probPer) as Float32Array | Float64Array;
      if (p.length === 1) e.score = Number(p[0]);
      else if (p.length >= 2) {
        e.probs = p;
        if (p.length === 2) e.score = Number(p[1]);
        else {
          let best = 0;
          for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
          e.score = Number(p[best]);
          e.label = classKey(best);
        }
      }
    }
    if (labelT) e.label = Buffer.from(String(labelT.data[r * labelPer]));
    if (!isPositiveZero(e.score)) size += 9;
    if (e.label && e.label.length > 0) size += lenField(e.label.length);
    if (e.probs) for (let i = 0; i < e.probs.length; i++) size += lenField(lenField(classKey(i).length) + 9);
    extras[r] = e;
    rowSizes[r] = size;
    total += lenField(size);
  }
  const modelName = Buffer.from(head.modelName);
  const requestId = Buffer.from(head.requestId);
  if (modelName.length > 0) total += lenField(modelName.length);
  if (head.version !== 0) total += 1 + varintSize(head.version);
  if (requestId.length > 0) total += lenField(requestId.length);
  if (head.queueTimeUs !== 0) total += 1 + varintSize(head.queueTimeUs);
  if (head.computeTimeUs !== 0) total += 1 + varintSize(head.computeTimeUs);

  const o = new Out(Buffer.allocUnsafe(total));
  if (modelName.length > 0) {
    o.byte(0x0a);
    o.varint(modelName.length);
    o.bytes(modelName);
  }
  if (head.version !== 0) {
    o.byte(0x10);
    o.varint(head.version);
  }
  for (let r = 0; r < rows; r++) {
    const e = extras[r]!;
    o.byte(0x1a);
    o.varint(rowSizes[r]!);
    if (!isPositiveZero(e.score)) {
      o.byte(0x09);
      o.double(e.score);
    }
    if (e.label && e.label.length > 0) {
      o.byte(0x12);
      o.varint(e.label.length);
      o.bytes(e.label);
    }
    if (e.probs) {
      for (let i = 0; i < e.probs.length; i++) {
        const key = classKey(i);
        o.byte(0x1a);
        o.varint(lenField(key.length) + 9);
        o.byte(0x0a);
        o.varint(key.length);
        o.bytes(key);
        o.byte(0x11);
        o.double(Number(e.probs[i]));
      }
    }
    for (const c of cols) {
      o.byte(0x22);
      o.varint(c.entry);
      o.byte(0x0a);
      o.varint(c.key.length);
      o.bytes(c.key);
      o.byte(0x12);
      o.varint(c.valuesField + c.shapeField);
      if (c.count > 0) {
        o.byte(0x0a);
        o.varint(8 * c.count);
        const from = c.per > 0 ? r * c.per : 0;
        for (let i = 0; i < c.count; i++) o.double(Number(c.t.data[from + i]));
      }
      if (c.shape.length > 0) {
        o.byte(0x1a);
        o.varint(c.shapeBytes);
        for (const d of c.shape) o.varint(d);
      }
    }
  }
  if (requestId.length > 0) {
    o.byte(0x22);
    o.varint(requestId.length);
    o.bytes(requestId);
  }
  if (head.queueTimeUs !== 0) {
    o.byte(0x28);
    o.varint(head.queueTimeUs);
  }
  if (head.computeTimeUs !== 0) {
    o.byte(0x30);
    o.varint(head.computeTimeUs);
  }
  if (o.at !== total) throw new Error(`ScoreResponse encoder wrote ${o.at} bytes, sized ${total}`);
  return o.buf;
}
