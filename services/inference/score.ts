// Maps Score inputs (rows of named values, or dense tensors) onto a model version's graph
// inputs with validation that names the input and row, and model outputs back onto rows.

import type { DenseInputs, Row, RowOutput, Tensor } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { TensorType } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";
import type { LoadedVersion } from "./loader.js";
import { allocate, fromRawBytes, product, type DenseTensor, type DType, type IoSpec, type TypedData } from "./tensors.js";

export interface FeedLimits {
  readonly maxRows: number;
  readonly allowNonFinite: boolean;
}

/** Columns of each graph input: the binding's feature refs, else the input name itself (one column, or a vector). */
function columnsOf(v: LoadedVersion, input: IoSpec): string[] | undefined {
  const b = v.binding?.inputs.find((i) => i.inputName === input.name);
  return b && b.features.length > 0 ? [...b.features] : undefined;
}

/** How one graph input is filled from rows: its binding's columns, or one value of its own name. */
interface RowsInput {
  readonly input: IoSpec;
  readonly columns: readonly string[] | undefined;
  /** Each column's bare feature name (after `view:`), also accepted as a row key. */
  readonly shorts: ReadonlyArray<string | undefined>;
  readonly width: number;
  readonly trailing: readonly number[];
}

/** A version's row layout, worked out once: inputs in order and every row key they accept. */
interface RowsLayout {
  readonly inputs: readonly RowsInput[];
  readonly known: ReadonlySet<string>;
}

const rowsLayouts = new WeakMap<LoadedVersion, RowsLayout>();

function rowsLayout(v: LoadedVersion): RowsLayout {
  const memo = rowsLayouts.get(v);
  if (memo) return memo;
  const inputs: RowsInput[] = [];
  const known = new Set<string>();
  for (const input of v.inputs) {
    const columns = columnsOf(v, input);
    const trailing = input.dims.slice(1);
    if (trailing.length > 1 || (trailing.length === 1 && trailing[0]! < 0 && !columns)) {
      throw new ValidationError("rows", `input "${input.name}" has shape [${input.dims.join(", ")}]; send it as a dense tensor`);
    }
    const width = columns ? columns.length : trailing.length === 0 ? 1 : trailing[0]!;
    if (columns && trailing.length === 1 && trailing[0]! >= 0 && trailing[0] !== columns.length) {
      throw new ValidationError("rows", `the feature binding of "${input.name}" has ${columns.length} features but the input has ${trailing[0]} columns`);
    }
    const shorts = (columns ?? []).map((col) => (col.includes(":") ? col.slice(col.indexOf(":") + 1) : undefined));
    if (columns) {
      columns.forEach((col, c) => {
        known.add(col);
        if (shorts[c] !== undefined) known.add(shorts[c]);
      });
    } else known.add(input.name);
    inputs.push({ input, columns, shorts, width, trailing });
  }
  const layout = { inputs, known };
  rowsLayouts.set(v, layout);
  return layout;
}

/** The field an error names; built only when there is an error. */
function rowField(r: number, name: string, c = -1): string {
  return c < 0 ? `rows[${r}].values["${name}"]` : `rows[${r}].values["${name}"][${c}]`;
}

function setScalar(data: TypedData, type: DType, at: number, x: number | bigint | boolean, r: number, name: string, c: number, allowNonFinite: boolean): void {
  if (type === "bool") {
    (data as Uint8Array)[at] = x === true || x === 1 || x === 1n ? 1 : 0;
    return;
  }
  if (typeof x === "boolean") throw new ValidationError(rowField(r, name, c), `expected a number for a ${type} input, got a bool`);
  if (type === "int64") {
    if (typeof x === "number" && !Number.isInteger(x)) throw new ValidationError(rowField(r, name, c), `expected an integer for an int64 input, got ${x}`);
    (data as BigInt64Array)[at] = BigInt(x);
    return;
  }
  const n = Number(x);
  if (!allowNonFinite && !Number.isFinite(n)) throw new ValidationError(rowField(r, name, c), `${n} is not finite (the model's non-finite policy is REJECT)`);
  if (type === "int32" && !Number.isInteger(n)) throw new ValidationError(rowField(r, name, c), `expected an integer for an int32 input, got ${n}`);
  (data as Float32Array)[at] = n;
}

