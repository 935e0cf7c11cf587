// Reads what the registry records about an uploaded ONNX file: the signature as
// onnxruntime-node sees it (names, kinds, element types, shapes) plus what only the
// ModelProto holds (IR version, opsets, producer, metadata props, doc strings, full types).
// The ModelProto is walked with positioned reads, skipping initializers, so the weights of
// a large model are never read into JS memory here.

import { open, type FileHandle } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import * as ort from "onnxruntime-node";
import {
  ArtifactSchema,
  OnnxValueKind,
  SignatureSchema,
  TensorSpecSchema,
  type Artifact,
  type Dimension,
  type Signature,
  type TensorSpec,
} from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";

export interface OnnxInspection {
  /** Artifact fields read from the file (sha256 and size are the caller's). */
  readonly artifact: Artifact;
  readonly signature: Signature;
}

/** ONNX TensorProto.DataType names, indexed by number (as in ONNX's type strings). */
const ONNX_TYPE_NAMES = [
  "undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64", "string", "bool", "float16", "double",
  "uint32", "uint64", "complex64", "complex128", "bfloat16", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2",
  "float8e5m2fnuz", "uint4", "int4", "float4e2m1", "float8e8m0", "uint2", "int2",
];

/** onnxruntime-node's tensor type names -> ONNX element type numbers. */
const ORT_TYPES: Record<string, number> = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, string: 8, bool: 9, float16: 10,
  float64: 11, uint32: 12, uint64: 13, uint4: 21, int4: 22,
};

/**
 * Inspect the ONNX file at `path`. A file onnxruntime cannot load is refused with a
 * ValidationError on `field` (the upload's chunks), since nothing else can serve it either.
 */
export async function inspectOnnxFile(path: string, field = "chunk"): Promise<OnnxInspection> {
  let session: ort.InferenceSession;
  try {
    // No graph optimisation: only the signature is wanted, and loading stays cheap.
    session = await ort.InferenceSession.create(path, { graphOptimizationLevel: "disabled" });
  } catch (err) {
    const why = (err instanceof Error ? err.message : String(err)).replace(/^Load model from \S+ failed:\s*/, "");
    throw new ValidationError(field, `the uploaded file is not an ONNX model onnxruntime can load (${why.slice(0, 300)})`);
  }
  let proto: ProtoInfo;
  try {
    proto = await readModelProto(path);
  } finally {
    await session.release().catch(() => undefined);
  }
  const spec = (meta: ort.InferenceSession.ValueMetadata): TensorSpec => {
    const info = proto.values.get(meta.name);
    if (info) return create(TensorSpecSchema, { ...info, name: meta.name });
    // Not in the graph's declared values (should not happen): what onnxruntime says.
    if (!meta.isTensor) return create(TensorSpecSchema, { name: meta.name, kind: OnnxValueKind.UNSPECIFIED });
    const elem = ORT_TYPES[meta.type] ?? 0;
    return create(TensorSpecSchema, {
      name: meta.name,
      kind: OnnxValueKind.TENSOR,
      elementType: elem,
      shape: { dims: meta.shape.map((d): Dimension => ({ value: typeof d === "number" && d >= 0 ? { case: "size", value: BigInt(d) } : typeof d === "string" && d ? { case: "symbol", value: d } : { case: undefined } } as Dimension)) },
      typeDescription: `tensor(${ONNX_TYPE_NAMES[elem] ?? "undefined"})`,
    });
  };
  return {
    artifact: create(ArtifactSchema, {
      irVersion: proto.irVersion,
      opsetVersions: proto.opsets,
      producerName: proto.producerName,
      producerVersion: proto.producerVersion,
      metadataProps: proto.metadataProps,
    }),
    signature: create(SignatureSchema, {
      inputs: session.inputMetadata.map(spec),
      outputs: session.outputMetadata.map(spec),
    }),
  };
}

interface ProtoInfo {
  irVersion: bigint;
  producerName: string;
  producerVersion: string;
  opsets: Record<string, bigint>;
  metadataProps: Record<string, string>;
  values: Map<string, Omit<TensorSpec, "name" | "$typeName">>;
}

