// `mlmesh features apply|list|get|ingest`: thin clients of the feature service. Definitions
// come from a JSON file (one view or an array) in the short shape of issue #5; `ingest`
// streams a CSV or Parquet file to IngestFeatures in chunks (never the whole file in
// memory); `materialize` runs an offline -> online job and waits for it; results
// go to stdout as a table or --json, errors to stderr with a meaningful exit code.

import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { ApplyOutcome, FeatureStatus, MaterializationState, type FeatureRowSchema, type FeatureView, type FeatureViewSchema } from "../gen/mlmesh/features/v1/features_resources_pb.js";
import { IngestFeaturesRequestSchema, type IngestFeaturesRequest } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { ValueType, type Value, type ValueSchema } from "../gen/mlmesh/types/v1/types_pb.js";
import type { Config } from "../lib/config.js";
import { CsvFormatError, CsvRecordParser } from "../lib/drift/csv-drift.js";
import { codeName } from "../lib/errors.js";
import { createMeshClients } from "../lib/mesh-clients.js";
import { EXIT, printError, printJson, printTable, UsageError } from "./output.js";

const USAGE = `Usage:
  mlmesh features apply FILE.json [--validate-only] [--reason TEXT] [--json]
  mlmesh features list [--prefix P] [--json]
  mlmesh features get REF[,REF...] --entity KEY=VALUE[,KEY=VALUE] [--entity ...] [--json]
  mlmesh features ingest VIEW FILE.csv|FILE.parquet [--batch N] [--request-id ID] [--offline-only] [--json]
      columns: the view's entity keys, event_ts (RFC 3339 or epoch ms; in Parquet also a
      timestamp), feature columns; Parquet is read one row group at a time
  mlmesh features materialize [VIEW ...] [--start T] [--end T] [--incremental] [--no-wait] [--json]
      copy offline rows to the online store (T: RFC 3339 or epoch ms); waits for the job
  mlmesh features history --entities E.csv --features REF[,REF...] --out OUT.csv [--json]
      E.csv columns: entity keys and event_ts; OUT.csv: those, then one column per ref`;

const TYPES: Record<string, ValueType> = {
  float32: ValueType.FLOAT32,
  float: ValueType.FLOAT32,
  float64: ValueType.FLOAT64,
  double: ValueType.FLOAT64,
  int64: ValueType.INT64,
  int: ValueType.INT64,
  string: ValueType.STRING,
  bool: ValueType.BOOL,
  float_vector: ValueType.FLOAT_VECTOR,
};

type ViewInit = MessageInitShape<typeof FeatureViewSchema>;

function typeOf(raw: unknown, where: string): ValueType {
  if (raw === undefined) return ValueType.UNSPECIFIED;
  const t = TYPES[String(raw).toLowerCase()];
  if (t === undefined) throw new UsageError(`${where}: unknown type ${JSON.stringify(raw)}; use one of ${Object.keys(TYPES).join(", ")}`);
  return t;
}

