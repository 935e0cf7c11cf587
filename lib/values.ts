// Reading mlmesh.types.v1.Value as a plain JavaScript scalar, for code that compares values
// (experiment targeting, router rule predicates) rather than feeding them to a model.

import type { Value } from "../gen/mlmesh/types/v1/types_pb.js";

export type Scalar = number | string | boolean;

/** The value as a number, string or boolean; int64 as a number; undefined for vectors or unset. */
export function scalarOf(v: Value | undefined): Scalar | undefined {
  const k = v?.kind;
  switch (k?.case) {
    case "doubleValue":
    case "floatValue":
      return k.value;
    case "int64Value":
      return Number(k.value);
    case "stringValue":
    case "boolValue":
      return k.value;
    default:
      return undefined;
  }
}

/**
 * A Value message built as the object literal create() would return, for hot paths that make
 * one per feature per request: create() walks the schema for each, this is one allocation.
 * A message of protobuf-es is a plain object with its `$typeName`; toBinary and isMessage
 * take this one like any other.
 */
export function valueMessage(kind: Value["kind"]): Value {
  return { $typeName: "mlmesh.types.v1.Value", kind };
}