/** A read-through window over a file, so walking fields costs few syscalls. */
class Window {
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;
  constructor(
    private readonly fh: FileHandle | undefined,
    readonly size: number,
    initial?: Buffer,
  ) {
    if (initial) this.buf = initial;
  }
  async bytes(pos: number, len: number): Promise<Buffer> {
    if (pos < 0 || pos + len > this.size) throw new Error("truncated protobuf");
    if (pos >= this.start && pos + len <= this.start + this.buf.length) return this.buf.subarray(pos - this.start, pos - this.start + len);
    if (!this.fh) throw new Error("truncated protobuf");
    const want = Math.min(Math.max(len, 64 * 1024), this.size - pos);
    const b = Buffer.alloc(want);
    const { bytesRead } = await this.fh.read(b, 0, want, pos);
    if (bytesRead < len) throw new Error("truncated protobuf");
    this.buf = b.subarray(0, bytesRead);
    this.start = pos;
    return this.buf.subarray(0, len);
  }
}

interface Field {
  readonly no: number;
  readonly wire: number;
  /** Varint value (wire 0). */
  readonly varint: bigint;
  /** Start and length of a length-delimited value (wire 2). */
  readonly pos: number;
  readonly len: number;
}

async function readVarint(w: Window, pos: number, end: number): Promise<[bigint, number]> {
  const b = await w.bytes(pos, Math.min(10, end - pos));
  let v = 0n;
  for (let i = 0; i < b.length; i++) {
    v |= BigInt(b[i]! & 0x7f) << BigInt(7 * i);
    if ((b[i]! & 0x80) === 0) return [v, pos + i + 1];
  }
  throw new Error("bad varint");
}