/** "7d", "12h", "30m", "45s", "500ms" or a number of seconds. */
export function parseDuration(raw: unknown, where: string): { seconds: bigint; nanos: number } | undefined {
  if (raw === undefined || raw === null || raw === "" || raw === 0) return undefined;
  const m = typeof raw === "number" ? [String(raw), String(raw), "s"] : /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(String(raw).trim());
  if (!m) throw new UsageError(`${where}: ${JSON.stringify(raw)} is not a duration like 7d, 12h, 30m, 45s`);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
  const ms = Math.round(Number(m[1]) * unit[m[2]!]!);
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

type Obj = Record<string, unknown>;
const arr = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** The file's short shape -> FeatureView. Unknown keys are an error, as in the RPC. */
export function viewFromFile(raw: Obj, i: number): ViewInit {
  const at = `view ${i} (${String(raw.name ?? "?")})`;
  const known = new Set(["name", "entities", "features", "ttl", "description", "owner", "labels", "on_demand_features", "request_fields"]);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw new UsageError(`${at}: unknown key ${JSON.stringify(k)}; allowed: ${[...known].join(", ")}`);
  return {
    name: String(raw.name ?? ""),
    entities: arr(raw.entities).map((e, j) =>
      typeof e === "string" ? { name: e } : { name: String((e as Obj).name), type: typeOf((e as Obj).type, `${at} entities[${j}]`), description: String((e as Obj).description ?? "") },
    ),
    features: arr(raw.features).map((f, j) => {
      const o = f as Obj;
      return {
        name: String(o.name ?? ""),
        type: typeOf(o.type, `${at} features[${j}]`),
        vectorDimension: Number(o.vector_dimension ?? 0),
        pii: o.pii === true,
        description: String(o.description ?? ""),
        labels: (o.labels ?? {}) as Record<string, string>,
      };
    }),
    ttl: parseDuration(raw.ttl, `${at} ttl`),
    description: String(raw.description ?? ""),
    owner: String(raw.owner ?? ""),
    labels: (raw.labels ?? {}) as Record<string, string>,
    requestFields: arr(raw.request_fields).map((r, j) => {
      const o = r as Obj;
      return { name: String(o.name ?? ""), type: typeOf(o.type, `${at} request_fields[${j}]`), required: o.required === true, description: String(o.description ?? "") };
    }),
    onDemandFeatures: arr(raw.on_demand_features).map((d, j) => {
      const o = d as Obj;
      return {
        name: String(o.name ?? ""),
        transform: String(o.transform ?? ""),
        // "view:feature" is a stored feature; {"request_field": "x"} a request field.
        inputs: arr(o.inputs).map((input) =>
          typeof input === "string"
            ? { source: { case: "featureRef" as const, value: input } }
            : { source: { case: "requestField" as const, value: String((input as Obj).request_field) } },
        ),
        params: (o.params ?? {}) as never,
        type: typeOf(o.type, `${at} on_demand_features[${j}]`),
        pii: o.pii === true,
        description: String(o.description ?? ""),
      };
    }),
  };
}

function formatValue(v: Value | undefined): string {
  const k = v?.kind;
  if (!k || k.case === undefined) return "";
  if (k.case === "floatVectorValue") return `[${k.value.values.join(" ")}]`;
  return String(k.value);
}

// ---------------------------------------------------------------- ingest

type ValueInit = MessageInitShape<typeof ValueSchema>;
type RowInit = MessageInitShape<typeof FeatureRowSchema>;
type IngestInit = MessageInitShape<typeof IngestFeaturesRequestSchema>;

const INT = /^[+-]?\d{1,19}$/;
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;
const SPECIAL_FLOATS: Record<string, number> = { nan: NaN, inf: Infinity, "+inf": Infinity, "-inf": -Infinity, infinity: Infinity, "+infinity": Infinity, "-infinity": -Infinity };

/** A cell that cannot be converted: the caller names file and line. */
class CellError extends Error {}

function parseFloatCell(text: string, type: string): number {
  const t = text.trim();
  if (DECIMAL.test(t)) return Number(t);
  const special = SPECIAL_FLOATS[t.toLowerCase()];
  if (special !== undefined) return special;
  throw new CellError(`expected ${type}, got ${JSON.stringify(text.slice(0, 60))}`);
}

function parseIntCell(text: string): bigint {
  const t = text.trim();
  if (!INT.test(t)) throw new CellError(`expected int64, got ${JSON.stringify(text.slice(0, 60))}`);
  const b = BigInt(t);
  if (b < -(2n ** 63n) || b > 2n ** 63n - 1n) throw new CellError("out of int64 range");
  return b;
}

/** A converter of one CSV cell to a Value of the declared type; an empty cell is NULL. */
function cellConverter(type: ValueType): (text: string) => ValueInit {
  switch (type) {
    case ValueType.FLOAT32:
      return (t) => (t === "" ? {} : { kind: { case: "floatValue", value: parseFloatCell(t, "float32") } });
    case ValueType.FLOAT64:
      return (t) => (t === "" ? {} : { kind: { case: "doubleValue", value: parseFloatCell(t, "float64") } });
    case ValueType.INT64:
      return (t) => (t === "" ? {} : { kind: { case: "int64Value", value: parseIntCell(t) } });
    case ValueType.BOOL:
      return (t) => {
        if (t === "") return {};
        const l = t.trim().toLowerCase();
        if (l === "true" || l === "1") return { kind: { case: "boolValue", value: true } };
        if (l === "false" || l === "0") return { kind: { case: "boolValue", value: false } };
        throw new CellError(`expected bool (true/false/1/0), got ${JSON.stringify(t.slice(0, 60))}`);
      };
    case ValueType.FLOAT_VECTOR:
      return (t) => {
        if (t === "") return {};
        const inner = t.trim().replace(/^\[/, "").replace(/\]$/, "").trim();
        const values = inner === "" ? [] : inner.split(/[\s,;]+/).map((x) => parseFloatCell(x, "float vector element"));
        return { kind: { case: "floatVectorValue", value: { values } } };
      };
    default:
      return (t) => ({ kind: { case: "stringValue", value: t } });
  }
}

const EPOCH_MS = /^-?\d{1,16}$/;

/** `event_ts` in epoch milliseconds: RFC 3339 or epoch milliseconds. */
function parseEventMs(text: string): number {
  const t = text.trim();
  let ms: number;
  if (EPOCH_MS.test(t)) ms = Number(t);
  else if (RFC3339.test(t)) ms = Date.parse(t.replace(" ", "T"));
  else throw new CellError(`expected RFC 3339 or epoch milliseconds, got ${JSON.stringify(text.slice(0, 60))}`);
  if (!Number.isFinite(ms)) throw new CellError(`not a valid time: ${JSON.stringify(text.slice(0, 60))}`);
  return ms;
}

/** `event_ts`: RFC 3339 or epoch milliseconds. */
export function parseEventTs(text: string): { seconds: bigint; nanos: number } {
  const ms = parseEventMs(text);
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1e6 };
}

/**
 * A writer of one CSV cell straight into the chunk's protobuf bytes (no Value object per
 * cell): the same checks and the same bytes as cellConverter + ChunkEncoder.row.
 */
function cellWriter(type: ValueType): (enc: ChunkEncoder, text: string) => void {
  switch (type) {
    case ValueType.FLOAT64:
      return (enc, t) => (t === "" ? enc.nullValue() : enc.doubleValue(parseFloatCell(t, "float64")));
    case ValueType.FLOAT32:
      return (enc, t) => (t === "" ? enc.nullValue() : enc.floatValue(parseFloatCell(t, "float32")));
    default: {
      const conv = cellConverter(type);
      return (enc, t) => enc.value(conv(t));
    }
  }
}

