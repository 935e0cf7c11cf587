// The hostile-input corpus, generated from the service descriptors with a seeded RNG, so a
// failing case is reproduced from (seed, method, case index) alone. For every method:
// random bytes, valid messages and their truncations and bit flips, fields sent with the
// wrong wire type, nesting to just under and far over the decoder's recursion limit,
// a repeated field filled up to the message size limit, a message over that limit, and
// every name-like string field set to a path-traversal payload; for the Connect JSON side:
// valid JSON, wrong JSON types, unknown fields, deep nesting, huge strings and garbage.
// Cases are built per method on demand so only one method's payloads are in memory at once.

import { createHash } from "node:crypto";
import { fromBinary, ScalarType, toJson, type DescField, type DescMessage, type DescMethod, type DescService, type JsonValue } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

/** Seeded PRNG (mulberry32): small, fast and the same on every platform. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** A per-method seed, so one method's cases do not depend on which methods ran before. */
export function methodSeed(seed: number, path: string): number {
  return createHash("sha256").update(`${seed}|${path}`).digest().readUInt32LE(0);
}

/** Strings a name-like field must refuse (INVALID_ARGUMENT) or not find (NOT_FOUND). */
export const TRAVERSAL_PAYLOADS: readonly string[] = [
  "../fuzz-escape",
  "..%2ffuzz-escape",
  "/tmp/fuzz-escape-abs",
  "fuzz\u0000escape",
  "..\\fuzz-escape",
  "..",
];

/**
 * Fields naming a stored thing (a model, view, experiment, endpoint, job, upload, file): the
 * ones a traversal payload could turn into a path. Free text (description, reason, owner),
 * request ids and page tokens are not names.
 */
export const NAME_FIELD = /^(name|model_name|model_ref|alias|aliases|view|views|feature_set|refs|endpoint|key|experiment_key|experiment_keys|upload_id|job_id|rollout_id|shadow_model_ref|model|input_path|output_path|reject_path|feature_names)$/;

export type CaseKind =
  | "random-bytes"
  | "valid"
  | "truncated"
  | "bit-flip"
  | "wrong-wire-type"
  | "deep-nesting"
  | "deep-groups"
  | "huge-repeated"
  | "oversized"
  | "traversal"
  | "json-traversal"
  | "json-valid"
  | "json-wrong-type"
  | "json-unknown-field"
  | "json-deep"
  | "json-huge-string"
  | "json-garbage";

export interface FuzzCase {
  /** Position in the method's list: with the seed and the method, enough to rebuild it. */
  readonly index: number;
  readonly kind: CaseKind;
  readonly transport: "grpc" | "connect-json";
  /** gRPC: the protobuf message(s) (one per stream frame). Connect: the JSON text(s). */
  readonly frames: readonly Uint8Array[] | readonly string[];
  /** What was done, for the report (field path, payload, depth...). */
  readonly recipe: string;
  /** For traversal cases: the codes that count as a refusal. */
  readonly expect?: readonly string[];
}

export interface CorpusOptions {
  readonly seed: number;
  /** MLMESH_MAX_MESSAGE_BYTES of the servers under test. */
  readonly maxMessageBytes: number;
}

const MAX_GEN_DEPTH = 4;

function isNameField(f: DescField): boolean {
  return NAME_FIELD.test(f.name);
}

function randomString(rng: Rng, f: DescField | undefined): string {
  if (f && isNameField(f) && rng.chance(0.6)) return rng.pick(["fz_model", "fz_view", "fz-endpoint", "fz_model@1", "fz_model@production", "a", "Z9._-"]);
  switch (rng.int(7)) {
    case 0:
      return "";
    case 1:
      return rng.pick(TRAVERSAL_PAYLOADS);
    case 2:
      return "é✓\u{1F600}\u202e";
    case 3:
      return "x".repeat(1 + rng.int(2000));
    case 4:
      return String(rng.int(1e9));
    default: {
      let s = "";
      const n = rng.int(24);
      for (let i = 0; i < n; i++) s += String.fromCharCode(32 + rng.int(95));
      return s;
    }
  }
}

