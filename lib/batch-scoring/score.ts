// The batch scoring loop shared by `mlmesh score-batch` and the inference service's batch
// jobs: read a chunk, turn its rows into the model's input tensors (features from the file's
// columns, or point-in-time from the feature service), run it on the session workers while
// the next chunks are read and queued (as many in flight as there are workers), and write
// results in input order, each row carrying the model name and version. CSV to CSV without
// point-in-time features can instead run on scoring workers that parse, score and format
// whole chunks of raw bytes (parallel.ts), keeping the main thread out of the per-row work.

import type { FeatureBinding } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { allocate, product, type DenseTensor, type DType, type IoSpec, type TypedData } from "../../services/inference/tensors.js";
import { AbortedError, ValidationError } from "../errors.js";
import { ChunkWorkers } from "./parallel.js";
import { csvField, type OutRow, type OutValue, type RowSink } from "./sink.js";
import type { Cell, Chunk, Source } from "./source.js";

/** A loaded model version as the loop needs it (services/inference's LoadedVersion fits). */
export interface BatchModel {
  readonly name: string;
  readonly version: number;
  readonly inputs: readonly IoSpec[];
  readonly outputs: readonly IoSpec[];
  readonly binding: FeatureBinding | undefined;
  /** Runs one chunk; resolves with the output tensors. */
  run(feeds: Record<string, DenseTensor>, rows: number): Promise<Record<string, DenseTensor>>;
  /** The verified ONNX file, when scoring workers may open their own sessions of it. */
  readonly artifactPath?: string;
}

/** Point-in-time feature values per row of a chunk: `values[r][k]` for `refs[k]`, or an error text. */
export interface FeatureFetch {
  readonly refs: readonly string[];
  fetch(entities: readonly string[], asOf: readonly Date[]): Promise<Array<Array<number | string>>>;
}

/** A row that cannot be scored: its line, the column at fault, why. */
export class BadRowError extends ValidationError {
  constructor(
    readonly line: number,
    readonly column: string,
    readonly problem: string,
  ) {
    super(`line ${line}, column ${JSON.stringify(column)}`, problem);
  }
}

export interface Progress {
  readonly rowsRead: number;
  readonly rowsScored: number;
  readonly rowsRejected: number;
  readonly rowsTotal: number | undefined;
  readonly rowsPerSecond: number;
}

export interface BatchOptions {
  readonly source: Source;
  readonly model: BatchModel;
  readonly sink: RowSink;
  /** With skipBadRows: where bad rows go (their cells, line and error). */
  readonly reject?: RowSink;
  readonly skipBadRows: boolean;
  readonly batchRows: number;
  /** Chunks in flight on the workers at once. */
  readonly concurrency: number;
  /** Point-in-time features: the entity and as-of columns of the file, and the fetcher. */
  readonly pointInTime?: { readonly entityColumn: string; readonly asOfColumn: string; readonly features: FeatureFetch };
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: Progress) => void;
  readonly allowNonFinite?: boolean;
  /**
   * CSV in and out, no point-in-time features, and model.artifactPath set: parse, score and
   * format on this many worker threads, each with its own session (model.run is not used).
   * Unset or 0: the loop below, scoring through model.run.
   */
  readonly scoringWorkers?: number;
}

/** Where each model input's columns come from: file column indexes or fetched feature indexes. */
interface InputPlan {
  readonly spec: IoSpec;
  readonly width: number;
  readonly dims: (rows: number) => number[];
  /** Per column: its name (for errors) and where its value is. */
  readonly columns: ReadonlyArray<{ readonly name: string; readonly file?: number; readonly fetched?: number }>;
}