/** How each CSV column maps to a row, from the file's header and the view. */
export function ingestPlan(view: FeatureView, header: readonly string[], file: string) {
  const keyNames = new Set(view.entities.map((e) => e.name));
  const features = new Map(view.features.map((f) => [f.name, f]));
  const ts = header.indexOf("event_ts");
  if (ts < 0) throw new CsvFormatError(file, 1, undefined, "the header has no event_ts column");
  for (const e of view.entities) if (!header.includes(e.name)) throw new CsvFormatError(file, 1, undefined, `the header has no column for entity key ${e.name} of view ${view.name}`);
  const keys: Array<{ name: string; col: number; convert: (t: string) => ValueInit }> = [];
  const values: Array<{ name: string; col: number; convert: (t: string) => ValueInit }> = [];
  header.forEach((name, col) => {
    if (col === ts) return;
    if (keyNames.has(name)) {
      const e = view.entities.find((x) => x.name === name)!;
      const conv = e.type === ValueType.INT64 ? cellConverter(ValueType.INT64) : cellConverter(ValueType.STRING);
      keys.push({ name, col, convert: (t) => {
        if (t === "") throw new CellError("entity key is empty");
        return conv(t);
      } });
      return;
    }
    const f = features.get(name);
    if (!f) {
      const od = view.onDemandFeatures.some((o) => o.name === name);
      throw new CsvFormatError(file, 1, undefined, od
        ? `column ${JSON.stringify(name)} is an on-demand feature of ${view.name}; it is computed at read time and cannot be ingested`
        : `column ${JSON.stringify(name)} is neither an entity key, event_ts nor a feature of ${view.name} (features: ${view.features.map((x) => x.name).join(", ")})`);
    }
    values.push({ name, col, convert: cellConverter(f.type) });
  });
  if (values.length === 0) throw new CsvFormatError(file, 1, undefined, `the header names no feature of ${view.name}`);
  const writers = values.map((v) => cellWriter(view.features.find((f) => f.name === v.name)!.type));
  return {
    featureNames: values.map((v) => v.name),
    /** The row of `fields` appended to `enc` as bytes; nothing is appended when a cell is bad. */
    encode(fields: readonly string[], line: number, enc: ChunkEncoder): void {
      let at = "event_ts";
      const mark = enc.mark();
      try {
        const eventMs = parseEventMs(fields[ts]!);
        enc.beginRow();
        enc.beginKeys();
        for (const k of keys) {
          at = k.name;
          enc.key(k.name, k.convert(fields[k.col]!));
        }
        enc.endKeys();
        enc.eventTimeMs(eventMs);
        for (let i = 0; i < values.length; i++) {
          const v = values[i]!;
          at = v.name;
          writers[i]!(enc, fields[v.col]!);
        }
        enc.endRow(line);
      } catch (err) {
        enc.rewind(mark);
        if (err instanceof CellError) throw new CsvFormatError(file, line, undefined, `${at}: ${err.message}`);
        throw err;
      }
    },
    row(fields: readonly string[], line: number): RowInit {
      let at = "event_ts";
      try {
        const eventTime = parseEventTs(fields[ts]!);
        const entityKeys: Record<string, ValueInit> = {};
        for (const k of keys) {
          at = k.name;
          entityKeys[k.name] = k.convert(fields[k.col]!);
        }
        const out = new Array<ValueInit>(values.length);
        for (let i = 0; i < values.length; i++) {
          const v = values[i]!;
          at = v.name;
          out[i] = v.convert(fields[v.col]!);
        }
        return { entityKey: { keys: entityKeys }, eventTime, values: out };
      } catch (err) {
        if (err instanceof CellError) throw new CsvFormatError(file, line, undefined, `${at}: ${err.message}`);
        throw err;
      }
    },
  };
}

/**
 * A hand-written protobuf encoder for IngestChunk (FeatureRow, EntityKey, Timestamp,
 * Value): the reflection-based encoder costs more CPU than everything else in an upload.
 * The bytes are attached to an empty IngestFeaturesRequest as its (unknown) field 2, which
 * protobuf-es writes out as is: on the wire it is exactly the `chunk` of the oneof.
 */