const INT32_EDGES = [0, 1, -1, 2147483647, -2147483648, 7];
const UINT32_EDGES = [0, 1, 4294967295, 7];
const INT64_EDGES = [0n, 1n, -1n, 9223372036854775807n, -9223372036854775808n, 1767268800n];
const UINT64_EDGES = [0n, 1n, 18446744073709551615n, 1767268800n];
const FLOAT_EDGES = [0, -0, 1.5, -1, NaN, Infinity, -Infinity, 3.4e38, 1e-45];
const DOUBLE_EDGES = [0, -0, 0.5, -1, NaN, Infinity, -Infinity, 1.7976931348623157e308, 5e-324];

function writeScalar(w: BinaryWriter, no: number, t: ScalarType, rng: Rng, f: DescField | undefined): void {
  switch (t) {
    case ScalarType.DOUBLE:
      w.tag(no, WireType.Bit64).double(rng.chance(0.5) ? rng.pick(DOUBLE_EDGES) : (rng.next() - 0.5) * 1e6);
      return;
    case ScalarType.FLOAT:
      w.tag(no, WireType.Bit32).float(rng.chance(0.5) ? rng.pick(FLOAT_EDGES) : rng.next() * 100);
      return;
    case ScalarType.INT64:
      w.tag(no, WireType.Varint).int64(rng.chance(0.5) ? rng.pick(INT64_EDGES) : BigInt(rng.int(1e9)));
      return;
    case ScalarType.UINT64:
      w.tag(no, WireType.Varint).uint64(rng.chance(0.5) ? rng.pick(UINT64_EDGES) : BigInt(rng.int(1e9)));
      return;
    case ScalarType.INT32:
      w.tag(no, WireType.Varint).int32(rng.chance(0.5) ? rng.pick(INT32_EDGES) : rng.int(1000));
      return;
    case ScalarType.FIXED64:
      w.tag(no, WireType.Bit64).fixed64(rng.pick(UINT64_EDGES));
      return;
    case ScalarType.FIXED32:
      w.tag(no, WireType.Bit32).fixed32(rng.pick(UINT32_EDGES));
      return;
    case ScalarType.BOOL:
      w.tag(no, WireType.Varint).bool(rng.chance(0.5));
      return;
    case ScalarType.STRING:
      w.tag(no, WireType.LengthDelimited).string(randomString(rng, f));
      return;
    case ScalarType.BYTES:
      w.tag(no, WireType.LengthDelimited).bytes(rng.bytes(rng.int(64)));
      return;
    case ScalarType.UINT32:
      w.tag(no, WireType.Varint).uint32(rng.pick(UINT32_EDGES));
      return;
    case ScalarType.SFIXED32:
      w.tag(no, WireType.Bit32).sfixed32(rng.pick(INT32_EDGES));
      return;
    case ScalarType.SFIXED64:
      w.tag(no, WireType.Bit64).sfixed64(rng.pick(INT64_EDGES));
      return;
    case ScalarType.SINT32:
      w.tag(no, WireType.Varint).sint32(rng.pick(INT32_EDGES));
      return;
    case ScalarType.SINT64:
      w.tag(no, WireType.Varint).sint64(rng.pick(INT64_EDGES));
      return;
  }
}

function writeEnum(w: BinaryWriter, no: number, f: DescField & { enum: { values: readonly { number: number }[] } }, rng: Rng): void {
  // Mostly declared values, sometimes one no version of the proto knows.
  w.tag(no, WireType.Varint).int32(rng.chance(0.8) ? rng.pick(f.enum.values).number : rng.pick([-1, 99, 2147483647]));
}

/** A random message of `desc` on the wire: fields present at random, one member per oneof. */
export function randomMessage(desc: DescMessage, rng: Rng, depth = 0): Uint8Array {
  const w = new BinaryWriter();
  const chosenOneof = new Map<string, string>();
  for (const o of desc.oneofs) if (o.fields.length > 0) chosenOneof.set(o.name, rng.pick(o.fields).name);
  for (const f of desc.fields) {
    if (f.oneof) {
      if (chosenOneof.get(f.oneof.name) !== f.name || rng.chance(0.2)) continue;
    } else if (!rng.chance(0.65)) continue;
    writeField(w, f, rng, depth);
  }
  return w.finish();
}

