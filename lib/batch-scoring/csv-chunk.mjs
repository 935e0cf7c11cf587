// CSV chunks as bytes, for the scoring workers: find where whole records end (so a file can
// be cut into chunks on the main thread without parsing it), parse a chunk's model columns
// straight from its bytes into input tensors, and format the scored rows as output bytes.
// Plain JS (worker threads run without the TS loader); types in csv-chunk.d.mts.

const COMMA = 44;
const LF = 10;
const CR = 13;
const QUOTE = 34;

/**
 * The offset just past the last complete record of `bytes[0, end)` (which starts at a record
 * boundary), or 0 if none ends there. A line break ends a record unless it is inside quotes;
 * quotes come in pairs (`""` escapes count twice), so it is a boundary when an even number
 * of quotes precede it. Counting quotes with indexOf keeps this cheap for quote-free files.
 */
export function lastRecordEnd(bytes, end) {
  let nl = end > 0 ? bytes.lastIndexOf(LF, end - 1) : -1;
  if (nl < 0) return 0;
  // Quote positions before nl, found by the native search.
  let quotes = 0;
  let lastQuote = -1;
  for (let q = bytes.indexOf(QUOTE); q >= 0 && q < nl; q = bytes.indexOf(QUOTE, q + 1)) {
    quotes++;
    lastQuote = q;
  }
  while ((quotes & 1) === 1) {
    // nl is inside the quoted field opened at or before lastQuote: try the break before it.
    nl = lastQuote > 0 ? bytes.lastIndexOf(LF, lastQuote - 1) : -1;
    if (nl < 0) return 0;
    quotes = 0;
    lastQuote = -1;
    for (let q = bytes.indexOf(QUOTE); q >= 0 && q < nl; q = bytes.indexOf(QUOTE, q + 1)) {
      quotes++;
      lastQuote = q;
    }
  }
  return nl + 1;
}

/**
 * The end of the header record at or after `from` (past its line break) and the line count
 * it and any blank lines before it span, or undefined if `bytes` does not hold all of it.
 */
export function headerEnd(bytes, from) {
  let p = from;
  let lines = 0;
  let quoted = false;
  let started = false;
  for (; p < bytes.length; p++) {
    const b = bytes[p];
    if (b === QUOTE) quoted = !quoted;
    if (b === LF) {
      lines++;
      if (!quoted && started) return { end: p + 1, lines };
      continue;
    }
    if (b !== CR) started = true;
  }
  return undefined;
}

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const POW10 = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/** A bad cell: the message matches lib/batch-scoring/score.ts's BadRowError problems. */
class CellError extends Error {
  constructor(column, problem) {
    super(problem);
    this.column = column;
    this.problem = problem;
  }
}

/** The number a text cell holds, as score.ts reads it (same forms, same errors). */
export function numberOfText(cell, type, column, allowNonFinite) {
  let n = +cell;
  const c1 = cell.charCodeAt(1);
  if (n !== n || cell.length === 0 || c1 === 120 || c1 === 88 || c1 === 111 || c1 === 79 || c1 === 98 || c1 === 66 || cell.charCodeAt(0) <= 32) {
    const t = cell.trim();
    if (type === "bool" && /^(true|false)$/i.test(t)) return /^true$/i.test(t) ? 1 : 0;
    if (DECIMAL.test(t)) n = Number(t);
    else if (/^[+-]?(inf|infinity)$/i.test(t)) n = t.startsWith("-") ? -Infinity : Infinity;
    else if (/^[+-]?nan$/i.test(t)) n = NaN;
    else throw new CellError(column, t === "" ? "is empty; a number is required" : `${JSON.stringify(cell)} is not a number`);
  }
  if (!allowNonFinite && !Number.isFinite(n) && type.startsWith("float")) throw new CellError(column, `${n} is not finite`);
  if ((type === "int32" || type === "int64") && !Number.isInteger(n)) throw new CellError(column, `expected an integer, got ${n}`);
  return n;
}

function allocate(type, n) {
  switch (type) {
    case "float32":
      return new Float32Array(n);
    case "float64":
      return new Float64Array(n);
    case "int32":
      return new Int32Array(n);
    case "int64":
      return new BigInt64Array(n);
    default:
      return new Uint8Array(n);
  }
}

/** A CSV format fault (not a bad value): it stops the run whatever --skip-bad-rows says. */
export class ChunkFormatError extends Error {
  constructor(line, column, problem) {
    super(problem);
    this.line = line;
    this.column = column;
    this.problem = problem;
  }
}