export class ChunkEncoder {
  private buf = Buffer.allocUnsafe(1 << 20);
  private pos = 0;
  private readonly starts: number[] = [];
  private lines: number[] = [];
  rows = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  private byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }
  private varint(v: number): void {
    this.ensure(10);
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }
  private varint64(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    if (u <= 0xffffffffn) return this.varint(Number(u));
    this.ensure(10);
    while (u > 0x7fn) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }
  private fork(): void {
    this.starts.push(this.pos);
  }
  /** Prefix what was written since the matching fork() with its length. */
  private join(): void {
    const start = this.starts.pop()!;
    const len = this.pos - start;
    let n = 1;
    for (let l = len; l > 0x7f; l = Math.floor(l / 128)) n++;
    this.ensure(n);
    this.buf.copyWithin(start + n, start, this.pos);
    const end = this.pos + n;
    let p = start;
    let l = len;
    while (l > 0x7f) {
      this.buf[p++] = (l & 0x7f) | 0x80;
      l = Math.floor(l / 128);
    }
    this.buf[p] = l;
    this.pos = end;
  }
  private string(s: string): void {
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.ensure(n);
    this.buf.write(s, this.pos, "utf8");
    this.pos += n;
  }
  private valueBody(v: ValueInit): void {
    const k = v.kind;
    this.fork();
    if (k && k.case !== undefined) {
      switch (k.case) {
        case "doubleValue":
          this.ensure(9);
          this.buf[this.pos++] = 0x09;
          this.buf.writeDoubleLE(k.value as number, this.pos);
          this.pos += 8;
          break;
        case "floatValue":
          this.ensure(5);
          this.buf[this.pos++] = 0x15;
          this.buf.writeFloatLE(k.value as number, this.pos);
          this.pos += 4;
          break;
        case "int64Value":
          this.byte(0x18);
          this.varint64(BigInt(k.value as bigint));
          break;
        case "stringValue":
          this.byte(0x22);
          this.string(k.value as string);
          break;
        case "boolValue":
          this.byte(0x28);
          this.byte(k.value ? 1 : 0);
          break;
        case "floatVectorValue": {
          const values = (k.value as { values?: number[] }).values ?? [];
          this.byte(0x32);
          this.fork();
          if (values.length) {
            this.byte(0x0a);
            this.varint(values.length * 4);
            this.ensure(values.length * 4);
            for (const x of values) {
              this.buf.writeFloatLE(x, this.pos);
              this.pos += 4;
            }
          }
          this.join();
          break;
        }
      }
    }
    this.join();
  }

  /** Where the encoder stands, to undo a row that failed half-way (see rewind). */
  mark(): number {
    return this.pos;
  }
  rewind(pos: number): void {
    this.pos = pos;
    this.starts.length = 0;
  }
  beginRow(): void {
    this.byte(0x0a);
    this.fork();
  }
  beginKeys(): void {
    this.byte(0x0a); // entity_key
    this.fork();
  }
  key(name: string, v: ValueInit): void {
    this.byte(0x0a); // keys entry
    this.fork();
    this.byte(0x0a);
    this.string(name);
    this.byte(0x12);
    this.valueBody(v);
    this.join();
  }
  endKeys(): void {
    this.join();
  }
  /** event_time from epoch ms, as timestampFromMs makes it. */
  eventTimeMs(ms: number): void {
    const seconds = Math.floor(ms / 1000);
    const nanos = (ms - seconds * 1000) * 1e6;
    this.byte(0x12);
    this.fork();
    if (seconds !== 0) {
      this.byte(0x08);
      if (seconds > 0) this.varint(seconds);
      else this.varint64(BigInt(seconds));
    }
    if (nanos !== 0) {
      this.byte(0x10);
      this.varint(nanos);
    }
    this.join();
  }
  /** values: a Value with double_value (0x1a, length 9, tag 0x09, 8 bytes). */
  doubleValue(x: number): void {
    this.ensure(11);
    this.buf[this.pos++] = 0x1a;
    this.buf[this.pos++] = 9;
    this.buf[this.pos++] = 0x09;
    this.buf.writeDoubleLE(x, this.pos);
    this.pos += 8;
  }
  floatValue(x: number): void {
    this.ensure(7);
    this.buf[this.pos++] = 0x1a;
    this.buf[this.pos++] = 5;
    this.buf[this.pos++] = 0x15;
    this.buf.writeFloatLE(x, this.pos);
    this.pos += 4;
  }
  /** values: an empty Value (NULL). */
  nullValue(): void {
    this.ensure(2);
    this.buf[this.pos++] = 0x1a;
    this.buf[this.pos++] = 0;
  }
  /** values: any Value. */
  value(v: ValueInit): void {
    this.byte(0x1a);
    this.valueBody(v);
  }
  endRow(line: number): void {
    this.join();
    this.lines.push(line);
    this.rows++;
  }

  /** Append one FeatureRow (IngestChunk field 1) and its source line. */
  row(r: RowInit, line: number): void {
    this.byte(0x0a);
    this.fork();
    const keys = (r.entityKey as { keys: Record<string, ValueInit> }).keys;
    this.byte(0x0a); // entity_key
    this.fork();
    for (const name in keys) {
      this.byte(0x0a); // keys entry
      this.fork();
      this.byte(0x0a);
      this.string(name);
      this.byte(0x12);
      this.valueBody(keys[name]!);
      this.join();
    }
    this.join();
    const ts = r.eventTime as { seconds: bigint; nanos: number };
    this.byte(0x12); // event_time
    this.fork();
    if (ts.seconds !== 0n) {
      this.byte(0x08);
      this.varint64(ts.seconds);
    }
    if (ts.nanos !== 0) {
      this.byte(0x10);
      this.varint(ts.nanos);
    }
    this.join();
    for (const v of r.values as ValueInit[]) {
      this.byte(0x1a);
      this.valueBody(v);
    }
    this.join();
    this.lines.push(line);
    this.rows++;
  }

  /** The chunk as an IngestFeaturesRequest (`last`: the end-of-upload marker); resets the encoder. */
  take(last = false): IngestFeaturesRequest {
    if (this.lines.length) {
      this.byte(0x12); // source_lines, packed
      this.fork();
      for (const l of this.lines) this.varint(l);
      this.join();
    }
    if (last) {
      this.byte(0x18); // last = true
      this.byte(1);
    }
    const body = this.buf.subarray(0, this.pos);
    let n = 1;
    for (let l = body.length; l > 0x7f; l = Math.floor(l / 128)) n++;
    const data = Buffer.allocUnsafe(n + body.length);
    let l = body.length;
    let i = 0;
    while (l > 0x7f) {
      data[i++] = (l & 0x7f) | 0x80;
      l = Math.floor(l / 128);
    }
    data[i++] = l;
    body.copy(data, i);
    const msg = create(IngestFeaturesRequestSchema);
    msg.$unknown = [{ no: 2, wireType: WireType.LengthDelimited, data }];
    this.pos = 0;
    this.lines = [];
    this.rows = 0;
    return msg;
  }
}

/** Records of a CSV file with their line numbers, read with backpressure (the consumer pulls). */
async function* csvRecords(file: string): AsyncGenerator<{ fields: string[]; line: number }> {
  const parser = new CsvRecordParser(file, ",");
  const input = fs.createReadStream(file, { encoding: "utf8", highWaterMark: 1 << 20 });
  const lines = createInterface({ input, crlfDelay: Infinity });
  let width = -1;
  let n = 0;
  try {
    for await (const raw of lines) {
      n++;
      const line = n === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
      if (line.length === 0 && !parser.pending) continue;
      // A line with no quote, outside a quoted field, is its fields split on commas (what
      // the parser's character loop yields for it, many times faster).
      const plain = !parser.pending && line.indexOf('"') < 0;
      const record = plain ? line.split(",") : parser.pushLine(line, n);
      if (record === null) continue;
      const at = plain ? n : parser.recordLine;
      if (width < 0) {
        width = record.length;
        yield { fields: record, line: at };
        continue;
      }
      if (record.length !== width) throw new CsvFormatError(file, at, undefined, `expected ${width} fields as in the header, got ${record.length}`);
      yield { fields: record, line: at };
    }
    parser.finish();
  } finally {
    lines.close();
    input.destroy();
  }
}

type FeaturesClient = ReturnType<typeof createMeshClients>["features"];

export interface IngestOptions {
  readonly batch: number;
  readonly requestId: string;
  readonly offlineOnly: boolean;
  /** Progress on stderr (rows, rows/s); default: when stderr is a TTY. */
  readonly progress?: boolean;
}