/** Rows of named values → one [N, k] tensor per graph input. */
export function feedsFromRows(v: LoadedVersion, rows: readonly Row[], limits: FeedLimits): Record<string, DenseTensor> {
  if (rows.length === 0) throw new ValidationError("rows", "at least one row is required");
  if (rows.length > limits.maxRows) throw new ValidationError("rows", `${rows.length} rows is more than the ${limits.maxRows} allowed in one request`);
  const layout = rowsLayout(v);
  const feeds: Record<string, DenseTensor> = {};
  for (const { input, columns, shorts, width, trailing } of layout.inputs) {
    const data = allocate(input.type, rows.length * width);
    for (let r = 0; r < rows.length; r++) {
      const values = rows[r]!.values;
      if (columns) {
        for (let c = 0; c < columns.length; c++) {
          const col = columns[c]!;
          const short = shorts[c];
          const val = values[col] ?? (short !== undefined ? values[short] : undefined);
          if (!val || val.kind.case === undefined) throw new ValidationError(rowField(r, col), `missing; input "${input.name}" needs ${columns.join(", ")}`);
          setScalar(data, input.type, r * width + c, scalarOf(val, r, col), r, col, -1, limits.allowNonFinite);
        }
      } else {
        const val = values[input.name];
        if (!val || val.kind.case === undefined) throw new ValidationError(rowField(r, input.name), `missing; input "${input.name}" needs ${width} value(s)`);
        if (val.kind.case === "floatVectorValue") {
          const xs = val.kind.value.values;
          if (xs.length !== width) throw new ValidationError(rowField(r, input.name), `expected ${width} values for input "${input.name}", got ${xs.length}`);
          for (let c = 0; c < xs.length; c++) setScalar(data, input.type, r * width + c, xs[c]!, r, input.name, c, limits.allowNonFinite);
        } else {
          if (width !== 1) throw new ValidationError(rowField(r, input.name), `expected a float_vector of ${width} values for input "${input.name}"`);
          setScalar(data, input.type, r * width, scalarOf(val, r, input.name), r, input.name, -1, limits.allowNonFinite);
        }
      }
    }
    feeds[input.name] = { type: input.type, dims: trailing.length === 0 ? [rows.length] : [rows.length, width], data };
  }
  for (let r = 0; r < rows.length; r++) {
    for (const k in rows[r]!.values) {
      if (!layout.known.has(k)) throw new ValidationError(rowField(r, k), `unknown; the model's inputs are ${[...layout.known].join(", ")}`);
    }
  }
  return feeds;
}

function scalarOf(val: NonNullable<Row["values"][string]>, r: number, name: string): number | bigint | boolean {
  switch (val.kind.case) {
    case "doubleValue":
    case "floatValue":
    case "int64Value":
    case "boolValue":
      return val.kind.value;
    case "stringValue":
      throw new ValidationError(rowField(r, name), `expected a number, got the string "${val.kind.value}"`);
    default:
      throw new ValidationError(rowField(r, name), `expected a scalar, got a ${val.kind.case}`);
  }
}

const TENSOR_DTYPE: Partial<Record<TensorType, DType>> = {
  [TensorType.FLOAT32]: "float32",
  [TensorType.FLOAT64]: "float64",
  [TensorType.INT32]: "int32",
  [TensorType.INT64]: "int64",
  [TensorType.BOOL]: "bool",
};

/** A tensor's values as the input's element type, checked for length and finiteness. */
export function checkedTensor(
  input: IoSpec,
  given: { type: DType; dims: readonly number[]; values: TypedData | ArrayLike<number | bigint | boolean> },
  field: string,
  limits: FeedLimits,
): DenseTensor {
  if (given.type !== input.type) throw new ValidationError(field, `input "${input.name}" is ${input.type}, got ${given.type}`);
  const dims = given.dims;
  if (dims.length !== input.dims.length || dims.some((d, i) => d < 0 || (input.dims[i]! >= 0 && input.dims[i] !== d))) {
    throw new ValidationError(field, `input "${input.name}" has shape [${dims.join(", ")}], expected [${input.dims.join(", ")}] (-1 = any)`);
  }
  const n = product(dims);
  if (given.values.length !== n) throw new ValidationError(field, `input "${input.name}" of shape [${dims.join(", ")}] needs ${n} values, got ${given.values.length}`);
  if ((dims[0] ?? 1) > limits.maxRows) throw new ValidationError(field, `${dims[0]} rows is more than the ${limits.maxRows} allowed in one request`);
  let data: TypedData;
  if (ArrayBuffer.isView(given.values)) data = given.values as TypedData;
  else {
    data = allocate(input.type, n);
    const vs = given.values;
    for (let i = 0; i < n; i++) {
      const x = vs[i]!;
      if (input.type === "int64") (data as BigInt64Array)[i] = BigInt(x as number | bigint);
      else (data as Float32Array)[i] = Number(x);
    }
  }
  if (!limits.allowNonFinite && (input.type === "float32" || input.type === "float64")) {
    const per = product(dims.slice(1));
    for (let i = 0; i < data.length; i++) {
      const x = (data as Float32Array)[i]!;
      if (!Number.isFinite(x)) throw new ValidationError(field, `input "${input.name}" row ${Math.floor(i / Math.max(1, per))} holds ${x}, which is not finite (non-finite policy REJECT)`);
    }
  }
  return { type: input.type, dims, data };
}

