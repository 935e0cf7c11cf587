// Hand-written proto3 JSON codecs for the few messages on the Connect JSON hot path
// (lib/connect-unary.ts), where protobuf-es's reflective fromJson/create/toJsonString cost more
// than the call's own work. A codec answers undefined for anything it does not read or write
// exactly as protobuf-es does (an unknown key, a null, an odd number form, a message literal
// of an unexpected shape); the caller then uses protobuf-es, so its result and its error
// messages stay the only ones clients ever see. Also the proto3 JSON primitives the codecs
// share, and mlmesh.types.v1 Value / EntityKey, which every service's requests carry.

import type { DescMessage, Message } from "@bufbuild/protobuf";
import type { EntityKey, FloatVector, Value } from "../gen/mlmesh/types/v1/types_pb.js";

/** The message a JSON text stands for, or undefined: let fromJson decide (and word the error). */
export type JsonDecoder = (text: string) => Message | undefined;
/** The text toJsonString writes for the message, or undefined: let toJsonString write it. */
export type JsonEncoder = (message: Message) => string | undefined;

const decoders = new Map<string, JsonDecoder>();
const encoders = new Map<string, JsonEncoder>();

/** Registers the decoder of one message type (by its full type name). */
export function registerJsonDecoder(typeName: string, decode: JsonDecoder): void {
  decoders.set(typeName, decode);
}

/** Registers the encoder of one message type (by its full type name). */
export function registerJsonEncoder(typeName: string, encode: JsonEncoder): void {
  encoders.set(typeName, encode);
}

export function jsonDecoder(typeName: string): JsonDecoder | undefined {
  return decoders.get(typeName);
}

export function jsonEncoder(typeName: string): JsonEncoder | undefined {
  return encoders.get(typeName);
}

/**
 * True when the message's fields, in field-number order, have exactly these JSON names. A
 * codec is written for one shape of its messages; when a field is added to the proto it
 * must not register (the field would be dropped), and its test says so.
 */
export function jsonFieldsAre(desc: DescMessage, jsonNames: readonly string[]): boolean {
  const names = desc.fields
    .concat()
    .sort((a, b) => a.number - b.number)
    .map((f) => f.jsonName);
  return names.length === jsonNames.length && names.every((n, i) => n === jsonNames[i]);
}

// ---------------------------------------------------------------------------------------
// Reading: each reader takes a value of JSON.parse's result and returns the field's value,
// or undefined for "not exactly as fromJson would read it".
// ---------------------------------------------------------------------------------------

/** A JSON object as JSON.parse makes it (so for-in walks its own keys only). */
export type JsonObject = { readonly [key: string]: unknown };

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** protobuf-es refuses strings that are not valid UTF-16 (a lone surrogate, e.g. "\ud800"). */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

export function readString(v: unknown): string | undefined {
  return typeof v === "string" && isWellFormed(v) ? v : undefined;
}

export function readBool(v: unknown): boolean | undefined {
  return typeof v === "boolean" ? v : undefined;
}

/** A finite number, or one of the three strings proto3 JSON has for the others. */
export function readDouble(v: unknown): number | undefined {
  // JSON.parse turns 1e999 into Infinity, which fromJson refuses as a number.
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (v === "NaN") return NaN;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  // Numbers written as strings ("1.5", "0x10") are fromJson's to read.
  return undefined;
}

const FLOAT32_MAX = 3.4028234663852886e38;

/** As readDouble, within float32's range (fromJson keeps the double as it is, unrounded). */
export function readFloat(v: unknown): number | undefined {
  const x = readDouble(v);
  return x !== undefined && (x > FLOAT32_MAX || x < -FLOAT32_MAX) && Number.isFinite(x) ? undefined : x;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const DECIMAL = /^-?[0-9]+$/;

/** An int64 given as a JSON number (a safe integer) or as a decimal string within range. */
export function readInt64(v: unknown): bigint | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) ? BigInt(v) : undefined;
  if (typeof v !== "string" || v.length > 20 || !DECIMAL.test(v)) return undefined;
  const n = BigInt(v);
  return n < INT64_MIN || n > INT64_MAX ? undefined : n;
}

/** A map key fromJson stores as it is: well-formed, and not the one that sets a prototype. */
export function readMapKey(k: string): string | undefined {
  return k === "__proto__" || !isWellFormed(k) ? undefined : k;
}