async function* fields(w: Window, start: number, end: number): AsyncGenerator<Field> {
  let pos = start;
  while (pos < end) {
    const [tag, p1] = await readVarint(w, pos, end);
    const no = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (wire === 0) {
      const [v, p2] = await readVarint(w, p1, end);
      yield { no, wire, varint: v, pos: p1, len: 0 };
      pos = p2;
    } else if (wire === 2) {
      const [len, p2] = await readVarint(w, p1, end);
      const n = Number(len);
      if (p2 + n > end) throw new Error("truncated protobuf");
      yield { no, wire, varint: 0n, pos: p2, len: n };
      pos = p2 + n;
    } else if (wire === 1) {
      yield { no, wire, varint: 0n, pos: p1, len: 8 };
      pos = p1 + 8;
    } else if (wire === 5) {
      yield { no, wire, varint: 0n, pos: p1, len: 4 };
      pos = p1 + 4;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

async function text(w: Window, f: Field): Promise<string> {
  return (await w.bytes(f.pos, f.len)).toString("utf8");
}

async function readModelProto(path: string): Promise<ProtoInfo> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const w = new Window(fh, size);
    const info: ProtoInfo = { irVersion: 0n, producerName: "", producerVersion: "", opsets: {}, metadataProps: {}, values: new Map() };
    for await (const f of fields(w, 0, size)) {
      if (f.no === 1 && f.wire === 0) info.irVersion = f.varint;
      else if (f.no === 2 && f.wire === 2) info.producerName = await text(w, f);
      else if (f.no === 3 && f.wire === 2) info.producerVersion = await text(w, f);
      else if (f.no === 8 && f.wire === 2) {
        let domain = "";
        let version = 0n;
        for await (const g of fields(w, f.pos, f.pos + f.len)) {
          if (g.no === 1 && g.wire === 2) domain = await text(w, g);
          if (g.no === 2 && g.wire === 0) version = g.varint;
        }
        // "ai.onnx" and "" are the same default domain; the contract spells it "".
        info.opsets[domain === "ai.onnx" ? "" : domain] = version;
      } else if (f.no === 14 && f.wire === 2) {
        let key = "";
        let value = "";
        for await (const g of fields(w, f.pos, f.pos + f.len)) {
          if (g.no === 1 && g.wire === 2) key = await text(w, g);
          if (g.no === 2 && g.wire === 2) value = await text(w, g);
        }
        info.metadataProps[key] = value;
      } else if (f.no === 7 && f.wire === 2) {
        // GraphProto: only inputs (11) and outputs (12); nodes and initializers are skipped.
        for await (const g of fields(w, f.pos, f.pos + f.len)) {
          if ((g.no === 11 || g.no === 12) && g.wire === 2) {
            const buf = Buffer.from(await w.bytes(g.pos, g.len));
            const v = await valueInfo(new Window(undefined, buf.length, buf));
            if (v.name && !info.values.has(v.name)) info.values.set(v.name, v.spec);
          }
        }
      }
    }
    return info;
  } catch (err) {
    throw new ValidationError("chunk", `the uploaded file is not a well-formed ONNX ModelProto (${(err as Error).message})`);
  } finally {
    await fh.close();
  }
}

interface TypeInfo {
  kind: OnnxValueKind;
  elementType: number;
  shape?: { dims: Dimension[] };
  description: string;
}

async function valueInfo(w: Window): Promise<{ name: string; spec: Omit<TensorSpec, "name" | "$typeName"> }> {
  let name = "";
  let doc = "";
  let type: TypeInfo = { kind: OnnxValueKind.UNSPECIFIED, elementType: 0, description: "" };
  for await (const f of fields(w, 0, w.size)) {
    if (f.no === 1 && f.wire === 2) name = await text(w, f);
    else if (f.no === 3 && f.wire === 2) doc = await text(w, f);
    else if (f.no === 2 && f.wire === 2) type = await typeProto(w, f.pos, f.pos + f.len);
  }
  return {
    name,
    spec: { kind: type.kind, elementType: type.elementType, shape: type.shape ? { $typeName: "mlmesh.registry.v1.Shape", dims: type.shape.dims } : undefined, typeDescription: type.description, docString: doc },
  };
}

async function typeProto(w: Window, start: number, end: number): Promise<TypeInfo> {
  for await (const f of fields(w, start, end)) {
    if (f.wire !== 2) continue;
    if (f.no === 1 || f.no === 8) {
      let elem = 0;
      let shape: { dims: Dimension[] } | undefined;
      for await (const g of fields(w, f.pos, f.pos + f.len)) {
        if (g.no === 1 && g.wire === 0) elem = Number(g.varint);
        if (g.no === 2 && g.wire === 2) {
          const dims: Dimension[] = [];
          for await (const d of fields(w, g.pos, g.pos + g.len)) {
            if (d.no !== 1 || d.wire !== 2) continue;
            let value: Dimension["value"] = { case: undefined };
            for await (const e of fields(w, d.pos, d.pos + d.len)) {
              if (e.no === 1 && e.wire === 0) value = { case: "size", value: BigInt.asIntN(64, e.varint) };
              if (e.no === 2 && e.wire === 2) value = { case: "symbol", value: await text(w, e) };
            }
            dims.push({ $typeName: "mlmesh.registry.v1.Dimension", value });
          }
          shape = { dims };
        }
      }
      const name = ONNX_TYPE_NAMES[elem] ?? "undefined";
      return f.no === 1
        ? { kind: OnnxValueKind.TENSOR, elementType: elem, shape, description: `tensor(${name})` }
        : { kind: OnnxValueKind.SPARSE_TENSOR, elementType: elem, shape, description: `sparse_tensor(${name})` };
    }
    if (f.no === 4 || f.no === 9) {
      let inner: TypeInfo = { kind: OnnxValueKind.UNSPECIFIED, elementType: 0, description: "undefined" };
      for await (const g of fields(w, f.pos, f.pos + f.len)) if (g.no === 1 && g.wire === 2) inner = await typeProto(w, g.pos, g.pos + g.len);
      return f.no === 4
        ? { kind: OnnxValueKind.SEQUENCE, elementType: inner.elementType, description: `seq(${inner.description})` }
        : { kind: OnnxValueKind.OPTIONAL, elementType: inner.elementType, description: `optional(${inner.description})` };
    }
    if (f.no === 5) {
      let key = 0;
      let inner: TypeInfo = { kind: OnnxValueKind.UNSPECIFIED, elementType: 0, description: "undefined" };
      for await (const g of fields(w, f.pos, f.pos + f.len)) {
        if (g.no === 1 && g.wire === 0) key = Number(g.varint);
        if (g.no === 2 && g.wire === 2) inner = await typeProto(w, g.pos, g.pos + g.len);
      }
      return { kind: OnnxValueKind.MAP, elementType: inner.elementType, description: `map(${ONNX_TYPE_NAMES[key] ?? "undefined"},${inner.description})` };
    }
  }
  return { kind: OnnxValueKind.UNSPECIFIED, elementType: 0, description: "" };
}
