// A protobuf wire reader for hot consumers that decode only the fields they use (the drift
// monitor reading every replica's prediction log): no reflection, no message objects for
// what is skipped. Malformed input (a truncated varint or field, a bad wire type, a length
// past the end) throws PbReadError, as fromBinary throws on it.

import { WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT } from "./pb-writer.js";

export class PbReadError extends Error {}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Longest string internedString() remembers. */
const INTERN_MAX_BYTES = 64;

/** A fixed-size table of recently decoded strings by their bytes (a slot's newest wins). */
export class StringInterner {
  readonly mask: number;
  readonly keys: Array<Uint8Array | undefined>;
  readonly strings: Array<string | undefined>;

  constructor(slots = 512) {
    if (slots <= 0 || (slots & (slots - 1)) !== 0) throw new RangeError(`slots must be a power of two, got ${slots}`);
    this.mask = slots - 1;
    this.keys = new Array<Uint8Array | undefined>(slots).fill(undefined);
    this.strings = new Array<string | undefined>(slots).fill(undefined);
  }
}

export class PbReader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    /** Offset just past the last byte to read. */
    public end = buf.length,
  ) {
    this.pos = start;
  }

  private view?: DataView;
  private nodeBuf?: Buffer;

  private bytes(): Buffer {
    return (this.nodeBuf ??= Buffer.from(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength));
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** A field's tag as [field number, wire type]; throws on field 0. */
  tag(): number {
    const t = this.uint32();
    if (t >>> 3 === 0) throw new PbReadError(`invalid field number 0 at byte ${this.pos}`);
    return t;
  }

  /** A varint's low 32 bits, unsigned (the rest of a longer varint is consumed). */
  uint32(): number {
    const b = this.buf;
    let p = this.pos;
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (p >= this.end) throw new PbReadError("truncated varint");
      const c = b[p++]!;
      v |= (c & 0x7f) << shift;
      if (c < 0x80) {
        this.pos = p;
        return v >>> 0;
      }
    }
    // Bytes 6..10 of a 64-bit varint: only consumed.
    for (let i = 0; i < 5; i++) {
      if (p >= this.end) throw new PbReadError("truncated varint");
      if (b[p++]! < 0x80) {
        this.pos = p;
        return v >>> 0;
      }
    }
    throw new PbReadError("varint longer than 10 bytes");
  }

  /** A varint as a number: exact up to 2^53 (lengths, counts, ids, positive int64s). */
  varint(): number {
    const b = this.buf;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new PbReadError("truncated varint");
      const c = b[this.pos++]!;
      result += (c & 0x7f) * mul;
      if (c < 0x80) return result;
      mul *= 128;
    }
    throw new PbReadError("varint longer than 10 bytes");
  }

  /** int64 as a number: exact within ±2^53 (a Timestamp's seconds), else rounded. */
  int64Number(): number {
    const start = this.pos;
    const v = this.varint();
    // Up to 7 bytes is below 2^49: exact. Longer (negative or huge): through bigint.
    if (this.pos - start <= 7) return v;
    this.pos = start;
    return Number(this.int64());
  }

  /** Moves past a length-delimited field's payload; returns where the payload starts (it ends at pos). */
  delimited(): number {
    const end = this.lengthEnd();
    const start = this.pos;
    this.pos = end;
    return start;
  }

  /** int32 (a negative one is sent sign-extended to 64 bits). */
  int32(): number {
    return this.uint32() | 0;
  }

  /** A signed 64-bit varint. */
  int64(): bigint {
    // Up to 4 bytes is a small non-negative integer: no BigInt arithmetic.
    const b0 = this.pos;
    let small = 0;
    for (let i = 0; i < 4 && b0 + i < this.end; i++) {
      const c = this.buf[b0 + i]!;
      small += (c & 0x7f) * 2 ** (7 * i);
      if (c < 0x80) {
        this.pos = b0 + i + 1;
        return BigInt(small);
      }
    }
    const b = this.buf;
    let p = this.pos;
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (p >= this.end) throw new PbReadError("truncated varint");
      const c = b[p++]!;
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) {
        this.pos = p;
        return BigInt.asIntN(64, v);
      }
    }
    throw new PbReadError("varint longer than 10 bytes");
  }

  bool(): boolean {
    return this.uint32() !== 0;
  }

  private dataView(): DataView {
    return (this.view ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength));
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new PbReadError("truncated double");
    const x = this.dataView().getFloat64(this.pos, true);
    this.pos += 8;
    return x;
  }

  float(): number {
    if (this.pos + 4 > this.end) throw new PbReadError("truncated float");
    const x = this.dataView().getFloat32(this.pos, true);
    this.pos += 4;
    return x;
  }

  /** The length of a length-delimited field; leaves pos at its first byte. Returns its end. */
  lengthEnd(): number {
    const len = this.uint32();
    const end = this.pos + len;
    if (end > this.end) throw new PbReadError(`truncated field: length ${len} past the end of the message`);
    return end;
  }

  string(): string {
    const end = this.lengthEnd();
    const b = this.buf;
    // Short ASCII (names, ids): Buffer's latin1 slice (ASCII is latin1), no decoder call.
    // Appending char by char made a string per character: the largest allocation site here.
    if (end - this.pos <= 64) {
      let ascii = true;
      for (let p = this.pos; p < end; p++) {
        if (b[p]! > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        const s = this.bytes().toString("latin1", this.pos, end);
        this.pos = end;
        return s;
      }
    }
    let s: string;
    try {
      s = decoder.decode(b.subarray(this.pos, end));
    } catch {
      throw new PbReadError("invalid UTF-8 in a string field");
    }
    this.pos = end;
    return s;
  }

  /**
   * A string field through `interner`: short bytes seen before give back the same string,
   * with no decoding and nothing allocated (a prediction log repeats its feature refs in
   * every record). A miss decodes as string() does, and is remembered. `position`: the
   * string's place in a sequence that repeats (the n-th key of every record's map), used as
   * its slot instead of a hash of its bytes.
   */
  internedString(interner: StringInterner, position = -1): string {
    const start = this.pos;
    const end = this.lengthEnd();
    const from = this.pos;
    const b = this.buf;
    const len = end - from;
    if (len === 0 || len > INTERN_MAX_BYTES) {
      this.pos = start;
      return this.string();
    }
    let slot: number;
    if (position >= 0) slot = position & interner.mask;
    else {
      // FNV-1a over every byte: refs of one view differ in a byte or two anywhere (f03, f13),
      // and a slot shared by two keys in use would decode both on every record.
      let h = 0x811c9dc5;
      for (let p = from; p < end; p++) h = Math.imul(h ^ b[p]!, 0x01000193);
      slot = (h ^ (h >>> 15)) & interner.mask;
    }
    const known = interner.keys[slot];
    if (known !== undefined && known.length === len) {
      let i = 0;
      while (i < len && known[i] === b[from + i]) i++;
      if (i === len) {
        this.pos = end;
        return interner.strings[slot]!;
      }
    }
    // Same bytes, same string: whatever string() decodes (and validates) can be kept.
    this.pos = start;
    const str = this.string();
    interner.keys[slot] = b.slice(from, end);
    interner.strings[slot] = str;
    return str;
  }

  /** Skips a field of the given wire type (after its tag). */
  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.uint32();
        return;
      case WIRE_FIXED64:
        if (this.pos + 8 > this.end) throw new PbReadError("truncated fixed64");
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.pos = this.lengthEnd();
        return;
      case WIRE_FIXED32:
        if (this.pos + 4 > this.end) throw new PbReadError("truncated fixed32");
        this.pos += 4;
        return;
      default:
        // Groups (3, 4) are not used by any of our messages; 6 and 7 do not exist.
        throw new PbReadError(`unsupported wire type ${wire}`);
    }
  }
}
