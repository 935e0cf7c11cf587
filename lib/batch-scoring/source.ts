// Input of batch scoring, read in chunks so no file is ever held whole: CSV (RFC 4180, via
// the drift reader's record parser, line numbers kept for error messages) or Parquet (row
// ranges read with hyparquet; rows numbered from 1). Reading pauses while the consumer is
// busy: the next chunk is parsed only when asked for.

import { createReadStream } from "node:fs";
import type { ReadStream } from "node:fs";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from "hyparquet";
import { CsvFormatError, CsvRecordParser } from "../drift/csv-drift.js";
import { ValidationError } from "../errors.js";

export type FileKind = "csv" | "parquet";

/** A cell as read: text from CSV, a typed value from Parquet. */
export type Cell = string | number | bigint | boolean | Date | null | undefined;

export interface Chunk {
  /** Rows of cells in header order. */
  readonly rows: Cell[][];
  /** Per row: its 1-based CSV line (the header is line 1) or Parquet row number. */
  readonly lines: number[];
  /**
   * CSV only: per row, the record's own text when it is one physical line (undefined for a
   * record spanning lines), so a CSV output can copy it instead of re-quoting every field.
   */
  readonly raw?: Array<string | undefined>;
}

export interface Source {
  readonly header: readonly string[];
  /** Known up front for Parquet (metadata), undefined for CSV. */
  readonly rowsTotal: number | undefined;
  chunks(batchRows: number): AsyncIterable<Chunk>;
  /** CSV only: the file, for readers of its raw bytes (scoring workers) instead of chunks(). */
  readonly csvPath?: string;
  /** Releases the file when chunks() will not be read to the end (or at all). */
  close?(): void;
}

/** The format of a path by its extension (.csv / .parquet), or a ValidationError naming `field`. */
export function kindOf(path: string, field: string): FileKind {
  if (/\.csv$/i.test(path)) return "csv";
  if (/\.parquet$/i.test(path)) return "parquet";
  throw new ValidationError(field, `${JSON.stringify(path)} must end in .csv or .parquet`);
}

export async function openSource(path: string, kind: FileKind): Promise<Source> {
  return kind === "csv" ? openCsv(path) : openParquet(path);
}

async function openCsv(path: string): Promise<Source> {
  const input = createReadStream(path, { encoding: "utf8" });
  // Fail on a missing file here, not on the first chunk.
  await new Promise<void>((resolve, reject) => {
    input.once("open", () => resolve());
    input.once("error", reject);
  });
  const lines = physicalLines(input);
  const parser = new CsvRecordParser(path);
  let lineNumber = 0;
  /** Line the last record started on, and its text when it was one line. */
  let recordLine = 0;
  let recordRaw: string | undefined;
  const next = async (): Promise<string[] | null> => {
    for (;;) {
      let raw = lines.sync();
      if (raw === undefined) {
        const r = await lines.next();
        if (r === null) {
          parser.finish();
          return null;
        }
        raw = r;
      }
      lineNumber++;
      const line = lineNumber === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
      const pending = parser.pending;
      if (line.length === 0 && !pending) continue;
      // A line without quotes is its fields split at commas (what RFC 4180 parsing gives);
      // only quoted lines go through the character-by-character parser.
      if (!pending && line.indexOf('"') < 0) {
        recordLine = lineNumber;
        recordRaw = line;
        return line.split(",");
      }
      const rec = parser.pushLine(line, lineNumber);
      if (rec !== null) {
        recordLine = parser.recordLine;
        recordRaw = recordLine === lineNumber ? line : undefined;
        return rec;
      }
    }
  };
  const header = await next();
  if (header === null) {
    input.destroy();
    throw new CsvFormatError(path, 1, undefined, "file is empty; expected a header row");
  }
  const seen = new Set<string>();
  header.forEach((name, i) => {
    if (name.trim() === "") throw new CsvFormatError(path, recordLine, undefined, `header field ${i + 1} is empty`);
    if (seen.has(name)) throw new CsvFormatError(path, recordLine, undefined, `header repeats column ${JSON.stringify(name)}`);
    seen.add(name);
  });
  return {
    header,
    rowsTotal: undefined,
    csvPath: path,
    close: () => input.destroy(),
    async *chunks(batchRows: number) {
      try {
        for (;;) {
          const rows: Cell[][] = [];
          const at: number[] = [];
          const raws: Array<string | undefined> = [];
          while (rows.length < batchRows) {
            const rec = await next();
            if (rec === null) break;
            if (rec.length !== header.length) {
              throw new CsvFormatError(path, recordLine, undefined, `expected ${header.length} fields as in the header, got ${rec.length}`);
            }
            rows.push(rec);
            at.push(recordLine);
            raws.push(recordRaw);
          }
          if (rows.length > 0) yield { rows, lines: at, raw: raws };
          if (rows.length < batchRows) return;
        }
      } finally {
        input.destroy();
      }
    },
  };
}

async function openParquet(path: string): Promise<Source> {
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  const header = parquetSchema(metadata).children.map((c) => c.element.name);
  const total = Number(metadata.num_rows);
  return {
    header,
    rowsTotal: total,
    async *chunks(batchRows: number) {
      for (let start = 0; start < total; start += batchRows) {
        const end = Math.min(total, start + batchRows);
        const objects = (await parquetReadObjects({ file, metadata, rowStart: start, rowEnd: end, columns: header })) as Array<Record<string, Cell>>;
        yield { rows: objects.map((o) => header.map((h) => o[h])), lines: objects.map((_, i) => start + i + 1) };
      }
    },
  };
}

/**
 * Physical lines of a text stream (LF or CRLF), read in the stream's large chunks: `sync()`
 * returns the next line already buffered without a promise, `next()` waits for more input
 * (null at the end). Cheaper per line than node:readline's async iterator.
 */
function physicalLines(input: ReadStream): { sync(): string | undefined; next(): Promise<string | null> } {
  const it = (input as AsyncIterable<string>)[Symbol.asyncIterator]();
  let buf = "";
  let pos = 0;
  let ended = false;
  const take = (end: number): string => {
    const line = buf.slice(pos, end > pos && buf.charCodeAt(end - 1) === 13 ? end - 1 : end);
    pos = end + 1;
    return line;
  };
  const sync = (): string | undefined => {
    const nl = buf.indexOf("\n", pos);
    return nl >= 0 ? take(nl) : undefined;
  };
  return {
    sync,
    async next() {
      for (;;) {
        const line = sync();
        if (line !== undefined) return line;
        if (ended) {
          if (pos >= buf.length) return null;
          const last = take(buf.length);
          return last;
        }
        const r = await it.next();
        buf = buf.slice(pos);
        pos = 0;
        if (r.done) ended = true;
        else buf += r.value as string;
      }
    },
  };
}