/** The fields of one record `bytes[s, e)` as text (for reject rows; rare, so simple). */
function fieldsOf(text) {
  const out = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      out.push(field);
      field = "";
    } else field += ch;
  }
  out.push(field);
  return out;
}

/**
 * Creates a parser for one file's layout. `plan.targets[f]` lists where file field f goes:
 * pairs of input index and column index. Bytes of a plain decimal with at most 15
 * significant digits and a power of ten within ±22 become a double exactly as Number()
 * would (one correctly rounded multiply or divide of two exact doubles); anything else is
 * decoded and read by numberOfText, so results and errors never differ from the text path.
 */
export function chunkParser(plan) {
  const { fields, inputs, allowNonFinite, skipBadRows } = plan;
  const targets = Array.from({ length: fields }, () => null);
  inputs.forEach((inp, k) =>
    inp.columns.forEach((col, c) => {
      (targets[col.file] ??= []).push(k, c);
    }),
  );
  const names = inputs.map((inp) => inp.columns.map((c) => c.name));
  const types = inputs.map((inp) => inp.type);
  // Fields read in one pass while scanning: every place they go takes a float.
  const floatOnly = targets.map((t) => t !== null && t.every((x, j) => j % 2 === 1 || inputs[x].type === "float32" || inputs[x].type === "float64"));
  const widths = inputs.map((inp) => inp.columns.length);
  const decoder = new TextDecoder();
  /** Arrays of finished chunks, reused: fewer large allocations, less GC in the workers. */
  const spare = [];

  /**
   * Parses a chunk: `bytes` holds whole records (the last may lack its line break only at
   * the end of the file). Returns the input arrays for the good rows, each good row's byte
   * range, and bad rows (with skipBadRows; else the first bad row ends the parse).
   */
  function parse(bytes) {
    const n = bytes.length;
    let cap = 1;
    for (let i = bytes.indexOf(LF); i >= 0; i = bytes.indexOf(LF, i + 1)) cap++;
    // Sized for the usual chunk (one record a line, ending in a line break) so no copy is needed.
    if (n > 0 && bytes[n - 1] === LF && cap > 1) cap--;
    let arrays;
    for (let i = 0; i < spare.length; i++) {
      if (spare[i].cap >= cap) {
        arrays = spare[i];
        spare.splice(i, 1);
        break;
      }
    }
    if (arrays === undefined) {
      const size = Math.ceil(cap * 1.25);
      arrays = { cap: size, data: inputs.map((_, k) => allocate(types[k], size * widths[k])), starts: new Int32Array(size), ends: new Int32Array(size) };
    }
    const { data, starts, ends } = arrays;
    const rejects = [];
    let bad;
    let g = 0;
    let line = 0;
    /** Offset where the current line starts, for error columns. */
    let lineStart = 0;
    let p = 0;
    const slow = (s, e) => decoder.decode(bytes.subarray(s, e));
    rows: while (p < n) {
      let b = bytes[p];
      // Blank lines are skipped, as the text reader does.
      if (b === LF) {
        p++;
        line++;
        lineStart = p;
        continue;
      }
      if (b === CR && (p + 1 === n || bytes[p + 1] === LF)) {
        p += 2;
        line++;
        lineStart = p;
        continue;
      }
      const start = p;
      const startLine = line;
      let f = 0;
      let cellError;
      for (;;) {
        let fs = p;
        let fe;
        let escaped = false;
        if (bytes[p] === QUOTE) {
          const quoteLine = line;
          const quoteCol = p - lineStart + 1;
          fs = ++p;
          for (;;) {
            const q = bytes.indexOf(QUOTE, p);
            if (q < 0) throw new ChunkFormatError(quoteLine, quoteCol, "quoted field is never closed");
            for (let i = bytes.indexOf(LF, p); i >= 0 && i < q; i = bytes.indexOf(LF, i + 1)) {
              line++;
              lineStart = i + 1;
            }
            if (bytes[q + 1] === QUOTE) {
              escaped = true;
              p = q + 2;
              continue;
            }
            fe = q;
            p = q + 1;
            break;
          }
          b = p < n ? bytes[p] : LF;
          if (b === CR && (p + 1 === n || bytes[p + 1] === LF)) b = bytes[++p] ?? LF;
          if (b !== COMMA && b !== LF) throw new ChunkFormatError(line, p - lineStart + 1, `unexpected ${JSON.stringify(String.fromCharCode(b))} after a closing quote`);
        } else {
          if (f < fields && floatOnly[f] && cellError === undefined) {
            // The usual cell: a plain decimal right up to the delimiter, read in one pass.
            const v = scanDecimal(bytes, p, n);
            const e = scanEnd;
            b = e < n ? bytes[e] : LF;
            if (v === v && (b === COMMA || b === LF || (b === CR && (e + 1 === n || bytes[e + 1] === LF)))) {
              const t = targets[f];
              for (let j = 0; j < t.length; j += 2) data[t[j]][g * widths[t[j]] + t[j + 1]] = v;
              p = b === CR ? e + 1 : e;
              f++;
              if (p >= n || bytes[p] === LF) break;
              p++; // the comma
              continue;
            }
          }
          while (p < n) {
            b = bytes[p];
            if (b === COMMA || b === LF) break;
            if (b === QUOTE) throw new ChunkFormatError(line, p - lineStart + 1, "quote inside an unquoted field (quote the whole field and double the quote)");
            p++;
          }
          fe = p > fs && bytes[p - 1] === CR && (p === n || bytes[p] === LF) ? p - 1 : p;
        }
        const t = f < fields ? targets[f] : null;
        if (t !== null && cellError === undefined) {
          let v = fastDecimal(bytes, fs, fe);
          for (let j = 0; j < t.length; j += 2) {
            const k = t[j];
            const c = t[j + 1];
            const type = types[k];
            try {
              if (v !== v || (type !== "float32" && type !== "float64")) {
                const cell = slow(fs, fe);
                v = numberOfText(escaped ? cell.replaceAll('""', '"') : cell, type, names[k][c], allowNonFinite);
              }
              const at = g * widths[k] + c;
              if (type === "int64") data[k][at] = BigInt(v);
              else if (type === "bool") data[k][at] = v !== 0 ? 1 : 0;
              else data[k][at] = v;
            } catch (err) {
              if (!(err instanceof CellError)) throw err;
              cellError = err;
              break;
            }
          }
        }
        f++;
        if (p >= n || bytes[p] === LF) break;
        p++; // the comma
      }
      const end = p > start && bytes[p - 1] === CR ? p - 1 : p;
      if (p < n) {
        p++;
        line++;
        lineStart = p;
      }
      if (f !== fields) throw new ChunkFormatError(startLine, undefined, `expected ${fields} fields as in the header, got ${f}`);
      if (cellError !== undefined) {
        const why = { line: startLine, column: cellError.column, problem: cellError.problem };
        if (!skipBadRows) {
          bad = why;
          break rows;
        }
        rejects.push({ ...why, cells: fieldsOf(decoder.decode(bytes.subarray(start, end))) });
        continue;
      }
      starts[g] = start;
      ends[g] = end;
      g++;
    }
    return { rows: g, data, starts, ends, rejects, bad, lines: line, arrays };
  }
  /** Hands a parsed chunk's arrays back for reuse (after its tensors have run). */
  parse.release = (parsed) => {
    if (spare.length < 4) spare.push(parsed.arrays);
  };
  return parse;
}