/** A file's rows as the upload sends them: count, feature columns, rows with their line/row number. */
interface IngestSource {
  readonly total: number;
  readonly featureNames: readonly string[];
  /** What the numbers count, as the server names them in errors. */
  readonly unit: "line" | "row";
  rows(): AsyncGenerator<{ row: RowInit; line: number }>;
  /**
   * Appends the rows to `chunk`, pausing (yield) whenever it holds `batch` rows so the
   * caller can send it. CSV cells go straight to bytes; Parquet rows through RowInit.
   */
  encodeRows(chunk: ChunkEncoder, batch: number): AsyncGenerator<void>;
}

/** The header (checked as forEachCsvRecord checks it) and the number of data records. */
async function countCsvRecords(file: string): Promise<{ header: string[]; rows: number }> {
  let header: string[] | undefined;
  let rows = 0;
  for await (const { fields, line } of csvRecords(file)) {
    if (header) {
      rows++;
      continue;
    }
    const seen = new Set<string>();
    fields.forEach((name, i) => {
      if (name.trim() === "") throw new CsvFormatError(file, line, undefined, `header field ${i + 1} is empty`);
      if (seen.has(name)) throw new CsvFormatError(file, line, undefined, `header repeats column ${JSON.stringify(name)}`);
      seen.add(name);
    });
    header = fields;
  }
  if (header === undefined) throw new CsvFormatError(file, 1, undefined, "file is empty; expected a header row");
  return { header, rows };
}

async function csvSource(view: FeatureView, file: string): Promise<IngestSource> {
  // First pass: the CSV structure and the row count (expected_rows catches a truncated
  // upload; the count also drives the progress line). Only one record is held at a time.
  const { header, rows: total } = await countCsvRecords(file);
  const plan = ingestPlan(view, header, file);
  return {
    total,
    featureNames: plan.featureNames,
    unit: "line",
    async *rows() {
      let first = true;
      for await (const { fields, line } of csvRecords(file)) {
        if (first) {
          first = false; // the header, already checked
          continue;
        }
        yield { row: plan.row(fields, line), line };
      }
    },
    async *encodeRows(chunk, batch) {
      let first = true;
      for await (const { fields, line } of csvRecords(file)) {
        if (first) {
          first = false;
          continue;
        }
        plan.encode(fields, line, chunk);
        if (chunk.rows >= batch) yield;
      }
    },
  };
}

/** A Parquet cell that cannot be used: the file and its 1-based data row are named. */
export class ParquetFormatError extends Error {
  constructor(
    readonly file: string,
    readonly row: number | undefined,
    readonly problem: string,
  ) {
    super(row === undefined ? `${file}: ${problem}` : `${file} row ${row}: ${problem}`);
    this.name = "ParquetFormatError";
  }
}

/** A converter of one typed Parquet value (as hyparquet decodes it) to a Value; null is NULL. */
function parquetConverter(type: ValueType): (v: unknown) => ValueInit {
  const text = cellConverter(type);
  return (v) => {
    if (v === null || v === undefined) return {};
    if (typeof v === "string") return text(v);
    switch (type) {
      case ValueType.FLOAT32:
      case ValueType.FLOAT64:
        if (typeof v === "number" || typeof v === "bigint") return { kind: { case: type === ValueType.FLOAT32 ? "floatValue" : "doubleValue", value: Number(v) } };
        break;
      case ValueType.INT64:
        if (typeof v === "bigint") return { kind: { case: "int64Value", value: v } };
        if (typeof v === "number" && Number.isSafeInteger(v)) return { kind: { case: "int64Value", value: BigInt(v) } };
        break;
      case ValueType.BOOL:
        if (typeof v === "boolean") return { kind: { case: "boolValue", value: v } };
        break;
      case ValueType.FLOAT_VECTOR:
        if (Array.isArray(v) && v.every((x) => typeof x === "number")) return { kind: { case: "floatVectorValue", value: { values: v as number[] } } };
        if (v instanceof Float32Array || v instanceof Float64Array) return { kind: { case: "floatVectorValue", value: { values: Array.from(v) } } };
        break;
      default:
        if (typeof v === "number" || typeof v === "bigint") return { kind: { case: "stringValue", value: String(v) } };
        break;
    }
    const shown = typeof v === "bigint" ? `${v}n` : v instanceof Date ? v.toISOString() : JSON.stringify(v)?.slice(0, 60) ?? String(v);
    throw new CellError(`expected ${ValueType[type]?.toLowerCase() ?? "a value"}, got ${typeof v} ${shown}`);
  };
}

function parquetEventTs(v: unknown): { seconds: bigint; nanos: number } {
  let ms: number;
  if (v instanceof Date) ms = v.getTime();
  else if (typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v))) ms = Number(v);
  else if (typeof v === "string") return parseEventTs(v);
  else throw new CellError(`expected a timestamp, epoch milliseconds or RFC 3339, got ${v === null || v === undefined ? "NULL" : typeof v}`);
  if (!Number.isFinite(ms)) throw new CellError("not a valid time");
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1e6 };
}

/**
 * A Parquet file read row group by row group through a file-backed AsyncBuffer
 * (hyparquet reads only the byte ranges it asks for), so at most one row group's columns
 * are in memory, never the whole file. Columns as in CSV: entity keys, event_ts
 * (timestamp, epoch ms or RFC 3339 text), feature columns.
 */