/** Input columns of a graph input: the binding's feature refs, else the input's own name(s). */
function plan(model: BatchModel, header: readonly string[], fetchedRefs: readonly string[]): InputPlan[] {
  const index = new Map(header.map((h, i) => [h, i]));
  const find = (ref: string): { file?: number; fetched?: number } | undefined => {
    const k = fetchedRefs.indexOf(ref);
    if (k >= 0) return { fetched: k };
    const direct = index.get(ref);
    if (direct !== undefined) return { file: direct };
    const short = ref.includes(":") ? index.get(ref.slice(ref.indexOf(":") + 1)) : undefined;
    return short !== undefined ? { file: short } : undefined;
  };
  return model.inputs.map((spec) => {
    const trailing = spec.dims.slice(1);
    if (trailing.length > 1) throw new ValidationError("model", `input "${spec.name}" has shape [${spec.dims.join(", ")}]; batch scoring reads flat rows`);
    const bound = model.binding?.inputs.find((b) => b.inputName === spec.name)?.features ?? [];
    let names: string[];
    if (bound.length > 0) names = [...bound];
    else if (trailing.length === 0 || trailing[0] === 1) names = trailing.length === 0 || index.has(spec.name) ? [spec.name] : [`${spec.name}_0`];
    else if (trailing[0]! > 0) names = Array.from({ length: trailing[0]! }, (_, i) => `${spec.name}_${i}`);
    else {
      names = [];
      for (let i = 0; index.has(`${spec.name}_${i}`); i++) names.push(`${spec.name}_${i}`);
      if (names.length === 0) throw new ValidationError("in", `no columns for input "${spec.name}": expected ${spec.name}_0, ${spec.name}_1, ...`);
    }
    if (trailing.length === 1 && trailing[0]! > 0 && trailing[0] !== names.length) {
      throw new ValidationError("model", `the feature binding of "${spec.name}" has ${names.length} features but the input has ${trailing[0]} columns`);
    }
    const columns = names.map((name) => {
      const at = find(name);
      if (!at) {
        const short = name.includes(":") ? ` (or ${JSON.stringify(name.slice(name.indexOf(":") + 1))})` : "";
        throw new ValidationError("in", `no column ${JSON.stringify(name)}${short} for input "${spec.name}"; the file has ${header.join(", ")}`);
      }
      return { name, ...at };
    });
    const width = columns.length;
    return { spec, width, columns, dims: (rows: number) => (trailing.length === 0 ? [rows] : [rows, width]) };
  });
}

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function numberOf(cell: Cell, type: DType, line: number, column: string, allowNonFinite: boolean): number | bigint {
  let n: number | bigint;
  if (typeof cell === "string") {
    // Fast path: what Number() reads, except the forms a CSV decimal never has (empty or
    // blank text reads as 0; hex/octal/binary prefixes), which take the strict path below.
    n = +cell;
    const c1 = cell.charCodeAt(1);
    if (n !== n || cell.length === 0 || c1 === 120 || c1 === 88 || c1 === 111 || c1 === 79 || c1 === 98 || c1 === 66 || cell.charCodeAt(0) <= 32) {
      const t = cell.trim();
      if (type === "bool" && /^(true|false)$/i.test(t)) return /^true$/i.test(t) ? 1 : 0;
      if (DECIMAL.test(t)) n = Number(t);
      else if (/^[+-]?(inf|infinity)$/i.test(t)) n = t.startsWith("-") ? -Infinity : Infinity;
      else if (/^[+-]?nan$/i.test(t)) n = NaN;
      else throw new BadRowError(line, column, t === "" ? "is empty; a number is required" : `${JSON.stringify(cell)} is not a number`);
    }
  } else if (typeof cell === "number" || typeof cell === "bigint") n = cell;
  else if (typeof cell === "boolean") n = cell ? 1 : 0;
  else throw new BadRowError(line, column, cell === null || cell === undefined ? "is missing; a number is required" : `${String(cell)} is not a number`);
  if (typeof n === "number") {
    if (!allowNonFinite && !Number.isFinite(n) && type.startsWith("float")) throw new BadRowError(line, column, `${n} is not finite`);
    if ((type === "int32" || type === "int64") && !Number.isInteger(n)) throw new BadRowError(line, column, `expected an integer, got ${n}`);
  }
  return n;
}

function setValue(data: TypedData, type: DType, at: number, n: number | bigint): void {
  if (type === "int64") (data as BigInt64Array)[at] = BigInt(n);
  else if (type === "bool") (data as Uint8Array)[at] = Number(n) !== 0 ? 1 : 0;
  else (data as Float32Array)[at] = Number(n);
}

/** Output columns: one per scalar output, `name_i` per element of a wider one. */
function outputColumns(model: BatchModel): Array<{ output: string; element: number; column: string }> {
  const out: Array<{ output: string; element: number; column: string }> = [];
  for (const o of model.outputs) {
    const width = o.dims.length <= 1 ? 1 : product(o.dims.slice(1));
    if (width === 1) out.push({ output: o.name, element: 0, column: o.name });
    else if (width > 0) for (let i = 0; i < width; i++) out.push({ output: o.name, element: i, column: `${o.name}_${i}` });
    else out.push({ output: o.name, element: -1, column: o.name });
  }
  return out;
}

/** A time cell: a Date, ISO 8601 text, or epoch milliseconds (number or digits). */
function timeOf(c: Cell): Date | undefined {
  let d: Date | undefined;
  if (c instanceof Date) d = c;
  else if (typeof c === "number" || typeof c === "bigint") d = new Date(Number(c));
  else if (typeof c === "string" && c.trim() !== "") d = new Date(/^\d+$/.test(c.trim()) ? Number(c) : c.trim());
  return d && !Number.isNaN(d.getTime()) ? d : undefined;
}


