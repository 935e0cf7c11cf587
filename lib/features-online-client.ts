// A lean GetOnlineFeatures client for latency-critical callers (our SDK, the CLI, the bench):
// the columnar answer is read straight from its gRPC bytes into typed arrays, and the request
// is written by hand. protobuf-es's reflective decode builds a JS array per packed field by
// pushing one element at a time (~6,000 numbers for 100 entities x 20 refs); V8 pretenures
// those arrays, so the client ran a scavenge every ~12 calls and a mark-compact every ~1 s,
// and those pauses were the P99 of the call. Here a packed double field is one copy into a
// Float64Array. Same wire, same server, same API as FeatureService.GetOnlineFeatures.

import { Code, ConnectError } from "@connectrpc/connect";
import os from "node:os";
import { H2Channel, sendOnly, startCall } from "./h2-grpc-client.js";
import type { TlsMaterial } from "./tls.js";
import { PbReader as Reader } from "./pb-reader.js";

const PATH = "/mlmesh.features.v1.FeatureService/GetOnlineFeatures";
const LITTLE_ENDIAN = os.endianness() === "LE";

/** An entity key value: bigint or an integer number is sent as int64, a string as string. */
export type EntityKeyValue = bigint | number | string;

export interface OnlineColumn {
  /** FeatureStatus numbers (1 PRESENT, 2 NOT_FOUND, 3 EXPIRED, 4 NULL), one per entity. */
  readonly statuses: Uint8Array;
  /** Event time of each value in epoch ms, 0 when NOT_FOUND. */
  readonly eventTimesMs: Float64Array;
  /** The values in the field of the ref's type (the others stay undefined). */
  readonly doubles?: Float64Array;
  readonly floats?: Float32Array;
  readonly int64s?: BigInt64Array;
  readonly strings?: string[];
  readonly bools?: Uint8Array;
  readonly vectors?: Float32Array[];
}

export interface OnlineColumns {
  readonly refs: string[];
  readonly readTimeMs: number;
  readonly columns: OnlineColumn[];
}

export interface OnlineClientOptions {
  readonly tls?: TlsMaterial;
  /** Metadata sent with every call, e.g. `{ authorization: "Bearer ..." }`. */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
  readonly maxReceiveBytes?: number;
}

/** GetOnlineFeatures with `columnar: true` on its own HTTP/2 session to `baseUrl`. */
export class OnlineFeaturesClient {
  private readonly channel: H2Channel;
  private readonly writer = new Writer();

  constructor(
    baseUrl: string,
    private readonly opts: OnlineClientOptions = {},
  ) {
    const max = opts.maxReceiveBytes ?? 16 * 1024 * 1024;
    this.channel = new H2Channel(baseUrl.replace(/^https?:\/\//, "").replace(/\/+$/, ""), { tls: opts.tls, maxReceiveBytes: max, maxSendBytes: max });
  }

  /** The values of `refs` (or a feature set's) for each entity, column by column. */
  getColumns(entities: ReadonlyArray<Readonly<Record<string, EntityKeyValue>>>, refs: readonly string[], featureSet = ""): Promise<OnlineColumns> {
    // The writer's buffer is reused: startCall frames (copies) the message synchronously.
    const body = encodeColumnarRequest(entities, refs, featureSet, this.writer);
    return new Promise((resolve, reject) => {
      const md: Record<string, string> = { ...this.opts.metadata };
      let response: Uint8Array | undefined;
      let extra = false;
      const call = startCall(this.channel, PATH, md, Date.now() + (this.opts.timeoutMs ?? 30_000), {
        onMessage(bytes) {
          if (response) extra = true;
          response = bytes;
        },
        onEnd(err) {
          if (err) return reject(err);
          if (response === undefined || extra) return reject(new ConnectError(`GetOnlineFeatures answered OK with ${extra ? "more than one message" : "no message"}`, Code.Internal));
          try {
            resolve(decodeColumnarResponse(response));
          } catch (e) {
            reject(e instanceof ConnectError ? e : new ConnectError(`cannot decode the GetOnlineFeatures response: ${(e as Error).message}`, Code.Internal));
          }
        },
      });
      sendOnly(call, body);
    });
  }

  close(): void {
    this.channel.close();
  }
}

// ---------------------------------------------------------------- request

class Writer {
  buf = Buffer.allocUnsafe(4096);
  pos = 0;
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }
  varint(v: number): void {
    this.ensure(10);
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }
  varint64(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    if (u <= 0xffffffffn) return this.varint(Number(u));
    this.ensure(10);
    while (u > 0x7fn) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }
  string(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.varint(n);
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos, n, "utf8");
  }
  /** Runs `body`, then puts its length in front of what it wrote. */
  delimited(body: () => void): void {
    const start = this.pos;
    body();
    const len = this.pos - start;
    let n = 1;
    for (let l = len; l > 0x7f; l = Math.floor(l / 128)) n++;
    this.ensure(n);
    this.buf.copyWithin(start + n, start, this.pos);
    let p = start;
    let l = len;
    while (l > 0x7f) {
      this.buf[p++] = (l & 0x7f) | 0x80;
      l = Math.floor(l / 128);
    }
    this.buf[p] = l;
    this.pos += n;
  }
}