function writeField(w: BinaryWriter, f: DescField, rng: Rng, depth: number): void {
  const no = f.number;
  switch (f.fieldKind) {
    case "scalar":
      writeScalar(w, no, f.scalar, rng, f);
      return;
    case "enum":
      writeEnum(w, no, f, rng);
      return;
    case "message":
      if (depth >= MAX_GEN_DEPTH) return;
      w.tag(no, WireType.LengthDelimited).bytes(randomMessage(f.message, rng, depth + 1));
      return;
    case "list": {
      const n = rng.int(4);
      for (let i = 0; i < n; i++) {
        if (f.listKind === "scalar") writeScalar(w, no, f.scalar, rng, f);
        else if (f.listKind === "enum") writeEnum(w, no, f, rng);
        else if (depth < MAX_GEN_DEPTH) w.tag(no, WireType.LengthDelimited).bytes(randomMessage(f.message, rng, depth + 1));
      }
      return;
    }
    case "map": {
      const n = rng.int(3);
      for (let i = 0; i < n; i++) {
        const e = new BinaryWriter();
        writeScalar(e, 1, f.mapKey, rng, undefined);
        if (f.mapKind === "scalar") writeScalar(e, 2, f.scalar, rng, undefined);
        else if (f.mapKind === "enum") writeEnum(e, 2, f, rng);
        else if (depth < MAX_GEN_DEPTH) e.tag(2, WireType.LengthDelimited).bytes(randomMessage(f.message, rng, depth + 1));
        w.tag(no, WireType.LengthDelimited).bytes(e.finish());
      }
      return;
    }
  }
}

/** Every field of the message, with the wire type it must be sent with. */
function declaredWireType(f: DescField): WireType {
  if (f.fieldKind === "message" || f.fieldKind === "map") return WireType.LengthDelimited;
  if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) return WireType.Varint;
  if (f.fieldKind === "list" && f.listKind === "message") return WireType.LengthDelimited;
  const t = f.fieldKind === "scalar" || f.fieldKind === "list" ? f.scalar : undefined;
  switch (t) {
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WireType.Bit32;
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WireType.LengthDelimited;
    default:
      return WireType.Varint;
  }
}

/** A field sent with a wire type other than its own (after a valid prefix). */
function wrongWireType(desc: DescMessage, rng: Rng): { bytes: Uint8Array; recipe: string } {
  const w = new BinaryWriter();
  w.raw(randomMessage(desc, rng, 2));
  const f = desc.fields.length > 0 ? rng.pick(desc.fields) : undefined;
  const no = f?.number ?? 1 + rng.int(20);
  const own = f ? declaredWireType(f) : WireType.Varint;
  const wrong = rng.pick([WireType.Varint, WireType.Bit64, WireType.LengthDelimited, WireType.StartGroup, WireType.EndGroup, WireType.Bit32, 6 as WireType, 7 as WireType].filter((t) => t !== own));
  // Raw tag so even the invalid wire types 6 and 7 go out.
  w.uint32((no << 3) | wrong);
  switch (wrong) {
    case WireType.Varint:
      w.uint64(18446744073709551615n);
      break;
    case WireType.Bit64:
      w.raw(rng.bytes(8));
      break;
    case WireType.Bit32:
      w.raw(rng.bytes(4));
      break;
    case WireType.LengthDelimited:
      w.bytes(rng.bytes(rng.int(40)));
      break;
    default:
      w.raw(rng.bytes(rng.int(8)));
  }
  return { bytes: w.finish(), recipe: `field ${f?.name ?? "?"} (#${no}) as wire type ${wrong} instead of ${own}` };
}

/** A chain of message fields from `desc` back to a type already on the chain (a recursive type). */
function findCycle(desc: DescMessage): { prefix: DescField[]; loop: DescField[] } | undefined {
  const path: Array<{ type: DescMessage; via: DescField | undefined }> = [{ type: desc, via: undefined }];
  const seen = new Set<string>();
  const dfs = (m: DescMessage): { prefix: DescField[]; loop: DescField[] } | undefined => {
    for (const f of m.fields) {
      const child = f.fieldKind === "message" ? f.message : f.fieldKind === "list" && f.listKind === "message" ? f.message : undefined;
      if (!child) continue;
      const at = path.findIndex((p) => p.type.typeName === child.typeName);
      if (at >= 0) {
        const fields = path.slice(1).map((p) => p.via!).concat(f);
        return { prefix: fields.slice(0, at), loop: fields.slice(at) };
      }
      if (seen.has(child.typeName)) continue;
      seen.add(child.typeName);
      path.push({ type: child, via: f });
      const r = dfs(child);
      path.pop();
      if (r) return r;
    }
    return undefined;
  };
  return dfs(desc);
}

