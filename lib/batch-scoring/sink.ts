// Where scored rows go: a row sink takes a header once, then rows of plain values. The CSV
// sink streams to a file with backpressure (it waits for the disk when its buffer is full)
// and writes to `<out>.partial`, renamed into place only when the run succeeds, so a failed
// or cancelled run never leaves a file that looks complete.

import { createWriteStream, type WriteStream } from "node:fs";
import fs from "node:fs/promises";
import type Database from "better-sqlite3";
import type { Statement } from "better-sqlite3";
import type { Cell } from "./source.js";

export type OutValue = string | number | bigint | boolean | null;

/** One output row: the input's cells (and, from CSV, their original text) then the added values. */
export interface OutRow {
  readonly cells: readonly Cell[];
  /** The input record's CSV text, copied as is when present. */
  readonly raw: string | undefined;
  readonly tail: readonly OutValue[];
}

export interface RowSink {
  start(header: readonly string[]): Promise<void>;
  write(rows: readonly OutRow[]): Promise<void>;
  /** CSV sinks: rows already formatted as CSV text (UTF-8, one record a line). */
  writeBytes?(bytes: Uint8Array): Promise<void>;
  /** Makes the output final (ok) or drops the partial output (not ok). */
  close(ok: boolean): Promise<void>;
}

const NEEDS_QUOTES = /[",\r\n]/;

export function csvField(v: OutValue | Cell): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  const s = v instanceof Date ? v.toISOString() : String(v);
  return NEEDS_QUOTES.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export class CsvSink implements RowSink {
  private out: WriteStream | undefined;
  private readonly partial: string;

  /** keepPartial: on failure leave `<out>.partial` with the rows written so far (server jobs). */
  constructor(
    private readonly path: string,
    private readonly keepPartial = false,
  ) {
    this.partial = `${path}.partial`;
  }

  async start(header: readonly string[]): Promise<void> {
    // A buffer of a few chunks' output, so writing a chunk rarely waits for the disk.
    this.out = createWriteStream(this.partial, { encoding: "utf8", highWaterMark: 4 << 20 });
    await new Promise<void>((resolve, reject) => {
      this.out!.once("open", () => resolve());
      this.out!.once("error", reject);
    });
    await this.put(`${header.map(csvField).join(",")}\n`);
  }

  async write(rows: readonly OutRow[]): Promise<void> {
    let text = "";
    for (const r of rows) {
      if (r.raw !== undefined) text += r.raw;
      else for (let i = 0; i < r.cells.length; i++) text += i === 0 ? csvField(r.cells[i]) : `,${csvField(r.cells[i])}`;
      for (const v of r.tail) text += `,${csvField(v)}`;
      text += "\n";
    }
    await this.put(text);
  }

  async writeBytes(bytes: Uint8Array): Promise<void> {
    await this.put(bytes);
  }

  private put(text: string | Uint8Array): Promise<void> {
    return writeRespectingDrain(this.out!, text);
  }

  async close(ok: boolean): Promise<void> {
    const out = this.out;
    if (out) await new Promise<void>((resolve) => out.end(() => resolve()));
    if (ok) await fs.rename(this.partial, this.path);
    else if (!this.keepPartial) await fs.rm(this.partial, { force: true });
  }
}

/**
 * A new SQLite table holding the scored rows (columns untyped, so text stays text and scores
 * are REAL); each chunk is one transaction. Created at start, refused if it already exists;
 * rows written before a failure or cancel stay.
 */
export class SqliteTableSink implements RowSink {
  private insert: Statement | undefined;

  constructor(
    private readonly db: Database.Database,
    private readonly table: string,
  ) {}

  async start(header: readonly string[]): Promise<void> {
    const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
    this.db.exec(`CREATE TABLE ${q(this.table)} (${header.map(q).join(", ")})`);
    this.insert = this.db.prepare(`INSERT INTO ${q(this.table)} VALUES (${header.map(() => "?").join(", ")})`);
  }

  async write(rows: readonly OutRow[]): Promise<void> {
    const insert = this.insert!;
    const sql = (v: OutValue | Cell) => (v === undefined ? null : typeof v === "boolean" ? Number(v) : v instanceof Date ? v.toISOString() : v);
    this.db.transaction(() => {
      for (const r of rows) insert.run([...r.cells.map(sql), ...r.tail.map(sql)]);
    })();
  }

  async close(): Promise<void> {}
}

/** Writes `chunk`; when the stream's buffer is full, resolves on "drain" (rejects on "error"). */
export function writeRespectingDrain(out: NodeJS.WritableStream, chunk: string | Uint8Array): Promise<void> {
  if (out.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    out.once("error", onError);
    out.once("drain", () => {
      out.off("error", onError);
      resolve();
    });
  });
}