/** A plain decimal's value from bytes (see chunkParser), or NaN to say "use the text path". */
function fastDecimal(bytes, s, e) {
  const v = scanDecimal(bytes, s, e);
  return scanEnd === e ? v : NaN;
}

/** Where the last scanDecimal stopped. */
let scanEnd = 0;

/** Reads a plain decimal starting at s (stopping before e or the first other byte); NaN if none or not exact. */
function scanDecimal(bytes, s, e) {
  let p = s;
  let neg = false;
  let b = bytes[p];
  if (b === 45) {
    neg = true;
    p++;
  } else if (b === 43) p++;
  let m = 0;
  let sig = 0;
  let exp = 0;
  let digits = 0;
  for (; p < e; p++) {
    const d = bytes[p] - 48;
    if (d < 0 || d > 9) break;
    digits++;
    if (m !== 0 || d !== 0) {
      m = m * 10 + d;
      sig++;
    }
  }
  if (p < e && bytes[p] === 46) {
    for (p++; p < e; p++) {
      const d = bytes[p] - 48;
      if (d < 0 || d > 9) break;
      digits++;
      exp--;
      if (m !== 0 || d !== 0) {
        m = m * 10 + d;
        sig++;
      }
    }
  }
  if (digits === 0 || sig > 15) return NaN;
  if (p < e && (bytes[p] | 32) === 101) {
    p++;
    let eneg = false;
    if (bytes[p] === 45) {
      eneg = true;
      p++;
    } else if (bytes[p] === 43) p++;
    let x = 0;
    let xd = 0;
    for (; p < e; p++) {
      const d = bytes[p] - 48;
      if (d < 0 || d > 9) break;
      if (x < 1000) x = x * 10 + d;
      xd++;
    }
    if (xd === 0) return NaN;
    exp += eneg ? -x : x;
  }
  scanEnd = p;
  if (exp > 22 || exp < -22) return NaN;
  const v = exp >= 0 ? m * POW10[exp] : m / POW10[-exp];
  return neg ? -v : v;
}