/** Inputs given as tensors → graph feeds, every input present and every name known. */
export function feedsFromDense(
  v: LoadedVersion,
  tensors: ReadonlyArray<{ name: string; type: DType; dims: readonly number[]; values: TypedData | ArrayLike<number | bigint | boolean> }>,
  fieldOf: (i: number) => string,
  limits: FeedLimits,
): { feeds: Record<string, DenseTensor>; rows: number } {
  const feeds: Record<string, DenseTensor> = {};
  let rows: number | undefined;
  tensors.forEach((t, i) => {
    const input = v.inputs.find((s) => s.name === t.name);
    if (!input) throw new ValidationError(fieldOf(i), `unknown input "${t.name}"; the model's inputs are ${v.inputs.map((s) => s.name).join(", ")}`);
    if (feeds[t.name]) throw new ValidationError(fieldOf(i), `input "${t.name}" given twice`);
    feeds[t.name] = checkedTensor(input, t, fieldOf(i), limits);
    const r = t.dims[0] ?? 1;
    if (rows !== undefined && rows !== r) throw new ValidationError(fieldOf(i), `input "${t.name}" has ${r} rows, the others ${rows}`);
    rows = r;
  });
  // In the model's input order, whatever the caller's: requests then share a batch key.
  const ordered: Record<string, DenseTensor> = {};
  for (const s of v.inputs) {
    const t = feeds[s.name];
    if (!t) throw new ValidationError("inputs", `missing input "${s.name}" (${s.type} [${s.dims.join(", ")}])`);
    ordered[s.name] = t;
  }
  return { feeds: ordered, rows: rows ?? 1 };
}

/** DenseInputs of a Score request → feeds. */
export function feedsFromScoreDense(v: LoadedVersion, dense: DenseInputs, limits: FeedLimits): { feeds: Record<string, DenseTensor>; rows: number } {
  const tensors = dense.tensors.map((t: Tensor, i) => {
    const type = TENSOR_DTYPE[t.type];
    const field = `dense.tensors[${i}]`;
    if (!type) throw new ValidationError(field, `type ${TensorType[t.type] ?? t.type} is not supported (FLOAT32, FLOAT64, INT32, INT64, BOOL)`);
    const dims = t.shape.map(Number);
    let values: TypedData | ArrayLike<number | bigint | boolean>;
    if (t.rawData.length > 0) {
      const need = product(dims) * ({ float32: 4, float64: 8, int32: 4, int64: 8, bool: 1 } as const)[type];
      if (t.rawData.length !== need) throw new ValidationError(field, `raw_data of "${t.name}" is ${t.rawData.length} bytes, expected ${need} for shape [${dims.join(", ")}] ${type}`);
      values = fromRawBytes(type, t.rawData);
    } else {
      values = { float32: t.floatData, float64: t.doubleData, int32: t.int32Data, int64: t.int64Data, bool: t.boolData }[type];
    }
    return { name: t.name, type, dims, values };
  });
  return feedsFromDense(v, tensors, (i) => `dense.tensors[${i}]`, limits);
}

/**
 * Per-row outputs. The score: a [N, 1] (or [N]) output is the score itself; a [N, 2]
 * probability output gives the positive class (column 1); wider ones the most likely class.
 * Built as message literals (what create() returns): a local call hands them on as they are,
 * where create() would walk every map entry again.
 */
export function rowOutputs(outputs: Record<string, DenseTensor>, rows: number, wanted: readonly string[]): RowOutput[] {
  const names = Object.keys(outputs);
  for (const w of wanted) if (!outputs[w]) throw new ValidationError("output_names", `unknown output "${w}"; the model's outputs are ${names.join(", ")}`);
  const probName = names.find((n) => /prob/i.test(n) && outputs[n]!.type.startsWith("float")) ?? names.find((n) => outputs[n]!.type.startsWith("float"));
  const labelName = names.find((n) => /label/i.test(n) && !outputs[n]!.type.startsWith("float"));
  const result: RowOutput[] = [];
  for (let r = 0; r < rows; r++) {
    const out: RowOutput = { $typeName: "mlmesh.inference.v1.RowOutput", score: 0, label: "", outputs: {}, classProbabilities: {} };
    for (const n of wanted.length > 0 ? wanted : names) {
      const t = outputs[n]!;
      const per = rows > 0 && t.dims[0] === rows ? product(t.dims.slice(1)) : 0;
      const slice = per > 0 ? t.data.subarray(r * per, (r + 1) * per) : t.data;
      out.outputs[n] = { $typeName: "mlmesh.inference.v1.OutputValues", values: Array.from(slice as ArrayLike<number | bigint>, Number), strings: [], shape: t.dims.slice(1).map(BigInt) };
    }
    if (probName) {
      const t = outputs[probName]!;
      const per = product(t.dims.slice(1));
      const p = Array.from(t.data.subarray(r * per, (r + 1) * per) as Float32Array, Number);
      if (p.length === 1) out.score = p[0]!;
      else if (p.length === 2) {
        out.score = p[1]!;
        out.classProbabilities = { "0": p[0]!, "1": p[1]! };
      } else if (p.length > 2) {
        let best = 0;
        p.forEach((x, i) => {
          out.classProbabilities[String(i)] = x;
          if (x > p[best]!) best = i;
        });
        out.score = p[best]!;
        out.label = String(best);
      }
    }
    if (labelName) {
      const t = outputs[labelName]!;
      const per = product(t.dims.slice(1)) || 1;
      out.label = String(t.data[r * per]);
    }
    result.push(out);
  }
  return result;
}
