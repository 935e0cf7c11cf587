// PbReader.internedString: the same bytes give the same string, whatever else shares its slot.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PbReader, PbReadError, StringInterner } from "./pb-reader.js";
import { PbWriter, WIRE_LEN } from "./pb-writer.js";

function fields(...values: string[]): Uint8Array {
  const w = new PbWriter();
  for (const v of values) w.tag(1, WIRE_LEN).string(v);
  return w.copy();
}

function readAll(bytes: Uint8Array, interner: StringInterner): string[] {
  const r = new PbReader(bytes);
  const out: string[] = [];
  while (!r.done()) {
    r.tag();
    out.push(r.internedString(interner));
  }
  return out;
}

describe("PbReader.internedString", () => {
  const values = ["view:f0", "view:f1", "", "x".repeat(64), "y".repeat(65), "café", "日本", "view:f0", "a\u0000b"];

  it("decodes exactly what string() decodes, through hits, misses and slot collisions", () => {
    for (const slots of [1, 2, 512]) {
      const interner = new StringInterner(slots);
      for (let round = 0; round < 3; round++) assert.deepEqual(readAll(fields(...values), interner), values, `slots ${slots}, round ${round}`);
    }
  });

  it("answers a repeated key from the table, not from a new decode", () => {
    const interner = new StringInterner(64);
    const [a] = readAll(fields("bench_users:f7"), interner);
    const slot = interner.strings.indexOf(a);
    assert.ok(slot >= 0, "remembered");
    // Same bytes in a different buffer: the remembered string comes back.
    assert.equal(readAll(fields("bench_users:f7"), interner)[0], interner.strings[slot]);
    // Its stored bytes are a copy: reusing the source buffer cannot change what it matches.
    const src = fields("bench_users:f8");
    readAll(src, interner);
    src.fill(0x41, 2);
    assert.deepEqual(readAll(fields("bench_users:f8"), interner), ["bench_users:f8"]);
  });

  it("by position: the n-th string of each sequence in slot n, right when a sequence changes", () => {
    const interner = new StringInterner(4);
    const seqs = [["a:f00", "a:f10", "a:f01"], ["a:f00", "a:f10", "a:f01"], ["a:f10", "a:f00"], ["x", "a:f00", "a:f01", "é", "z", "y"]];
    for (const seq of seqs) {
      const r = new PbReader(fields(...seq));
      const got: string[] = [];
      for (let i = 0; !r.done(); i++) {
        r.tag();
        got.push(r.internedString(interner, i));
      }
      assert.deepEqual(got, seq);
    }
  });

  it("throws on a length past the end, as string() does", () => {
    const bytes = fields("abcdef").subarray(0, 5);
    assert.throws(() => readAll(bytes, new StringInterner()), PbReadError);
  });

  it("refuses a table size that is not a power of two", () => {
    assert.throws(() => new StringInterner(3), RangeError);
  });
});
