// Dense tensors as the inference domain passes them around: an ONNX Runtime element type,
// a flat typed array and its dims. Also the mapping between registry, OIP and ORT types.

import { ElementType, type TensorSpec } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";

export type DType = "float32" | "float64" | "int32" | "int64" | "bool";
export type TypedData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export interface DenseTensor {
  readonly type: DType;
  readonly data: TypedData;
  readonly dims: readonly number[];
}

/** What a loaded model expects of one input or output: type and dims (-1 = dynamic). */
export interface IoSpec {
  readonly name: string;
  readonly type: DType;
  readonly dims: readonly number[];
}

const FROM_ELEMENT: Partial<Record<ElementType, DType>> = {
  [ElementType.FLOAT]: "float32",
  [ElementType.DOUBLE]: "float64",
  [ElementType.INT32]: "int32",
  [ElementType.INT64]: "int64",
  [ElementType.BOOL]: "bool",
};

export function dtypeOfElement(e: ElementType): DType | undefined {
  return FROM_ELEMENT[e];
}

export const OIP_DATATYPE: Readonly<Record<DType, string>> = { float32: "FP32", float64: "FP64", int32: "INT32", int64: "INT64", bool: "BOOL" };
export const DTYPE_OF_OIP: Readonly<Record<string, DType>> = { FP32: "float32", FP64: "float64", INT32: "int32", INT64: "int64", BOOL: "bool" };
export const BYTES_PER_ELEMENT: Readonly<Record<DType, number>> = { float32: 4, float64: 8, int32: 4, int64: 8, bool: 1 };

export function allocate(type: DType, n: number): TypedData {
  switch (type) {
    case "float32":
      return new Float32Array(n);
    case "float64":
      return new Float64Array(n);
    case "int32":
      return new Int32Array(n);
    case "int64":
      return new BigInt64Array(n);
    case "bool":
      return new Uint8Array(n);
  }
}

/** A copy of little-endian bytes as a typed array (copied, so alignment never matters). */
export function fromRawBytes(type: DType, bytes: Uint8Array): TypedData {
  const out = allocate(type, bytes.length / BYTES_PER_ELEMENT[type]);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

export function toRawBytes(data: TypedData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The spec of a graph input/output from the registry signature; undefined when it is not a plain tensor we serve. */
export function ioSpecOf(t: TensorSpec): IoSpec | string {
  const type = dtypeOfElement(t.elementType);
  if (t.typeDescription && !t.typeDescription.startsWith("tensor(")) return `${t.name} is ${t.typeDescription} (sequences and maps such as ZipMap are not served; export with zipmap=False)`;
  if (!type) return `${t.name} has element type ${ElementType[t.elementType] ?? t.elementType}, not one of FLOAT, DOUBLE, INT32, INT64, BOOL`;
  const dims = (t.shape?.dims ?? [{ value: { case: undefined } }, { value: { case: undefined } }]).map((d) =>
    d.value.case === "size" ? Number(d.value.value) : -1,
  );
  return { name: t.name, type, dims };
}

export function product(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function toNumber(v: number | bigint): number {
  return typeof v === "bigint" ? Number(v) : v;
}