const VALUE = "mlmesh.types.v1.Value";
const FLOAT_VECTOR = "mlmesh.types.v1.FloatVector";

type ValueCase = NonNullable<Value["kind"]["case"]>;

/** The members of Value's `kind` oneof by both JSON names, each with its reader. */
const VALUE_MEMBERS = new Map<string, readonly [ValueCase, (v: unknown) => unknown]>();
for (const [kase, snake, read] of [
  ["doubleValue", "double_value", readDouble],
  ["floatValue", "float_value", readFloat],
  ["int64Value", "int64_value", readInt64],
  ["stringValue", "string_value", readString],
  ["boolValue", "bool_value", readBool],
  ["floatVectorValue", "float_vector_value", readFloatVector],
] as const) {
  VALUE_MEMBERS.set(kase, [kase, read]).set(snake, [kase, read]);
}

/** mlmesh.types.v1.Value: `{}` (unset), or exactly one member of its `kind` oneof. */
export function readValue(v: unknown): Value | undefined {
  if (!isJsonObject(v)) return undefined;
  let kind: Value["kind"] | undefined;
  for (const key in v) {
    // A second member is refused by fromJson, or (after a null) read in ways not copied here.
    if (kind !== undefined) return undefined;
    const m = VALUE_MEMBERS.get(key);
    const value = m?.[1](v[key]);
    if (value === undefined) return undefined;
    kind = { case: m![0], value } as Value["kind"];
  }
  return { $typeName: VALUE, kind: kind ?? { case: undefined } };
}

function readFloatVector(v: unknown): FloatVector | undefined {
  if (!isJsonObject(v)) return undefined;
  const values: number[] = [];
  for (const key in v) {
    if (key !== "values") return undefined;
    const list = v[key];
    if (!Array.isArray(list)) return undefined;
    for (const item of list) {
      const f = readFloat(item);
      if (f === undefined) return undefined;
      values.push(f);
    }
  }
  return { $typeName: FLOAT_VECTOR, values };
}

/** map<string, mlmesh.types.v1.Value> as the plain object protobuf-es keeps a map in. */
export function readValueMap(v: unknown): Record<string, Value> | undefined {
  if (!isJsonObject(v)) return undefined;
  const out: Record<string, Value> = {};
  for (const k in v) {
    const value = readValue(v[k]);
    if (value === undefined || readMapKey(k) === undefined) return undefined;
    out[k] = value;
  }
  return out;
}

export function readEntityKey(v: unknown): EntityKey | undefined {
  if (!isJsonObject(v)) return undefined;
  let keys: Record<string, Value> | undefined;
  for (const key in v) {
    if (key !== "keys") return undefined;
    keys = readValueMap(v[key]);
    if (keys === undefined) return undefined;
  }
  return { $typeName: "mlmesh.types.v1.EntityKey", keys: keys ?? {} };
}

// ---------------------------------------------------------------------------------------
// Writing: each writer returns the JSON text of one value as toJsonString writes it, or
// undefined where toJsonString would throw or the value is not of the field's plain type.
// ---------------------------------------------------------------------------------------

/** A double or float: JSON.stringify's number form, the three strings for the others. */
export function writeDouble(v: unknown): string | undefined {
  if (typeof v !== "number") return undefined;
  // "" + n is JSON.stringify(n) for finite n, -0 included ("0").
  if (Number.isFinite(v)) return "" + v;
  return v !== v ? '"NaN"' : v > 0 ? '"Infinity"' : '"-Infinity"';
}

export function writeInt64(v: unknown): string | undefined {
  return typeof v === "bigint" ? '"' + v + '"' : undefined;
}

// What JSON.stringify escapes: controls, quote, backslash, and (lone) surrogates. A string
// with none of them is written as it is, without the cost of entering JSON.stringify.
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;

/** JSON.stringify(s), quicker for the usual string that needs no escape. */
export function quote(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"';
}

export function writeString(v: unknown): string | undefined {
  return typeof v === "string" ? quote(v) : undefined;
}

export function writeBool(v: unknown): string | undefined {
  return typeof v === "boolean" ? (v ? "true" : "false") : undefined;
}

/** The JSON names of an enum's values by number, for `writeEnum`. */
export function enumJsonNames(desc: { readonly values: ReadonlyArray<{ readonly number: number; readonly name: string }> }): ReadonlyMap<number, string> {
  return new Map(desc.values.map((v) => [v.number, v.name]));
}

