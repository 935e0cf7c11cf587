// A protobuf wire writer for hot paths whose messages we encode by hand (the prediction log):
// one growable buffer reused from message to message, length-delimited fields written in
// place (the length is back-patched, and the body moved only when it needs more than one
// length byte), and UTF-8 written straight into the buffer. It writes what
// @bufbuild/protobuf's toBinary writes for the same fields in the same order, byte for byte;
// the encoders built on it are tested against toBinary.

const encoder = new TextEncoder();
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const f32 = new Float32Array(1);
const f32Bytes = new Uint8Array(f32.buffer);

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

export class PbWriter {
  private buf: Uint8Array;
  /** Bytes written. */
  pos = 0;
  /** Start offsets of the bodies of the open length-delimited fields. */
  private readonly forks: number[] = [];

  constructor(initialBytes = 4096) {
    this.buf = new Uint8Array(initialBytes);
  }

  /** Forgets what was written (keeps the buffer). */
  reset(): void {
    this.pos = 0;
    this.forks.length = 0;
  }

  /** A copy of bytes [from, pos). */
  copy(from = 0): Uint8Array {
    return this.buf.slice(from, this.pos);
  }

  /** Bytes [0, pos) without a copy: valid until the next write or reset. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** Appends raw bytes. */
  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  private ensure(more: number): void {
    const need = this.pos + more;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  tag(field: number, wire: number): this {
    return this.uint32(((field << 3) | wire) >>> 0);
  }

  /** Unsigned 32-bit varint. */
  uint32(v: number): this {
    this.ensure(5);
    const b = this.buf;
    let p = this.pos;
    v >>>= 0;
    while (v > 0x7f) {
      b[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[p++] = v;
    this.pos = p;
    return this;
  }

  /** int32 as protobuf writes it: negatives sign-extended to ten bytes. */
  int32(v: number): this {
    return v >= 0 ? this.uint32(v) : this.int64(v);
  }

  /**
   * A 64-bit integer (int64/uint64 two's complement), given as a number (exact up to 2^53)
   * or a bigint.
   */
  int64(v: number | bigint): this {
    if (typeof v === "number" && v >= 0 && v <= 0xffffffff) return this.uint32(v);
    let x = BigInt.asUintN(64, BigInt(v));
    this.ensure(10);
    const b = this.buf;
    let p = this.pos;
    while (x > 0x7fn) {
      b[p++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    b[p++] = Number(x);
    this.pos = p;
    return this;
  }

  bool(v: boolean): this {
    return this.uint32(v ? 1 : 0);
  }

  double(v: number): this {
    this.ensure(8);
    f64[0] = v;
    this.buf.set(f64Bytes, this.pos);
    this.pos += 8;
    return this;
  }

  float(v: number): this {
    this.ensure(4);
    f32[0] = v;
    this.buf.set(f32Bytes, this.pos);
    this.pos += 4;
    return this;
  }

  /** A length-delimited UTF-8 string (length varint first). */
  string(s: string): this {
    // Short ASCII (most names and ids): one pass, no encoder call.
    const n = s.length;
    if (n < 128) {
      this.ensure(1 + n);
      const b = this.buf;
      const start = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        b[start + i] = c;
      }
      if (i === n) {
        b[this.pos] = n;
        this.pos = start + n;
        return this;
      }
    }
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    const max = n * 3;
    this.ensure(5 + max);
    const lenBytes = max < 0x80 ? 1 : max < 0x4000 ? 2 : max < 0x200000 ? 3 : max < 0x10000000 ? 4 : 5;
    const body = this.pos + lenBytes;
    const { written } = encoder.encodeInto(s, this.buf.subarray(body, body + max));
    this.patchLength(body, written, lenBytes);
    return this;
  }

  /** Opens a length-delimited body (after its tag): close it with join(). */
  fork(): this {
    this.ensure(1);
    this.pos += 1; // one length byte reserved; join() makes room if the body needs more
    this.forks.push(this.pos);
    return this;
  }

  /** Closes the innermost fork(), writing its length. */
  join(): this {
    const body = this.forks.pop();
    if (body === undefined) throw new Error("PbWriter.join without fork");
    this.patchLength(body, this.pos - body, 1);
    return this;
  }

  /**
   * Writes `len` as a varint in the `reserved` bytes before `body`, moving the body when the
   * varint is longer or shorter, and leaves pos after the body.
   */
  private patchLength(body: number, len: number, reserved: number): void {
    const need = len < 0x80 ? 1 : len < 0x4000 ? 2 : len < 0x200000 ? 3 : len < 0x10000000 ? 4 : 5;
    const start = body - reserved;
    if (need !== reserved) {
      this.ensure(need - reserved);
      this.buf.copyWithin(start + need, body, body + len);
    }
    const b = this.buf;
    let p = start;
    let v = len;
    while (v > 0x7f) {
      b[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[p++] = v;
    this.pos = start + need + len;
  }
}