/** GetOnlineFeaturesRequest{entities, refs, feature_set, columnar: true} as protobuf bytes. */
export function encodeColumnarRequest(entities: ReadonlyArray<Readonly<Record<string, EntityKeyValue>>>, refs: readonly string[], featureSet = "", w = new Writer()): Uint8Array {
  w.pos = 0;
  for (const e of entities) {
    w.byte(0x0a); // entities: EntityKey
    w.delimited(() => {
      for (const name in e) {
        const v = e[name]!;
        w.byte(0x0a); // keys: map entry
        w.delimited(() => {
          w.byte(0x0a);
          w.string(name);
          w.byte(0x12); // Value
          w.delimited(() => {
            if (typeof v === "string") {
              w.byte(0x22);
              w.string(v);
            } else {
              if (typeof v === "number" && !Number.isSafeInteger(v)) throw new ConnectError(`entity key ${name}: ${v} is not an integer`, Code.InvalidArgument);
              w.byte(0x18);
              w.varint64(BigInt(v));
            }
          });
        });
      }
    });
  }
  for (const r of refs) {
    w.byte(0x12);
    w.string(r);
  }
  if (featureSet) {
    w.byte(0x1a);
    w.string(featureSet);
  }
  w.byte(0x30); // columnar = true
  w.byte(1);
  return w.buf.subarray(0, w.pos);
}

// ---------------------------------------------------------------- response

const utf8 = new TextDecoder();

/**
 * One ArrayBuffer per response for every typed array of it: a Float64Array of 100 numbers
 * is too big for V8's on-heap typed arrays, and 60 small ArrayBuffers per call (external
 * memory, tracked one by one by the GC) cost more collection than the numbers themselves.
 */
class Arena {
  private buf: ArrayBuffer;
  private pos = 0;
  constructor(size: number) {
    this.buf = new ArrayBuffer(size);
  }
  /** `bytes` bytes at an offset aligned to `align`. */
  take(bytes: number, align: number): { buffer: ArrayBuffer; offset: number } {
    let at = Math.ceil(this.pos / align) * align;
    if (at + bytes > this.buf.byteLength) {
      this.buf = new ArrayBuffer(Math.max(bytes, this.buf.byteLength));
      at = 0;
    }
    this.pos = at + bytes;
    return { buffer: this.buf, offset: at };
  }
}

/** Fixed-width little-endian numbers of a packed field, copied (aligned) into a typed array. */
function packedFixed<T extends Float64Array | Float32Array>(Ctor: { new (b: ArrayBuffer, o: number, n: number): T; BYTES_PER_ELEMENT: number }, arena: Arena, buf: Uint8Array, start: number, end: number): T {
  const width = Ctor.BYTES_PER_ELEMENT;
  if ((end - start) % width !== 0) throw new Error("packed fixed-width field of odd length");
  const n = (end - start) / width;
  const { buffer, offset } = arena.take(end - start, 8);
  const out = new Ctor(buffer, offset, n);
  if (LITTLE_ENDIAN) {
    new Uint8Array(buffer, offset, end - start).set(buf.subarray(start, end));
  } else {
    const dv = new DataView(buf.buffer, buf.byteOffset + start, end - start);
    for (let i = 0; i < n; i++) out[i] = width === 8 ? dv.getFloat64(i * 8, true) : dv.getFloat32(i * 4, true);
  }
  return out;
}

/** Grows a typed array list (unpacked encoding or a split field; rare, so simple). */
function appendFixed<T extends Float64Array | Float32Array>(prev: T | undefined, more: T): T {
  if (!prev || prev.length === 0) return more;
  const out = new (prev.constructor as { new (n: number): T })(prev.length + more.length);
  out.set(prev);
  out.set(more, prev.length);
  return out;
}

function appendBytes(prev: Uint8Array | undefined, more: Uint8Array): Uint8Array {
  if (!prev || prev.length === 0) return more;
  const out = new Uint8Array(prev.length + more.length);
  out.set(prev);
  out.set(more, prev.length);
  return out;
}