/** Appends ASCII/Unicode text and bytes into a growing buffer. */
export class ByteWriter {
  constructor(size) {
    this.buf = Buffer.allocUnsafeSlow(Math.max(1024, size));
    this.at = 0;
  }
  ensure(extra) {
    if (this.at + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.at + extra));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }
  bytes(src, s, e) {
    this.ensure(e - s);
    src.copy(this.buf, this.at, s, e);
    this.at += e - s;
  }
  ascii(str) {
    const len = str.length;
    this.ensure(len);
    const buf = this.buf;
    let at = this.at;
    for (let i = 0; i < len; i++) buf[at++] = str.charCodeAt(i);
    this.at = at;
  }
  text(str) {
    this.ensure(Buffer.byteLength(str));
    this.at += this.buf.write(str, this.at);
  }
  byte(b) {
    this.ensure(1);
    this.buf[this.at++] = b;
  }
  /** The written bytes as a Uint8Array owning its whole buffer (so it can be transferred). */
  take() {
    return new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.at);
  }
}

/**
 * The output bytes of a parsed chunk: each good row's own text, then `prefix` (model name
 * and version, already CSV text) and one field per output column, as score.ts writes them.
 * `outputs[name]` is { dims, data } for `rows` rows.
 */
export function formatRows(bytes, parsed, prefix, outCols, outputs) {
  const rows = parsed.rows;
  const cols = outCols.map((c) => {
    const t = outputs[c.output];
    if (!t) return { c, data: undefined, per: 0 };
    let per = 1;
    for (let i = 1; i < t.dims.length; i++) per *= Number(t.dims[i]);
    return { c, data: t.data, per: Number(t.dims[0]) === rows ? per : 0 };
  });
  const { starts, ends } = parsed;
  const one = cols.length === 1 && cols[0].data !== undefined && cols[0].c.element >= 0 ? cols[0] : undefined;
  if (one !== undefined) {
    // The usual shape (one score a row), written straight into a buffer sized for it: a
    // number's text is at most 25 characters (e.g. -1.2345678901234567e-308), a bigint's 20.
    const pre = new TextEncoder().encode(prefix);
    const tail = pre.length + 1 + 25 + 1;
    let size = 0;
    for (let r = 0; r < rows; r++) size += ends[r] - starts[r] + tail;
    // Not zero-filled: every byte up to the returned length is written below.
    const out = Buffer.allocUnsafeSlow(size);
    const { data, per } = one;
    const el = one.c.element;
    const big = typeof data[0] === "bigint";
    let at = 0;
    for (let r = 0; r < rows; r++) {
      const s = starts[r];
      const e = ends[r];
      if (e - s < 96) for (let i = s; i < e; i++) out[at++] = bytes[i];
      else {
        out.set(bytes.subarray(s, e), at);
        at += e - s;
      }
      for (let i = 0; i < pre.length; i++) out[at++] = pre[i];
      out[at++] = COMMA;
      const x = data[r * per + el];
      const str = big ? String(x) : String(Number(x));
      for (let i = 0; i < str.length; i++) out[at++] = str.charCodeAt(i);
      out[at++] = LF;
    }
    return new Uint8Array(out.buffer, 0, at);
  }
  const src = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const w = new ByteWriter(bytes.length + rows * (prefix.length + 1 + outCols.length * 24));
  for (let r = 0; r < rows; r++) {
    w.bytes(src, starts[r], ends[r]);
    w.text(prefix);
    {
      for (const { c, data, per } of cols) {
        w.byte(COMMA);
        if (data === undefined) continue;
        if (c.element < 0) w.text(Array.from(data.subarray(r * per, (r + 1) * per), (x) => String(x)).join(" "));
        else {
          const x = data[r * per + c.element];
          w.ascii(String(typeof x === "bigint" ? x : Number(x)));
        }
      }
    }
    w.byte(LF);
  }
  return w.take();
}
