// A minimal streaming Parquet writer for batch scoring output (no parquet-writing package is
// a dependency): every column REQUIRED, PLAIN-encoded, uncompressed, one data page per
// column per row group, row groups flushed as rows arrive so memory stays bounded. Input
// columns are written as UTF8 text; added values by their JS type (number → DOUBLE,
// bigint → INT64, text → UTF8). The footer is Thrift compact protocol, as the format
// specifies (github.com/apache/parquet-format, parquet.thrift).

import { createWriteStream, type WriteStream } from "node:fs";
import fs from "node:fs/promises";
import { writeRespectingDrain, type OutRow, type OutValue, type RowSink } from "./sink.js";
import type { Cell } from "./source.js";

const ROW_GROUP_ROWS = 65_536;
const enum PType {
  INT64 = 2,
  DOUBLE = 5,
  BYTE_ARRAY = 6,
}

/** Thrift compact protocol, just what FileMetaData and PageHeader need. */
class Compact {
  private bytes: number[] = [];
  private last: number[] = [0];

  private varint(n: bigint): void {
    let v = n;
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }
  private zigzag(n: bigint): void {
    this.varint(n >= 0n ? n << 1n : (-n << 1n) - 1n);
  }
  private field(id: number, type: number): void {
    const delta = id - this.last[this.last.length - 1]!;
    if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | type);
    else {
      this.bytes.push(type);
      this.zigzag(BigInt(id));
    }
    this.last[this.last.length - 1] = id;
  }
  i32(id: number, v: number): this {
    this.field(id, 5);
    this.zigzag(BigInt(v));
    return this;
  }
  i64(id: number, v: number | bigint): this {
    this.field(id, 6);
    this.zigzag(BigInt(v));
    return this;
  }
  string(id: number, s: string): this {
    this.field(id, 8);
    const b = Buffer.from(s, "utf8");
    this.varint(BigInt(b.length));
    for (const x of b) this.bytes.push(x);
    return this;
  }
  struct(id: number, body: (c: this) => void): this {
    this.field(id, 12);
    this.last.push(0);
    body(this);
    this.bytes.push(0);
    this.last.pop();
    return this;
  }
  /** A list of i32 (type 5), strings (8) or structs (12). */
  list<T>(id: number, elemType: 5 | 8 | 12, items: readonly T[], each: (c: this, item: T) => void): this {
    this.field(id, 9);
    if (items.length < 15) this.bytes.push((items.length << 4) | elemType);
    else {
      this.bytes.push(0xf0 | elemType);
      this.varint(BigInt(items.length));
    }
    for (const item of items) {
      if (elemType === 12) {
        this.last.push(0);
        each(this, item);
        this.bytes.push(0);
        this.last.pop();
      } else each(this, item);
    }
    return this;
  }
  /** Raw list elements (inside `list`). */
  elemI32(v: number): void {
    this.zigzag(BigInt(v));
  }
  elemString(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.varint(BigInt(b.length));
    for (const x of b) this.bytes.push(x);
  }
  end(): Buffer {
    this.bytes.push(0);
    return Buffer.from(this.bytes);
  }
}

interface ChunkMeta {
  readonly offset: number;
  readonly size: number;
}

const text = (v: OutValue | Cell): string => (v === null || v === undefined ? "" : v instanceof Date ? v.toISOString() : String(v));

export class ParquetSink implements RowSink {
  private out: WriteStream | undefined;
  private readonly partial: string;
  private header: readonly string[] = [];
  private cellColumns = 0;
  private types: PType[] | undefined;
  private buffered: OutRow[] = [];
  private offset = 0;
  private rows = 0;
  private readonly groups: Array<{ rows: number; chunks: ChunkMeta[] }> = [];

  constructor(
    private readonly path: string,
    private readonly keepPartial = false,
  ) {
    this.partial = `${path}.partial`;
  }

  async start(header: readonly string[]): Promise<void> {
    this.header = header;
    this.out = createWriteStream(this.partial);
    await new Promise<void>((resolve, reject) => {
      this.out!.once("open", () => resolve());
      this.out!.once("error", reject);
    });
    await this.put(Buffer.from("PAR1"));
  }