async function parquetSource(view: FeatureView, file: string): Promise<IngestSource> {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema } = await import("hyparquet");
  const buffer = await asyncBufferFromFile(file);
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (err) {
    throw new ParquetFormatError(file, undefined, `not a readable Parquet file (${(err as Error).message})`);
  }
  const header = parquetSchema(metadata).children.map((c) => c.element.name);
  const keyNames = new Set(view.entities.map((e) => e.name));
  const features = new Map(view.features.map((f) => [f.name, f]));
  const ts = header.indexOf("event_ts");
  if (ts < 0) throw new ParquetFormatError(file, undefined, "the file has no event_ts column");
  for (const e of view.entities) if (!header.includes(e.name)) throw new ParquetFormatError(file, undefined, `the file has no column for entity key ${e.name} of view ${view.name}`);
  const keys: Array<{ name: string; col: number; convert: (v: unknown) => ValueInit }> = [];
  const values: Array<{ name: string; col: number; convert: (v: unknown) => ValueInit }> = [];
  header.forEach((name, col) => {
    if (col === ts) return;
    if (keyNames.has(name)) {
      const e = view.entities.find((x) => x.name === name)!;
      const conv = parquetConverter(e.type === ValueType.INT64 ? ValueType.INT64 : ValueType.STRING);
      keys.push({ name, col, convert: (v) => {
        if (v === null || v === undefined || v === "") throw new CellError("entity key is empty");
        return conv(v);
      } });
      return;
    }
    const f = features.get(name);
    if (!f) {
      const od = view.onDemandFeatures.some((o) => o.name === name);
      throw new ParquetFormatError(file, undefined, od
        ? `column ${JSON.stringify(name)} is an on-demand feature of ${view.name}; it is computed at read time and cannot be ingested`
        : `column ${JSON.stringify(name)} is neither an entity key, event_ts nor a feature of ${view.name} (features: ${view.features.map((x) => x.name).join(", ")})`);
    }
    values.push({ name, col, convert: parquetConverter(f.type) });
  });
  if (values.length === 0) throw new ParquetFormatError(file, undefined, `the file names no feature of ${view.name}`);
  const toRow = (cells: readonly unknown[], n: number): RowInit => {
    let at = "event_ts";
    try {
      const eventTime = parquetEventTs(cells[ts]);
      const entityKeys: Record<string, ValueInit> = {};
      for (const k of keys) {
        at = k.name;
        entityKeys[k.name] = k.convert(cells[k.col]);
      }
      const out = new Array<ValueInit>(values.length);
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        at = v.name;
        out[i] = v.convert(cells[v.col]);
      }
      return { entityKey: { keys: entityKeys }, eventTime, values: out };
    } catch (err) {
      if (err instanceof CellError) throw new ParquetFormatError(file, n, `${at}: ${err.message}`);
      throw err;
    }
  };
  const source: IngestSource = {
    total: Number(metadata.num_rows),
    featureNames: values.map((v) => v.name),
    unit: "row",
    async *rows() {
      let start = 0;
      for (const group of metadata.row_groups) {
        const end = start + Number(group.num_rows);
        let rows: unknown[][] = [];
        await parquetRead({ file: buffer, metadata, columns: header, rowStart: start, rowEnd: end, onComplete: (r: unknown[][]) => void (rows = r) });
        for (let i = 0; i < rows.length; i++) yield { row: toRow(rows[i]!, start + i + 1), line: start + i + 1 };
        start = end;
        rows = [];
      }
    },
    async *encodeRows(chunk, batch) {
      for await (const { row, line } of source.rows()) {
        chunk.row(row, line);
        if (chunk.rows >= batch) yield;
      }
    },
  };
  return source;
}

/**
 * Stream FILE (CSV, or Parquet by its .parquet extension) to IngestFeatures; a malformed
 * line or row throws CsvFormatError / ParquetFormatError and nothing is written.
 */
export async function ingestFile(client: FeaturesClient, viewName: string, file: string, opts: IngestOptions) {
  if (!fs.existsSync(file)) throw new UsageError(`cannot read ${file}: no such file`);
  const { view } = await client.getFeatureView({ name: viewName });
  if (!view) throw new Error(`the server returned no view ${viewName}`);
  const source = /\.parquet$/i.test(file) ? await parquetSource(view, file) : await csvSource(view, file);
  const total = source.total;
  const started = performance.now();
  const progress = opts.progress ?? process.stderr.isTTY === true;
  let sent = 0;
  let lastDraw = 0;
  const draw = (final: boolean) => {
    const now = performance.now();
    if (!final && now - lastDraw < 200) return;
    lastDraw = now;
    const secs = (now - started) / 1000;
    const rate = secs > 0 ? Math.round(sent / secs) : 0;
    const pct = total ? ` (${Math.floor((100 * sent) / total)}%)` : "";
    process.stderr.write(`\r${sent}/${total} rows${pct}, ${rate} rows/s${final ? "\n" : ""}`);
  };
  let failure: unknown;
  const batch = opts.batch;
  async function* messages(): AsyncGenerator<IngestInit | IngestFeaturesRequest> {
    try {
      yield {
        payload: {
          case: "header",
          value: { view: viewName, featureNames: [...source.featureNames], source: file, offlineOnly: opts.offlineOnly, requestId: opts.requestId, expectedRows: BigInt(total), sourceUnit: source.unit },
        },
      };
      const chunk = new ChunkEncoder();
      for await (const _ of source.encodeRows(chunk, batch)) {
        const n = chunk.rows;
        yield chunk.take();
        sent += n;
        if (progress) draw(false);
      }
      // Always a final chunk (possibly empty) with the end marker: the server commits only then.
      const n = chunk.rows;
      yield chunk.take(true);
      sent += n;
    } catch (err) {
      failure = err;
      throw err;
    }
  }
  try {
    const res = await client.ingestFeatures(messages(), { timeoutMs: 24 * 3600_000 });
    if (progress) draw(true);
    const secs = (performance.now() - started) / 1000;
    return {
      view: viewName,
      file,
      rows_accepted: Number(res.rowsAccepted),
      online_rows_updated: Number(res.onlineRowsUpdated),
      min_event_time: res.minEventTime ? new Date(Number(res.minEventTime.seconds) * 1000 + Math.floor(res.minEventTime.nanos / 1e6)).toISOString() : "",
      max_event_time: res.maxEventTime ? new Date(Number(res.maxEventTime.seconds) * 1000 + Math.floor(res.maxEventTime.nanos / 1e6)).toISOString() : "",
      seconds: Math.round(secs * 1000) / 1000,
      rows_per_second: secs > 0 ? Math.round(Number(res.rowsAccepted) / secs) : 0,
    };
  } catch (err) {
    if (progress) process.stderr.write("\n");
    throw failure ?? err;
  }
}