/** An enum value by its name; a number the enum does not know stays a number, as in toJson. */
export function writeEnum(v: unknown, names: ReadonlyMap<number, string>): string | undefined {
  if (typeof v !== "number" || !Number.isInteger(v)) return undefined;
  const name = names.get(v);
  return name === undefined ? "" + v : '"' + name + '"';
}

/** Whether a message field holds a plain object (a message literal or a map's object). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null;
}

/**
 * Whether for-in over this map object walks the same keys as protobuf-es's Object.keys: an
 * object with another prototype could bring inherited keys along.
 */
export function isPlainMap(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

const MAX_DURATION_SECONDS = 315_576_000_000;

/** google.protobuf.Duration in its JSON form ("1.5s", "-0.000001s"). */
export function writeDuration(v: unknown): string | undefined {
  if (!isObject(v)) return undefined;
  const seconds = v.seconds;
  const nanos = v.nanos;
  if (typeof seconds !== "bigint" || typeof nanos !== "number" || !Number.isInteger(nanos) || nanos <= -1e9 || nanos >= 1e9) return undefined;
  const s = Number(seconds);
  // Out of range, or signs that disagree: toJson throws, and that error is its to word.
  if (s > MAX_DURATION_SECONDS || s < -MAX_DURATION_SECONDS || (s > 0 && nanos < 0) || (s < 0 && nanos > 0)) return undefined;
  if (nanos === 0) return '"' + seconds + 's"';
  let frac = String(Math.abs(nanos)).padStart(9, "0");
  if (frac.endsWith("000000")) frac = frac.slice(0, 3);
  else if (frac.endsWith("000")) frac = frac.slice(0, 6);
  return '"' + (nanos < 0 && s === 0 ? "-" : "") + seconds + "." + frac + 's"';
}

/** mlmesh.types.v1.Value; `{}` when its kind is unset. */
export function writeValue(v: unknown): string | undefined {
  if (!isObject(v) || v.$typeName !== VALUE || !isObject(v.kind)) return undefined;
  const kind = v.kind as { case?: unknown; value?: unknown };
  let body: string | undefined;
  switch (kind.case) {
    case undefined:
      return "{}";
    case "stringValue":
      return typeof kind.value === "string" ? '{"stringValue":' + quote(kind.value) + "}" : undefined;
    case "int64Value":
      body = writeInt64(kind.value);
      return body === undefined ? undefined : '{"int64Value":' + body + "}";
    case "doubleValue":
      body = writeDouble(kind.value);
      return body === undefined ? undefined : '{"doubleValue":' + body + "}";
    case "floatValue":
      body = writeDouble(kind.value);
      return body === undefined ? undefined : '{"floatValue":' + body + "}";
    case "boolValue":
      return typeof kind.value === "boolean" ? '{"boolValue":' + kind.value + "}" : undefined;
    case "floatVectorValue":
      body = writeFloatVector(kind.value);
      return body === undefined ? undefined : '{"floatVectorValue":' + body + "}";
    default:
      return undefined;
  }
}

function writeFloatVector(v: unknown): string | undefined {
  if (!isObject(v) || v.$typeName !== FLOAT_VECTOR) return undefined;
  const values = writeList(v.values, writeDouble);
  if (values === undefined) return undefined;
  return values === "" ? "{}" : '{"values":' + values + "}";
}

/**
 * A repeated field: "" when empty (toJson leaves it out), else its JSON array; undefined
 * when it is not an array or an item is not of its type.
 */
export function writeList(v: unknown, item: (x: unknown) => string | undefined): string | undefined {
  if (!Array.isArray(v)) return undefined;
  if (v.length === 0) return "";
  let out = "[";
  for (let i = 0; i < v.length; i++) {
    const x = item(v[i]);
    if (x === undefined) return undefined;
    out += i === 0 ? x : "," + x;
  }
  return out + "]";
}

/** A map field: "" when empty (left out), else its JSON object in the map's own key order. */
export function writeMap(v: unknown, value: (x: unknown) => string | undefined): string | undefined {
  if (!isPlainMap(v)) return undefined;
  let out = "";
  for (const k in v) {
    const x = value(v[k]);
    if (x === undefined) return undefined;
    out += (out === "" ? "{" : ",") + quote(k) + ":" + x;
  }
  return out === "" ? "" : out + "}";
}