function wrap(fields: readonly DescField[], inner: Uint8Array): Uint8Array {
  let bytes = inner;
  for (let i = fields.length - 1; i >= 0; i--) {
    const w = new BinaryWriter();
    w.tag(fields[i]!.number, WireType.LengthDelimited).bytes(bytes);
    bytes = w.finish();
  }
  return bytes;
}

/** Nesting `levels` deep: through a recursive type when the message has one, else through its longest chain. */
function deepNesting(desc: DescMessage, levels: number): { bytes: Uint8Array; recipe: string } | undefined {
  const cycle = findCycle(desc);
  if (cycle) {
    let inner: Uint8Array = new Uint8Array(0);
    const reps = Math.max(1, Math.ceil(levels / cycle.loop.length));
    for (let i = 0; i < reps; i++) inner = wrap(cycle.loop, inner);
    return { bytes: wrap(cycle.prefix, inner), recipe: `${cycle.prefix.map((f) => f.name).join(".")}(${cycle.loop.map((f) => f.name).join(".")})x${reps}` };
  }
  return undefined;
}

/** `depth` nested groups in an unknown field: the decoder must skip them without recursing forever. */
function deepGroups(depth: number): Uint8Array {
  const w = new BinaryWriter();
  for (let i = 0; i < depth; i++) w.uint32((19_999 << 3) | WireType.StartGroup);
  for (let i = 0; i < depth; i++) w.uint32((19_999 << 3) | WireType.EndGroup);
  return w.finish();
}

/** A repeated field (top level or one level down) filled to about `budget` bytes. */
function hugeRepeated(desc: DescMessage, rng: Rng, budget: number): { bytes: Uint8Array; recipe: string } | undefined {
  const candidates: Array<{ path: DescField[]; field: DescField }> = [];
  for (const f of desc.fields) {
    if (f.fieldKind === "list" || f.fieldKind === "map") candidates.push({ path: [], field: f });
    if (f.fieldKind === "message") for (const g of f.message.fields) if (g.fieldKind === "list" || g.fieldKind === "map") candidates.push({ path: [f], field: g });
  }
  if (candidates.length === 0) return undefined;
  const { path, field } = rng.pick(candidates);
  const w = new BinaryWriter();
  let n = 0;
  const element = (): Uint8Array => {
    // Smallest legal element: many elements per byte is what costs a decoder the most.
    if (field.fieldKind === "map") {
      const e = new BinaryWriter();
      e.tag(1, field.mapKey === ScalarType.STRING ? WireType.LengthDelimited : WireType.Varint);
      if (field.mapKey === ScalarType.STRING) e.string(`k${n}`);
      else e.uint32(n);
      return e.finish();
    }
    return new Uint8Array(0);
  };
  const numeric = field.fieldKind === "list" && field.listKind !== "message" && !(field.listKind === "scalar" && (field.scalar === ScalarType.STRING || field.scalar === ScalarType.BYTES));
  if (numeric) {
    // Packed: one length-delimited run of varints (1 byte each) or fixed-width values.
    const wt = declaredWireType(field);
    const width = wt === WireType.Bit64 ? 8 : wt === WireType.Bit32 ? 4 : 1;
    n = Math.floor(budget / width);
    w.tag(field.number, WireType.LengthDelimited).bytes(new Uint8Array(n * width).fill(1));
  } else {
    const payload = element();
    const per = 1 + 1 + payload.length + 2;
    const count = Math.floor(budget / per);
    for (; n < count; n++) {
      w.tag(field.number, WireType.LengthDelimited).bytes(field.fieldKind === "map" ? element() : payload);
    }
  }
  return { bytes: wrap(path, w.finish()), recipe: `${[...path, field].map((f) => f.name).join(".")} x${n}` };
}

/** Every name-like string field (top level and one message down), with the chain of fields to it. */
export function nameFields(desc: DescMessage): Array<{ path: DescField[]; field: DescField }> {
  const out: Array<{ path: DescField[]; field: DescField }> = [];
  const isString = (f: DescField) => (f.fieldKind === "scalar" || f.fieldKind === "list") && f.scalar === ScalarType.STRING;
  for (const f of desc.fields) {
    if (isString(f) && isNameField(f)) out.push({ path: [], field: f });
    if (f.fieldKind === "message" && !f.message.typeName.startsWith("google.")) {
      for (const g of f.message.fields) if (isString(g) && isNameField(g)) out.push({ path: [f], field: g });
    }
  }
  return out;
}