export async function scoreBatch(o: BatchOptions): Promise<Progress> {
  const header = o.source.header;
  const pit = o.pointInTime;
  let entityAt = -1;
  let asOfAt = -1;
  if (pit) {
    entityAt = header.indexOf(pit.entityColumn);
    asOfAt = header.indexOf(pit.asOfColumn);
    if (entityAt < 0) throw new ValidationError("entity_column", `${JSON.stringify(pit.entityColumn)} is not a column of the file (${header.join(", ")})`);
    if (asOfAt < 0) throw new ValidationError("as_of_column", `${JSON.stringify(pit.asOfColumn)} is not a column of the file (${header.join(", ")})`);
  }
  const inputs = plan(o.model, header, pit?.features.refs ?? []);
  const outCols = outputColumns(o.model);
  const reserved = new Set(["model_name", "model_version", ...outCols.map((c) => c.column)]);
  const clash = header.find((h) => reserved.has(h));
  if (clash) throw new ValidationError("in", `the file already has a column ${JSON.stringify(clash)}, which the output adds`);
  const allowNonFinite = o.allowNonFinite ?? false;
  // An integer column in typed outputs (Parquet INT64, SQLite INTEGER).
  const version = BigInt(o.model.version);

  const csvPath = o.source.csvPath;
  const writeBytes = o.sink.writeBytes?.bind(o.sink);
  const artifact = o.model.artifactPath;
  let workers: ChunkWorkers | undefined;
  if ((o.scoringWorkers ?? 0) > 0 && !pit && csvPath !== undefined && writeBytes !== undefined && artifact !== undefined) {
    // Started before the clock, as a model load is: rows/s measures the scoring itself.
    try {
      workers = await ChunkWorkers.open({
        artifact,
        plan: {
          fields: header.length,
          inputs: inputs.map((p) => ({ name: p.spec.name, type: p.spec.type, matrix: p.dims(1).length === 2, columns: p.columns.map((c) => ({ name: c.name, file: c.file! })) })),
          allowNonFinite,
          skipBadRows: o.skipBadRows,
        },
        prefix: `,${csvField(o.model.name)},${version}`,
        outCols,
        workers: o.scoringWorkers!,
      });
    } catch (err) {
      o.source.close?.();
      throw err;
    }
  }
  try {
    await o.sink.start([...header, "model_name", "model_version", ...outCols.map((c) => c.column)]);
    await o.reject?.start(["line", "error", ...header]);
  } catch (err) {
    await workers?.close();
    o.source.close?.();
    throw err;
  }

  const started = performance.now();
  let rowsRead = 0;
  let rowsScored = 0;
  let rowsRejected = 0;
  const progress = (): Progress => {
    const sec = (performance.now() - started) / 1000;
    return { rowsRead, rowsScored, rowsRejected, rowsTotal: o.source.rowsTotal, rowsPerSecond: sec > 0 ? rowsScored / sec : 0 };
  };

  if (workers) {
    // The source's own reader is not used: the workers read the file's bytes.
    o.source.close?.();
    try {
      await workers.run({
        path: csvPath!,
        batchRows: o.batchRows,
        sink: { writeBytes: writeBytes! },
        reject: o.reject,
        signal: o.signal,
        badRow: (line, column, problem) => new BadRowError(line, column, problem),
        onChunk: (c) => {
          rowsRead = c.rowsRead;
          rowsScored = c.rowsScored;
          rowsRejected = c.rowsRejected;
          o.onProgress?.(progress());
        },
      });
    } catch (err) {
      await o.sink.close(false);
      await o.reject?.close(o.skipBadRows && rowsRejected > 0);
      throw err;
    } finally {
      await workers.close();
    }
    await o.sink.close(true);
    await o.reject?.close(true);
    return progress();
  }

  /** Builds a chunk's feeds; bad rows are thrown or, with skipBadRows, rejected and left out. */
  const build = async (chunk: Chunk): Promise<{ rows: Cell[][]; raws: Array<string | undefined> | undefined; feeds: Record<string, DenseTensor> } | undefined> => {
    let fetched: Array<Array<number | string>> | undefined;
    if (pit) {
      const entities: string[] = [];
      const asOf: Date[] = [];
      for (const r of chunk.rows) {
        const e = r[entityAt];
        entities.push(e === null || e === undefined ? "" : String(e));
        // An unreadable time is fetched as the epoch and the row rejected below, naming the column.
        asOf.push(timeOf(r[asOfAt]) ?? new Date(0));
      }
      fetched = await pit.features.fetch(entities, asOf);
    }
    const n = chunk.rows.length;
    const data = inputs.map((p) => allocate(p.spec.type, n * p.width));
    const good: number[] = [];
    for (let r = 0; r < n; r++) {
      const row = chunk.rows[r]!;
      const line = chunk.lines[r]!;
      // Written at the slot of the next good row; a bad row's partial values are overwritten.
      const g = good.length;
      try {
        if (pit) {
          if (row[entityAt] === null || row[entityAt] === undefined || String(row[entityAt]).trim() === "") throw new BadRowError(line, pit.entityColumn, "is empty; an entity id is required");
          const t = row[asOfAt];
          if (!timeOf(t)) throw new BadRowError(line, pit.asOfColumn, `${JSON.stringify(t ?? null)} is not a time (ISO 8601 or epoch ms)`);
        }
        for (let k = 0; k < inputs.length; k++) {
          const p = inputs[k]!;
          const d = data[k]!;
          const type = p.spec.type;
          const base = g * p.width;
          for (let c = 0; c < p.columns.length; c++) {
            const col = p.columns[c]!;
            let cell: Cell;
            if (col.fetched !== undefined) {
              const f = fetched![r]![col.fetched]!;
              if (typeof f === "string") throw new BadRowError(line, col.name, f);
              cell = f;
            } else cell = row[col.file!];
            const v = numberOf(cell, type, line, col.name, allowNonFinite);
            if (type === "float32" || type === "float64" || type === "int32") (d as Float32Array)[base + c] = v as number;
            else setValue(d, type, base + c, v);
          }
        }
        good.push(r);
      } catch (err) {
        if (!(err instanceof BadRowError) || !o.skipBadRows) throw err;
        rowsRejected++;
        const why = `${err.column}: ${err.problem}`;
        await o.reject?.write([{ cells: [line, why, ...row], raw: undefined, tail: [] }]);
      }
    }
    if (good.length === 0) return undefined;
    const feeds: Record<string, DenseTensor> = {};
    inputs.forEach((p, k) => {
      const d = data[k]!;
      feeds[p.spec.name] = { type: p.spec.type, dims: p.dims(good.length), data: good.length === n ? d : d.subarray(0, good.length * p.width) };
    });
    const raw = chunk.raw;
    return { rows: good.length === n ? chunk.rows : good.map((r) => chunk.rows[r]!), raws: raw ? (good.length === n ? raw : good.map((r) => raw[r])) : undefined, feeds };
  };

  const write = async (rows: Cell[][], raws: Array<string | undefined> | undefined, outputs: Record<string, DenseTensor>) => {
    const n = rows.length;
    const out: OutRow[] = new Array(n);
    const cols = outCols.map((c) => {
      const t = outputs[c.output];
      return { c, t, per: t && t.dims[0] === n ? product(t.dims.slice(1)) : 0 };
    });
    for (let r = 0; r < n; r++) {
      const tail: OutValue[] = [o.model.name, version];
      for (const { c, t, per } of cols) {
        if (!t) tail.push(null);
        else if (c.element < 0) tail.push(Array.from(t.data.subarray(r * per, (r + 1) * per) as ArrayLike<number>).join(" "));
        else {
          const x = t.data[r * per + c.element]!;
          tail.push(typeof x === "bigint" ? x : Number(x));
        }
      }
      out[r] = { cells: rows[r]!, raw: raws?.[r], tail };
    }
    await o.sink.write(out);
    rowsScored += n;
  };

  const inFlight: Array<Promise<() => Promise<void>>> = [];
  const drainOne = async () => {
    const finish = await inFlight.shift()!;
    await finish();
    o.onProgress?.(progress());
  };
  try {
    for await (const chunk of o.source.chunks(o.batchRows)) {
      if (o.signal?.aborted) throw new AbortedError("batch scoring was cancelled");
      rowsRead += chunk.rows.length;
      const built = await build(chunk);
      if (!built) {
        o.onProgress?.(progress());
        continue;
      }
      const run = o.model.run(built.feeds, built.rows.length).then((outputs) => () => write(built.rows, built.raws, outputs));
      run.catch(() => {}); // awaited in order below; this keeps an early failure from being "unhandled"
      inFlight.push(run);
      while (inFlight.length >= Math.max(1, o.concurrency)) await drainOne();
    }
    while (inFlight.length > 0) await drainOne();
    if (o.signal?.aborted) throw new AbortedError("batch scoring was cancelled");
  } catch (err) {
    await Promise.allSettled(inFlight);
    await o.sink.close(false);
    await o.reject?.close(o.skipBadRows && rowsRejected > 0);
    throw err;
  }
  await o.sink.close(true);
  await o.reject?.close(true);
  return progress();
}