function decodeColumn(arena: Arena, buf: Uint8Array, start: number, end: number): OnlineColumn {
  const r = new Reader(buf, start, end);
  let statuses: Uint8Array | undefined;
  let eventTimesMs: Float64Array | undefined;
  let doubles: Float64Array | undefined;
  let floats: Float32Array | undefined;
  let int64s: bigint[] | undefined;
  let strings: string[] | undefined;
  let bools: Uint8Array | undefined;
  let vectors: Float32Array[] | undefined;
  while (r.pos < end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    switch (field) {
      case 1:
      case 7: {
        // Small enums and bools: one byte each in a Uint8Array sized by the payload (a
        // varint takes at least one byte), no array growing element by element.
        let more: Uint8Array;
        if (wt === 2) {
          const s = r.delimited();
          const { buffer, offset } = arena.take(r.pos - s, 1);
          more = new Uint8Array(buffer, offset, r.pos - s);
          const sub = new Reader(buf, s, r.pos);
          let n = 0;
          while (sub.pos < sub.end) more[n++] = sub.varint();
          more = more.subarray(0, n);
        } else if (wt === 0) more = Uint8Array.of(r.varint());
        else {
          r.skip(wt);
          break;
        }
        if (field === 1) statuses = appendBytes(statuses, more);
        else bools = appendBytes(bools, more);
        break;
      }
      case 2:
      case 3: {
        let more: Float64Array;
        if (wt === 2) {
          const s = r.delimited();
          more = packedFixed(Float64Array, arena, buf, s, r.pos);
        } else if (wt === 1) {
          if (r.pos + 8 > end) throw new Error("truncated double");
          more = packedFixed(Float64Array, arena, buf, r.pos, (r.pos += 8));
        } else {
          r.skip(wt);
          break;
        }
        if (field === 2) eventTimesMs = appendFixed(eventTimesMs, more);
        else doubles = appendFixed(doubles, more);
        break;
      }
      case 4: {
        let more: Float32Array;
        if (wt === 2) {
          const s = r.delimited();
          more = packedFixed(Float32Array, arena, buf, s, r.pos);
        } else if (wt === 5) {
          if (r.pos + 4 > end) throw new Error("truncated float");
          more = packedFixed(Float32Array, arena, buf, r.pos, (r.pos += 4));
        } else {
          r.skip(wt);
          break;
        }
        floats = appendFixed(floats, more);
        break;
      }
      case 5: {
        const list = (int64s ??= []);
        if (wt === 2) {
          const s = r.delimited();
          const sub = new Reader(buf, s, r.pos);
          while (sub.pos < sub.end) list.push(sub.int64());
        } else if (wt === 0) list.push(r.int64());
        else r.skip(wt);
        break;
      }
      case 6: {
        if (wt !== 2) {
          r.skip(wt);
          break;
        }
        const s = r.delimited();
        (strings ??= []).push(utf8.decode(buf.subarray(s, r.pos)));
        break;
      }
      case 8: {
        if (wt !== 2) {
          r.skip(wt);
          break;
        }
        const s = r.delimited();
        // FloatVector{ repeated float values = 1 }
        const sub = new Reader(buf, s, r.pos);
        let values = new Float32Array(0);
        while (sub.pos < sub.end) {
          const t = sub.varint();
          if (t === 0x0a) {
            const vs = sub.delimited();
            values = appendFixed(values, packedFixed(Float32Array, arena, buf, vs, sub.pos));
          } else if (t === 0x0d) {
            if (sub.pos + 4 > sub.end) throw new Error("truncated float");
            values = appendFixed(values, packedFixed(Float32Array, arena, buf, sub.pos, (sub.pos += 4)));
          } else sub.skip(t & 7);
        }
        (vectors ??= []).push(values);
        break;
      }
      default:
        r.skip(wt);
    }
  }
  if (r.pos !== end) throw new Error("field overruns its column");
  return {
    statuses: statuses ?? new Uint8Array(0),
    eventTimesMs: eventTimesMs ?? new Float64Array(0),
    ...(doubles ? { doubles } : {}),
    ...(floats ? { floats } : {}),
    ...(int64s ? { int64s: BigInt64Array.from(int64s) } : {}),
    ...(strings ? { strings } : {}),
    ...(bools ? { bools } : {}),
    ...(vectors ? { vectors } : {}),
  };
}

/** GetOnlineFeaturesResponse bytes of a columnar read -> refs, read time and typed columns. */
export function decodeColumnarResponse(buf: Uint8Array): OnlineColumns {
  const r = new Reader(buf, 0, buf.length);
  const refs: string[] = [];
  const columns: OnlineColumn[] = [];
  // Every packed payload fits in the message; 8 bytes of alignment slack per column field.
  const arena = new Arena(buf.length + 64 * 8);
  let readTimeMs = 0;
  while (r.pos < buf.length) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 1 && wt === 2) {
      const s = r.delimited();
      refs.push(utf8.decode(buf.subarray(s, r.pos)));
    } else if (field === 3 && wt === 2) {
      const s = r.delimited();
      const t = new Reader(buf, s, r.pos);
      let seconds = 0;
      let nanos = 0;
      while (t.pos < t.end) {
        const tt = t.varint();
        if (tt === 0x08) seconds = Number(t.int64());
        else if (tt === 0x10) nanos = t.varint();
        else t.skip(tt & 7);
      }
      readTimeMs = seconds * 1000 + Math.floor(nanos / 1e6);
    } else if (field === 4 && wt === 2) {
      const s = r.delimited();
      columns.push(decodeColumn(arena, buf, s, r.pos));
    } else if (field === 2 && wt === 2) {
      throw new Error("the server answered with rows; it does not support columnar reads");
    } else r.skip(wt);
  }
  if (r.pos !== buf.length) throw new Error("message overruns its end");
  return { refs, readTimeMs, columns };
}