// ---------------------------------------------------------------- history

function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * The point-in-time join of an entity CSV (entity key columns + event_ts) written to OUT:
 * the entity columns, event_ts, then one column per ref (`view:feature`); an empty cell for
 * a missing, expired or NULL value. Read and sent in batches; only one batch is in memory.
 */
export async function historyToCsv(client: FeaturesClient, entitiesFile: string, refs: readonly string[], outFile: string, batchSize = 10_000): Promise<{ rows: number; refs: string[] }> {
  if (!fs.existsSync(entitiesFile)) throw new UsageError(`cannot read ${entitiesFile}: no such file`);
  const out = fs.createWriteStream(outFile, { encoding: "utf8" });
  const write = async (text: string) => {
    if (!out.write(text)) await new Promise<void>((ok) => out.once("drain", () => ok()));
  };
  let header: string[] | undefined;
  let tsCol = -1;
  let columns: string[] = [];
  let rows = 0;
  let batch: Array<{ fields: string[]; line: number }> = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const entityRows = batch.map(({ fields, line }) => {
      const keys: Record<string, ValueInit> = {};
      header!.forEach((name, c) => {
        if (c !== tsCol) keys[name] = { kind: { case: "stringValue", value: fields[c]! } };
      });
      let eventTime;
      try {
        eventTime = parseEventTs(fields[tsCol]!);
      } catch (err) {
        if (err instanceof CellError) throw new CsvFormatError(entitiesFile, line, undefined, `event_ts: ${err.message}`);
        throw err;
      }
      return { entityKey: { keys }, eventTime };
    });
    const cells: string[][] = batch.map(({ fields }) => header!.map((_, c) => fields[c]!));
    for await (const res of client.getHistoricalFeatures({ entityRows, refs: [...refs] }, { timeoutMs: 3600_000 })) {
      if (res.refs.length && columns.length === 0) {
        columns = [...res.refs];
        await write(`${[...header!, ...columns].map(csvCell).join(",")}\n`);
      }
      for (const r of res.rows) {
        const row = cells[Number(r.rowIndex)]!;
        for (const v of r.values) row.push(v.status === FeatureStatus.PRESENT ? formatValue(v.value) : "");
      }
    }
    for (const row of cells) await write(`${row.map(csvCell).join(",")}\n`);
    rows += batch.length;
    batch = [];
  };
  try {
    for await (const rec of csvRecords(entitiesFile)) {
      if (!header) {
        header = rec.fields;
        tsCol = header.indexOf("event_ts");
        if (tsCol < 0) throw new CsvFormatError(entitiesFile, rec.line, undefined, "the header has no event_ts column");
        if (header.length < 2) throw new CsvFormatError(entitiesFile, rec.line, undefined, "the header names no entity key column");
        continue;
      }
      batch.push(rec);
      if (batch.length >= batchSize) await flush();
    }
    if (!header) throw new CsvFormatError(entitiesFile, 1, undefined, "file is empty; expected a header row");
    await flush();
    if (columns.length === 0) await write(`${[...header, ...refs].map(csvCell).join(",")}\n`);
  } finally {
    await new Promise((ok) => out.end(ok));
  }
  return { rows, refs: columns.length ? columns : [...refs] };
}