/** A request whose name fields hold ordinary names except `target`, which holds `payload`. */
function traversalMessage(desc: DescMessage, target: { path: DescField[]; field: DescField }, payload: string): Uint8Array {
  const top = new BinaryWriter();
  const nested = new Map<number, BinaryWriter>();
  for (const { path, field } of nameFields(desc)) {
    const value = path.length === target.path.length && path.every((p, i) => p === target.path[i]) && field === target.field ? payload : "fz_ok";
    const w = path.length === 0 ? top : (nested.get(path[0]!.number) ?? nested.set(path[0]!.number, new BinaryWriter()).get(path[0]!.number)!);
    w.tag(field.number, WireType.LengthDelimited).string(value);
  }
  for (const [no, w] of nested) top.tag(no, WireType.LengthDelimited).bytes(w.finish());
  return top.finish();
}

function tryJson(desc: DescMessage, bytes: Uint8Array): JsonValue | undefined {
  try {
    return toJson(desc, fromBinary(desc, bytes));
  } catch {
    return undefined;
  }
}

function wrongTypeFor(v: JsonValue, rng: Rng): JsonValue {
  if (typeof v === "string") return rng.pick([12345, true, [v], { v }]);
  if (typeof v === "number") return rng.pick(["not a number", "1e999999", [v], false]);
  if (typeof v === "boolean") return rng.pick(["yes", 1, null]);
  if (Array.isArray(v)) return rng.pick([{ "0": v[0] ?? null }, "[]", 7]);
  if (v && typeof v === "object") return rng.pick([[v], "object", 3.5]);
  return rng.pick(["null", 0, {}]);
}

