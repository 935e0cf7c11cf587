// How entity keys and feature values are checked and stored. A row's values are one JSON
// array positional to the view's stored features (a view only ever appends features), so
// reading an entity is one lookup and one JSON.parse, the cheapest decode Node has.

import { ValidationError } from "../../lib/errors.js";
import type { EntityDef, FeatureDef, Scalar, ValueKind } from "./types.js";

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

export function kindOf(v: Scalar): string {
  if (v === null) return "null";
  if (typeof v === "bigint") return "int64";
  if (typeof v === "number") return "float64";
  if (typeof v === "string") return "string";
  if (typeof v === "boolean") return "bool";
  return "float_vector";
}

/** One key column normalised to its declared type, as a string. */
function keyPart(e: EntityDef, v: Scalar | undefined, field: string): string {
  if (v === undefined || v === null) throw new ValidationError(field, `missing entity key ${e.name}`);
  if (e.type === "int64") {
    if (typeof v === "bigint") {
      if (v < INT64_MIN || v > INT64_MAX) throw new ValidationError(`${field}.${e.name}`, "out of int64 range");
      return v.toString();
    }
    // An int64 key also accepts a decimal string, so `user_id=42` from a CLI addresses the same entity.
    if (typeof v === "string" && /^-?\d{1,19}$/.test(v)) {
      const b = BigInt(v);
      if (b >= INT64_MIN && b <= INT64_MAX) return b.toString();
    }
    throw new ValidationError(`${field}.${e.name}`, `expected an int64 key, got ${kindOf(v)} ${JSON.stringify(String(v)).slice(0, 80)}`);
  }
  if (typeof v === "string") return v;
  if (typeof v === "bigint") return v.toString();
  throw new ValidationError(`${field}.${e.name}`, `expected a string key, got ${kindOf(v)}`);
}

/**
 * The storage key of an entity for a view's key columns. `exact`: the row must carry
 * exactly these columns (writes); reads may carry the keys of several views.
 */
export function entityKeyOf(
  entities: readonly EntityDef[],
  keys: Readonly<Record<string, Scalar>>,
  field: string,
  exact: boolean,
  viewName: string,
): string {
  if (exact) {
    for (const k of Object.keys(keys)) {
      if (!entities.some((e) => e.name === k)) {
        throw new ValidationError(`${field}.${k}`, `is not an entity key of view ${viewName} (keys: ${entities.map((e) => e.name).join(", ")})`);
      }
    }
  }
  if (entities.length === 1) {
    const e = entities[0]!;
    const v = keys[e.name];
    if (v === undefined) throw new ValidationError(field, `missing entity key ${e.name} needed by view ${viewName}`);
    return keyPart(e, v, field);
  }
  const parts: string[] = [];
  for (const e of entities) {
    if (keys[e.name] === undefined) throw new ValidationError(field, `missing entity key ${e.name} needed by view ${viewName}`);
    parts.push(keyPart(e, keys[e.name], field));
  }
  // JSON so a string key containing any separator cannot collide with a composite one.
  return JSON.stringify(parts);
}

/** Check `v` against a feature's type and return its JSON-storable form. */
export function encodeValue(v: Scalar, f: FeatureDef, field: string): unknown {
  if (v === null) return null;
  switch (f.type) {
    case "float32":
    case "float64": {
      if (typeof v !== "number" && typeof v !== "bigint") throw wrongType(field, f, v);
      const n = f.type === "float32" ? Math.fround(Number(v)) : Number(v);
      // JSON has no NaN or infinities; they are stored as their names and typed back on read.
      return Number.isFinite(n) ? n : String(n);
    }
    case "int64":
      if (typeof v !== "bigint") throw wrongType(field, f, v);
      if (v < INT64_MIN || v > INT64_MAX) throw new ValidationError(field, `${f.name}: out of int64 range`);
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
    case "string":
      if (typeof v !== "string") throw wrongType(field, f, v);
      return v;
    case "bool":
      if (typeof v !== "boolean") throw wrongType(field, f, v);
      return v;
    case "float_vector": {
      if (!Array.isArray(v)) throw wrongType(field, f, v);
      if (f.vectorDimension > 0 && v.length !== f.vectorDimension) {
        throw new ValidationError(field, `${f.name}: expected a vector of ${f.vectorDimension} floats, got ${v.length}`);
      }
      const out = new Array<number>(v.length);
      for (let i = 0; i < v.length; i++) {
        const x = Math.fround(v[i]!);
        if (!Number.isFinite(x)) throw new ValidationError(field, `${f.name}: vector element ${i} is not a finite float`);
        out[i] = x;
      }
      return out;
    }
  }
}

function wrongType(field: string, f: FeatureDef, v: Scalar): ValidationError {
  return new ValidationError(field, `${f.name}: expected ${f.type}, got ${kindOf(v)}`);
}

/** The inverse of encodeValue for a value read back from a store. */
export function decodeValue(raw: unknown, type: ValueKind): Scalar {
  if (raw === null || raw === undefined) return null;
  switch (type) {
    case "float32":
    case "float64":
      return typeof raw === "number" ? raw : Number(raw);
    case "int64":
      return BigInt(raw as number | string);
    case "float_vector":
      return raw as number[];
    default:
      return raw as string | boolean;
  }
}