  async write(rows: readonly OutRow[]): Promise<void> {
    for (const r of rows) this.buffered.push(r);
    if (this.buffered.length >= ROW_GROUP_ROWS) await this.flush();
  }

  private async flush(): Promise<void> {
    const rows = this.buffered;
    if (rows.length === 0) return;
    this.buffered = [];
    if (!this.types) {
      const first = rows[0]!;
      this.cellColumns = first.cells.length;
      this.types = this.header.map((_, c) => {
        if (c < this.cellColumns) return PType.BYTE_ARRAY;
        const v = first.tail[c - this.cellColumns];
        return typeof v === "number" ? PType.DOUBLE : typeof v === "bigint" ? PType.INT64 : PType.BYTE_ARRAY;
      });
    }
    const chunks: ChunkMeta[] = [];
    for (let c = 0; c < this.header.length; c++) {
      const type = this.types[c]!;
      const value = (r: OutRow) => (c < this.cellColumns ? r.cells[c] : r.tail[c - this.cellColumns]);
      let data: Buffer;
      if (type === PType.BYTE_ARRAY) {
        const parts: Buffer[] = [];
        for (const r of rows) {
          const b = Buffer.from(text(value(r)), "utf8");
          const len = Buffer.alloc(4);
          len.writeUInt32LE(b.length);
          parts.push(len, b);
        }
        data = Buffer.concat(parts);
      } else {
        data = Buffer.alloc(rows.length * 8);
        rows.forEach((r, i) => {
          const v = value(r);
          if (type === PType.DOUBLE) data.writeDoubleLE(typeof v === "number" ? v : Number(v ?? NaN), i * 8);
          else data.writeBigInt64LE(typeof v === "bigint" ? v : BigInt(Math.trunc(Number(v ?? 0))), i * 8);
        });
      }
      const page = new Compact()
        .i32(1, 0)
        .i32(2, data.length)
        .i32(3, data.length)
        .struct(5, (h) => h.i32(1, rows.length).i32(2, 0).i32(3, 3).i32(4, 3))
        .end();
      chunks.push({ offset: this.offset, size: page.length + data.length });
      await this.put(page);
      await this.put(data);
    }
    this.groups.push({ rows: rows.length, chunks });
    this.rows += rows.length;
  }

  private put(b: Buffer): Promise<void> {
    this.offset += b.length;
    return writeRespectingDrain(this.out!, b);
  }

  async close(ok: boolean): Promise<void> {
    const out = this.out;
    if (!out) return;
    if (ok) {
      await this.flush();
      const types = this.types ?? this.header.map(() => PType.BYTE_ARRAY);
      const footer = new Compact()
        .i32(1, 1)
        .list(2, 12, [-1, ...this.header.map((_, i) => i)], (c, i) => {
          if (i < 0) c.string(4, "schema").i32(5, this.header.length);
          else {
            c.i32(1, types[i]!).i32(3, 0).string(4, this.header[i]!);
            if (types[i] === PType.BYTE_ARRAY) c.i32(6, 0);
          }
        })
        .i64(3, this.rows)
        .list(4, 12, this.groups, (c, g) => {
          c.list(1, 12, g.chunks, (cc, ch) => {
            const i = g.chunks.indexOf(ch);
            cc.i64(2, ch.offset).struct(3, (m) =>
              m
                .i32(1, types[i]!)
                .list(2, 5, [0], (l, e) => l.elemI32(e))
                .list(3, 8, [this.header[i]!], (l, e) => l.elemString(e))
                .i32(4, 0)
                .i64(5, g.rows)
                .i64(6, ch.size)
                .i64(7, ch.size)
                .i64(9, ch.offset),
            );
          })
            .i64(2, g.chunks.reduce((n, ch) => n + ch.size, 0))
            .i64(3, g.rows);
        })
        .string(6, "mlmesh score-batch")
        .end();
      const len = Buffer.alloc(4);
      len.writeUInt32LE(footer.length);
      await this.put(footer);
      await this.put(len);
      await this.put(Buffer.from("PAR1"));
    }
    await new Promise<void>((resolve) => out.end(() => resolve()));
    if (ok) await fs.rename(this.partial, this.path);
    else if (!this.keepPartial) await fs.rm(this.partial, { force: true });
  }
}