/** The cases of one method. The same (seed, method) always yields the same list. */
export function methodCases(service: DescService, method: DescMethod, o: CorpusOptions): FuzzCase[] {
  const path = `/${service.typeName}/${method.name}`;
  const rng = new Rng(methodSeed(o.seed, path));
  const desc = method.input;
  const cases: Array<Omit<FuzzCase, "index">> = [];
  const grpc = (kind: CaseKind, frames: Uint8Array[], recipe: string, expect?: readonly string[]) => cases.push({ kind, transport: "grpc", frames, recipe, expect });
  const json = (kind: CaseKind, text: string, recipe: string, expect?: readonly string[]) => cases.push({ kind, transport: "connect-json", frames: [text], recipe, expect });
  const streaming = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";

  for (let i = 0; i < 4; i++) {
    const n = rng.pick([0, 1, 5, 64, 1024]);
    grpc("random-bytes", [rng.bytes(n)], `${n} random bytes`);
  }
  for (let i = 0; i < 4; i++) {
    const frames = streaming ? Array.from({ length: 1 + rng.int(3) }, () => randomMessage(desc, rng)) : [randomMessage(desc, rng)];
    grpc("valid", frames, `${frames.length} generated message(s) of ${frames.map((f) => f.length).join("+")} bytes`);
  }
  for (let i = 0; i < 4; i++) {
    const m = randomMessage(desc, rng);
    const cut = m.length > 1 ? 1 + rng.int(m.length - 1) : 0;
    grpc("truncated", [m.subarray(0, cut)], `generated ${m.length} bytes cut to ${cut}`);
  }
  for (let i = 0; i < 4; i++) {
    const m = Uint8Array.from(randomMessage(desc, rng));
    const flips: number[] = [];
    if (m.length > 0) {
      for (let k = 0; k < 1 + rng.int(8); k++) {
        const bit = rng.int(m.length * 8);
        m[bit >> 3]! ^= 1 << (bit & 7);
        flips.push(bit);
      }
    }
    grpc("bit-flip", [m], `generated ${m.length} bytes, bits ${flips.join(",")} flipped`);
  }
  for (let i = 0; i < 3; i++) {
    const { bytes, recipe } = wrongWireType(desc, rng);
    grpc("wrong-wire-type", [bytes], recipe);
  }
  // Just under protobuf-es's recursion limit (100) reaches the handler; far over must be refused.
  for (const levels of [95, 5000]) {
    const d = deepNesting(desc, levels);
    if (d) grpc("deep-nesting", [d.bytes], `${levels} levels: ${d.recipe}`);
  }
  grpc("deep-groups", [deepGroups(20_000)], "20000 nested groups in unknown field 19999");
  const huge = hugeRepeated(desc, rng, Math.floor(o.maxMessageBytes * 0.9));
  if (huge) grpc("huge-repeated", [huge.bytes], huge.recipe);
  grpc("oversized", [rng.bytes(o.maxMessageBytes + 4096)], `${o.maxMessageBytes + 4096} random bytes (limit ${o.maxMessageBytes})`);

  for (const target of nameFields(desc)) {
    for (const payload of TRAVERSAL_PAYLOADS) {
      grpc(
        "traversal",
        [traversalMessage(desc, target, payload)],
        `${[...target.path, target.field].map((f) => f.name).join(".")} = ${JSON.stringify(payload)}`,
        ["INVALID_ARGUMENT", "NOT_FOUND"],
      );
    }
  }

  // Connect JSON over HTTP/1.1.
  for (const target of nameFields(desc)) {
    for (const payload of ["../fuzz-escape", "fuzz\u0000escape"]) {
      const v = tryJson(desc, traversalMessage(desc, target, payload));
      if (v === undefined) continue;
      json("json-traversal", JSON.stringify(v), `${[...target.path, target.field].map((f) => f.jsonName).join(".")} = ${JSON.stringify(payload)}`, ["invalid_argument", "not_found"]);
    }
  }
  let valid: JsonValue | undefined;
  for (let i = 0; i < 12 && cases.filter((c) => c.kind === "json-valid").length < 3; i++) {
    const v = tryJson(desc, randomMessage(desc, rng));
    if (v === undefined) continue;
    valid ??= v;
    json("json-valid", JSON.stringify(v), "a generated message as proto JSON");
  }
  const base: Record<string, JsonValue> = valid && typeof valid === "object" && !Array.isArray(valid) ? (valid as Record<string, JsonValue>) : {};
  for (let i = 0; i < 4; i++) {
    const f = desc.fields.length > 0 ? rng.pick(desc.fields) : undefined;
    if (!f) break;
    const sample: JsonValue = base[f.jsonName] ?? (f.fieldKind === "list" ? ["x"] : f.fieldKind === "message" || f.fieldKind === "map" ? { a: 1 } : f.fieldKind === "scalar" && f.scalar === ScalarType.STRING ? "x" : 1);
    const bad = wrongTypeFor(sample, rng);
    json("json-wrong-type", JSON.stringify({ ...base, [f.jsonName]: bad }), `${f.jsonName} = ${JSON.stringify(bad).slice(0, 60)}`);
  }
  json("json-unknown-field", JSON.stringify({ ...base, zz_not_a_field: { nested: [1, 2, 3] } }), "unknown field zz_not_a_field");
  {
    // 5000 levels of JSON arrays/objects in the first message-typed field (or at the top).
    const f = desc.fields.find((x) => x.fieldKind === "message" || x.fieldKind === "map");
    const depth = 5000;
    const deep = "[".repeat(depth) + "]".repeat(depth);
    const text = f ? `{"${f.jsonName}":${"{\"a\":".repeat(depth)}1${"}".repeat(depth)}}` : `{"x":${deep}}`;
    json("json-deep", text, `${depth} levels in ${f?.jsonName ?? "an unknown field"}`);
  }
  {
    const f = desc.fields.find((x) => x.fieldKind === "scalar" && x.scalar === ScalarType.STRING);
    const size = Math.floor(o.maxMessageBytes * 0.9);
    const key = f?.jsonName ?? "huge";
    json("json-huge-string", `{"${key}":"${"A".repeat(size)}"}`, `${key} = ${size} characters`);
  }
  json("json-garbage", String.fromCharCode(...rng.bytes(200).map((b) => (b < 32 ? 32 + b : b))), "200 bytes of non-JSON");
  json("json-garbage", "{\"a\":", "truncated JSON");
  json("json-garbage", "\uD800\"", "lone surrogate");
  return cases.map((c, index) => ({ ...c, index }));
}

/** Total size of a method's cases, for the corpus figure. */
export function corpusBytes(cases: readonly FuzzCase[]): number {
  let n = 0;
  for (const c of cases) for (const f of c.frames) n += typeof f === "string" ? Buffer.byteLength(f) : f.length;
  return n;
}
