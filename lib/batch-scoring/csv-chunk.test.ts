// The byte-level CSV chunk parser of the scoring workers against the text path: values equal
// Number() of the cell text (stored in float32 like the text path), record boundaries
// respect quotes, line numbers count quoted line breaks, bad cells and format faults are
// named as the text path names them.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CsvRecordParser } from "../drift/csv-drift.js";
import { ChunkFormatError, chunkParser, formatRows, headerEnd, lastRecordEnd, numberOfText } from "./csv-chunk.mjs";

const enc = (s: string) => new TextEncoder().encode(s);
const plan = (fields: number, cols: number[], type: "float32" | "float64" | "int64" = "float32", skipBadRows = false) => ({
  fields,
  inputs: [{ name: "x", type, matrix: true, columns: cols.map((file) => ({ name: `c${file}`, file })) }],
  allowNonFinite: false,
  skipBadRows,
});

describe("csv-chunk", () => {
  it("reads decimals exactly as Number() does, fast path or not", () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const cells: string[] = [];
    for (let i = 0; i < 4000; i++) {
      const x = (rand() - 0.5) * 10 ** Math.floor(rand() * 12 - 6);
      const forms = [x.toFixed(4), String(x), x.toExponential(3), x.toPrecision(17), `+${Math.abs(x).toFixed(2)}`, `.${String(i).padStart(3, "0")}`, `${i}.`, `${x.toExponential(2).toUpperCase()}`];
      cells.push(forms[i % forms.length]!);
    }
    cells.push("0", "-0", "1e22", "1e23", "123456789012345", "1234567890123456", "0.000000000000000000001", " 7", "7 ", "1e-400");
    const text = cells.map((c, i) => `${i},${c}\n`).join("");
    for (const type of ["float32", "float64"] as const) {
      const parsed = chunkParser(plan(2, [1], type))(enc(text));
      assert.equal(parsed.rows, cells.length);
      const want = type === "float32" ? Float32Array.from(cells, (c) => numberOfText(c, type, "c1", false)) : Float64Array.from(cells, (c) => numberOfText(c, type, "c1", false));
      for (let i = 0; i < cells.length; i++) assert.ok(Object.is(parsed.data[0]![i], want[i]), `${type} ${JSON.stringify(cells[i])}: ${parsed.data[0]![i]} != ${want[i]}`);
    }
  });

  it("cuts chunks only at record ends outside quotes and finds the header's end", () => {
    const text = 'a,b\n1,"x\ny"\n2,"p""q"\n3,"open\n';
    const b = enc(text);
    // The last line break is inside an open quoted field: the cut is before record 3.
    assert.equal(lastRecordEnd(b, b.length), text.indexOf("3,"));
    assert.equal(lastRecordEnd(b, text.indexOf("y")), text.indexOf("1,"));
    assert.equal(lastRecordEnd(enc("no break"), 8), 0);
    assert.deepEqual(headerEnd(enc('\n\r\n"a\nb",c\n1,2\n'), 0), { end: 11, lines: 4 });
    assert.equal(headerEnd(enc("a,b"), 0), undefined);
  });

  it("counts lines across quoted breaks, skips blank lines, strips CR, and keeps each row's text", () => {
    const text = 'id,"note",v\r\n\r\nb,"two\nlines",2.5\r\n\nc,"q""x",-1\n';
    const body = enc(text.slice(text.indexOf("\r\n") + 2));
    const parsed = chunkParser(plan(3, [2]))(body);
    assert.equal(parsed.rows, 2);
    assert.equal(parsed.lines, 5);
    assert.deepEqual(Array.from((parsed.data[0] as Float32Array).subarray(0, 2)), [2.5, -1]);
    const dec = new TextDecoder();
    assert.equal(dec.decode(body.subarray(parsed.starts[0], parsed.ends[0])), 'b,"two\nlines",2.5');
    const out = formatRows(body, parsed, ",m,3", [{ output: "y", element: 0, column: "y" }], { y: { dims: [2, 1], data: Float32Array.of(0.25, 0.5) } });
    assert.equal(dec.decode(out), 'b,"two\nlines",2.5,m,3,0.25\nc,"q""x",-1,m,3,0.5\n');
    // The same records through the text path's parser.
    const p = new CsvRecordParser();
    assert.deepEqual(p.pushLine('c,"q""x",-1', 1), ["c", 'q"x', "-1"]);
  });

  it("formats several outputs (int64 label, a probability per class, a missing output) as the row loop does", () => {
    const body = enc("a,1\nb,2\n");
    const parsed = chunkParser(plan(2, [1]))(body);
    const out = formatRows(
      body,
      parsed,
      ',"m,x",7',
      [
        { output: "label", element: 0, column: "label" },
        { output: "probabilities", element: 0, column: "probabilities_0" },
        { output: "probabilities", element: 1, column: "probabilities_1" },
        { output: "seq", element: -1, column: "seq" },
        { output: "absent", element: 0, column: "absent" },
      ],
      {
        label: { dims: [2], data: BigInt64Array.of(1n, 0n) },
        probabilities: { dims: [2, 2], data: Float32Array.of(0.25, 0.75, 0.5, 0.5) },
        seq: { dims: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
      },
    );
    assert.equal(new TextDecoder().decode(out), 'a,1,"m,x",7,1,0.25,0.75,1 2 3,\nb,2,"m,x",7,0,0.5,0.5,4 5 6,\n');
  });

  it("names a bad cell by line and column, or rejects it with its cells under skipBadRows", () => {
    const body = enc("a,1\nb,abc\nc,\nd,2\n");
    const stop = chunkParser(plan(2, [1]))(body);
    assert.deepEqual(stop.bad, { line: 1, column: "c1", problem: '"abc" is not a number' });
    const skip = chunkParser(plan(2, [1], "float32", true))(body);
    assert.equal(skip.rows, 2);
    assert.deepEqual(Array.from((skip.data[0] as Float32Array).subarray(0, 2)), [1, 2]);
    assert.deepEqual(
      skip.rejects.map((r) => [r.line, r.problem, r.cells]),
      [
        [1, '"abc" is not a number', ["b", "abc"]],
        [2, "is empty; a number is required", ["c", ""]],
      ],
    );
    const ints = chunkParser(plan(2, [1], "int64", true))(enc("a,3\nb,2.5\n"));
    assert.equal(ints.data[0]![0], 3n);
    assert.equal(ints.rejects[0]!.problem, "expected an integer, got 2.5");
  });

  it("stops on format faults whatever skipBadRows says", () => {
    const parse = chunkParser(plan(2, [1], "float32", true));
    assert.throws(() => parse(enc("a,1\nb,2,3\n")), (e: ChunkFormatError) => e.line === 1 && /expected 2 fields as in the header, got 3/.test(e.problem));
    assert.throws(() => parse(enc('a,1\nb,x"y\n')), (e: ChunkFormatError) => e.line === 1 && e.column === 4 && /quote inside an unquoted field/.test(e.problem));
    assert.throws(() => parse(enc('a,"1\n')), (e: ChunkFormatError) => e.line === 0 && /never closed/.test(e.problem));
  });
});