export async function runFeatures(config: Config, argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "help" || sub === "--help" || sub === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.OK;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: {
        json: { type: "boolean", default: false },
        "validate-only": { type: "boolean", default: false },
        reason: { type: "string", default: "" },
        prefix: { type: "string", default: "" },
        entity: { type: "string", multiple: true, default: [] },
        batch: { type: "string", default: "5000" },
        "request-id": { type: "string", default: "" },
        "offline-only": { type: "boolean", default: false },
        entities: { type: "string", default: "" },
        features: { type: "string", default: "" },
        out: { type: "string", default: "" },
        start: { type: "string", default: "" },
        end: { type: "string", default: "" },
        incremental: { type: "boolean", default: false },
        "no-wait": { type: "boolean", default: false },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  const json = values.json === true;
  const client = createMeshClients(config).features;
  try {
    switch (sub) {
      case "apply": {
        const file = positionals[0];
        if (!file || positionals.length > 1) throw new UsageError(`apply takes one file\n${USAGE}`);
        let doc: unknown;
        try {
          doc = JSON.parse(fs.readFileSync(file, "utf8"));
        } catch (err) {
          throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
        }
        const views = arr(doc).map((v, i) => viewFromFile(v as Obj, i));
        const res = await client.applyFeatureViews({ views, validateOnly: values["validate-only"] === true, reason: String(values.reason) });
        const rows = res.results.map((r) => ({
          name: r.name,
          outcome: ApplyOutcome[r.outcome] ?? String(r.outcome),
          version: String(r.view?.version ?? 0n),
          changes: r.changes.join("; "),
        }));
        if (json) printJson(rows);
        else printTable(rows, ["name", "outcome", "version", "changes"]);
        return EXIT.OK;
      }
      case "list": {
        const rows: Array<Record<string, string>> = [];
        let pageToken = "";
        do {
          const page = await client.listFeatureViews({ namePrefix: String(values.prefix), pageToken });
          for (const v of page.views) {
            rows.push({
              name: v.name,
              version: String(v.version),
              entities: v.entities.map((e) => e.name).join(","),
              features: [...v.features.map((f) => f.name), ...v.onDemandFeatures.map((f) => `${f.name}*`)].join(","),
              ttl: v.ttl ? `${v.ttl.seconds}s` : "",
              owner: v.owner,
            });
          }
          pageToken = page.nextPageToken;
        } while (pageToken);
        if (json) printJson(rows);
        else printTable(rows, ["name", "version", "entities", "features", "ttl", "owner"]);
        return EXIT.OK;
      }
      case "get": {
        if (positionals.length !== 1) throw new UsageError(`get takes one comma-separated list of refs\n${USAGE}`);
        const refs = positionals[0]!.split(",").map((r) => r.trim()).filter(Boolean);
        const entities = (values.entity as string[]).map((spec) => {
          const keys: Record<string, { kind: { case: "stringValue"; value: string } }> = {};
          for (const pair of spec.split(",")) {
            const eq = pair.indexOf("=");
            if (eq <= 0) throw new UsageError(`--entity ${JSON.stringify(spec)}: expected KEY=VALUE[,KEY=VALUE]`);
            // Sent as strings: the server normalises them to each key's declared type.
            keys[pair.slice(0, eq)] = { kind: { case: "stringValue", value: pair.slice(eq + 1) } };
          }
          return { keys };
        });
        if (entities.length === 0) throw new UsageError(`get needs at least one --entity\n${USAGE}`);
        const res = await client.getOnlineFeatures({ entities, refs });
        const rows = res.rows.map((r, i) => {
          const row: Record<string, string> = { entity: String(values.entity![i]) };
          res.refs.forEach((ref, c) => {
            const v = r.values[c]!;
            row[ref] = v.status === FeatureStatus.PRESENT ? formatValue(v.value) : (FeatureStatus[v.status] ?? "");
          });
          return row;
        });
        if (json) printJson(rows);
        else printTable(rows, ["entity", ...res.refs]);
        return EXIT.OK;
      }
      case "ingest": {
        if (positionals.length !== 2) throw new UsageError(`ingest takes a view and a file\n${USAGE}`);
        const batch = Number(values.batch);
        if (!Number.isInteger(batch) || batch < 1 || batch > 100_000) throw new UsageError(`--batch must be an integer in 1..100000, got ${JSON.stringify(values.batch)}`);
        const requestId = String(values["request-id"]);
        if (requestId.length > 128) throw new UsageError("--request-id: at most 128 characters");
        try {
          const res = await ingestFile(client, positionals[0]!, positionals[1]!, { batch, requestId, offlineOnly: values["offline-only"] === true });
          if (json) printJson(res);
          else printTable([res], ["view", "rows_accepted", "online_rows_updated", "min_event_time", "max_event_time", "rows_per_second"]);
          return EXIT.OK;
        } catch (err) {
          if (err instanceof CsvFormatError || err instanceof ParquetFormatError) {
            printError(`${err.message}; nothing was written`);
            return EXIT.USAGE;
          }
          throw err;
        }
      }
      case "materialize": {
        const time = (flag: "start" | "end") => {
          const raw = String(values[flag]);
          if (!raw) return undefined;
          try {
            return parseEventTs(raw);
          } catch (err) {
            throw new UsageError(`--${flag}: ${(err as Error).message}`);
          }
        };
        const startTime = time("start");
        const endTime = time("end");
        let { job } = await client.materialize({ views: positionals, timeRange: { startTime, endTime }, incremental: values.incremental === true });
        const progress = process.stderr.isTTY === true;
        while (values["no-wait"] !== true && job && (job.state === MaterializationState.PENDING || job.state === MaterializationState.RUNNING)) {
          await new Promise((r) => setTimeout(r, 200));
          job = (await client.getMaterializationStatus({ jobId: job.jobId })).job;
          if (progress && job) process.stderr.write(`\r${MaterializationState[job.state]} ${job.progress.map((p) => `${p.view}: ${p.rowsWritten}/${p.rowsRead}`).join(", ")}`);
        }
        if (progress) process.stderr.write("\n");
        if (!job) throw new Error("the server returned no job");
        const tsText = (t: { seconds: bigint; nanos: number } | undefined) => (t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString() : "");
        const rows = job.progress.map((p) => ({
          job_id: job!.jobId,
          view: p.view,
          state: MaterializationState[p.state] ?? String(p.state),
          start: tsText(p.timeRange?.startTime),
          end: tsText(p.timeRange?.endTime),
          rows_read: Number(p.rowsRead),
          rows_written: Number(p.rowsWritten),
        }));
        if (json) printJson({ job_id: job.jobId, state: MaterializationState[job.state], error: job.error, views: rows });
        else printTable(rows, ["job_id", "view", "state", "start", "end", "rows_read", "rows_written"]);
        if (job.state === MaterializationState.FAILED) {
          printError(`materialization failed: ${job.error}`);
          return EXIT.FAILED;
        }
        return EXIT.OK;
      }
      case "history": {
        const entities = String(values.entities);
        const outFile = String(values.out);
        const refs = String(values.features).split(",").map((r) => r.trim()).filter(Boolean);
        if (!entities || !outFile || refs.length === 0 || positionals.length) throw new UsageError(`history needs --entities, --features and --out\n${USAGE}`);
        try {
          const res = await historyToCsv(client, entities, refs, outFile);
          if (json) printJson({ out: outFile, rows: res.rows, refs: res.refs });
          else process.stdout.write(`wrote ${res.rows} rows x ${res.refs.length} features to ${outFile}\n`);
          return EXIT.OK;
        } catch (err) {
          if (err instanceof CsvFormatError) {
            printError(err.message);
            return EXIT.USAGE;
          }
          throw err;
        }
      }
      default:
        throw new UsageError(`unknown features command ${JSON.stringify(sub ?? "")}\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const ce = ConnectError.from(err);
    printError(`${codeName(ce.code)}: ${ce.rawMessage}`);
    return ce.code === Code.Unavailable ? EXIT.UNAVAILABLE : EXIT.FAILED;
  }
}
