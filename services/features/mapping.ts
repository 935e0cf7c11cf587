// Translation between the mlmesh.features.v1 contract and the domain types. The only
// module (with service.ts) that knows the protobuf shapes; no behaviour lives here.

import { create, fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, ValueSchema as JsonValueSchema, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ApplyOutcome,
  FeatureSetSchema,
  FeatureStatus,
  FeatureViewSchema,
  TransformSchema,
  type FeatureSet,
  type FeatureView,
  type Transform,
} from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { ValueSchema, ValueType, type EntityKey, type Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import { ValidationError } from "../../lib/errors.js";
import type { ViewInput } from "./definitions.js";
import type { RegisteredTransform } from "./transforms.js";
import type { ApplyOutcomeKind, FeatureSetDef, KeyKind, Scalar, StoredFeatureSet, StoredView, ValueKind, ValueStatus } from "./types.js";

const KIND_BY_TYPE: Partial<Record<ValueType, ValueKind>> = {
  [ValueType.FLOAT32]: "float32",
  [ValueType.FLOAT64]: "float64",
  [ValueType.INT64]: "int64",
  [ValueType.STRING]: "string",
  [ValueType.BOOL]: "bool",
  [ValueType.FLOAT_VECTOR]: "float_vector",
};

const TYPE_BY_KIND: Record<ValueKind, ValueType> = {
  float32: ValueType.FLOAT32,
  float64: ValueType.FLOAT64,
  int64: ValueType.INT64,
  string: ValueType.STRING,
  bool: ValueType.BOOL,
  float_vector: ValueType.FLOAT_VECTOR,
};

export function kindFromProto(t: ValueType, field: string): ValueKind {
  const k = KIND_BY_TYPE[t];
  if (!k) throw new ValidationError(field, "is required: one of FLOAT32, FLOAT64, INT64, STRING, BOOL, FLOAT_VECTOR");
  return k;
}

export const kindToProto = (k: ValueKind): ValueType => TYPE_BY_KIND[k];

function keyKindFromProto(t: ValueType, field: string): KeyKind {
  if (t === ValueType.UNSPECIFIED || t === ValueType.STRING) return "string";
  if (t === ValueType.INT64) return "int64";
  throw new ValidationError(field, "an entity key is INT64 or STRING");
}

export function durationMs(d: Duration | undefined, field: string): number {
  if (!d) return 0;
  const ms = Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
  if (!Number.isFinite(ms) || ms < 0) throw new ValidationError(field, "must be a non-negative duration");
  return ms;
}

export function durationFromMs(ms: number): MessageInitShape<typeof import("@bufbuild/protobuf/wkt").DurationSchema> | undefined {
  if (ms <= 0) return undefined;
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

/** Epoch ms of a required timestamp; INVALID_ARGUMENT naming `field` when missing or invalid. */
export function timestampToMs(ts: Timestamp | undefined, field: string): number {
  if (!ts) throw new ValidationError(field, "is required");
  const seconds = Number(ts.seconds);
  // RFC 3339 range (years 0001-9999), as google.protobuf.Timestamp defines it.
  if (!Number.isFinite(seconds) || seconds < -62135596800 || seconds > 253402300799 || ts.nanos < 0 || ts.nanos > 999_999_999) {
    throw new ValidationError(field, "is not a valid timestamp");
  }
  return seconds * 1000 + Math.floor(ts.nanos / 1e6);
}

export function viewInputFromProto(v: FeatureView, i: number): ViewInput {
  const at = `views[${i}]`;
  return {
    name: v.name,
    entities: v.entities.map((e, j) => ({ name: e.name, type: keyKindFromProto(e.type, `${at}.entities[${j}].type`), description: e.description })),
    features: v.features.map((f, j) => ({
      name: f.name,
      type: kindFromProto(f.type, `${at}.features[${j}].type`),
      vectorDimension: f.vectorDimension,
      pii: f.pii,
      description: f.description,
      labels: f.labels,
    })),
    ttlMs: durationMs(v.ttl, `${at}.ttl`),
    description: v.description,
    owner: v.owner,
    labels: v.labels,
    onDemand: v.onDemandFeatures.map((o, j) => ({
      name: o.name,
      transform: o.transform,
      inputs: o.inputs.map((input, k) => {
        if (input.source.case === "featureRef") return { featureRef: input.source.value };
        if (input.source.case === "requestField") return { requestField: input.source.value };
        throw new ValidationError(`${at}.on_demand_features[${j}].inputs[${k}]`, "set feature_ref or request_field");
      }),
      params: o.params ?? {},
      type: o.type === ValueType.UNSPECIFIED ? undefined : kindFromProto(o.type, `${at}.on_demand_features[${j}].type`),
      pii: o.pii,
      description: o.description,
    })),
    requestFields: v.requestFields.map((r, j) => ({
      name: r.name,
      type: kindFromProto(r.type, `${at}.request_fields[${j}].type`),
      required: r.required,
      description: r.description,
    })),
  };
}

export function viewToProto(v: StoredView): FeatureView {
  return create(FeatureViewSchema, {
    name: v.name,
    entities: v.entities.map((e) => ({ name: e.name, type: kindToProto(e.type), description: e.description })),
    features: v.features.map((f) => ({ ...f, type: kindToProto(f.type), labels: { ...f.labels } })),
    ttl: durationFromMs(v.ttlMs),
    description: v.description,
    owner: v.owner,
    labels: { ...v.labels },
    onDemandFeatures: v.onDemand.map((o) => ({
      name: o.name,
      transform: o.transform,
      inputs: o.inputs.map((x) =>
        "featureRef" in x ? { source: { case: "featureRef" as const, value: x.featureRef } } : { source: { case: "requestField" as const, value: x.requestField } },
      ),
      params: o.params as never,
      type: kindToProto(o.type),
      pii: o.pii,
      description: o.description,
    })),
    requestFields: v.requestFields.map((r) => ({ ...r, type: kindToProto(r.type) })),
    version: BigInt(v.version),
    createTime: timestampFromMs(v.createTime),
    updateTime: timestampFromMs(v.updateTime),
  });
}

export function setFromProto(s: FeatureSet): FeatureSetDef {
  return { name: s.name, refs: s.refs, description: s.description, owner: s.owner, labels: s.labels };
}

export function setToProto(s: StoredFeatureSet): FeatureSet {
  return create(FeatureSetSchema, {
    name: s.name,
    refs: [...s.refs],
    description: s.description,
    owner: s.owner,
    labels: { ...s.labels },
    version: BigInt(s.version),
    createTime: timestampFromMs(s.createTime),
    updateTime: timestampFromMs(s.updateTime),
  });
}

export function transformToProto(t: RegisteredTransform): Transform {
  return create(TransformSchema, {
    name: t.name,
    description: t.description,
    arguments: t.arguments.map((a) => ({ name: a.name, acceptedTypes: a.acceptedTypes.map(kindToProto), acceptsNull: a.acceptsNull, description: a.description })),
    variadic: t.variadic,
    parameters: t.parameters.map((p) => ({
      name: p.name,
      jsonType: p.jsonType,
      required: p.required,
      description: p.description,
      defaultValue: p.defaultValue === undefined ? undefined : fromJson(JsonValueSchema, p.defaultValue as JsonValue),
    })),
    outputType: t.outputType ? kindToProto(t.outputType) : ValueType.UNSPECIFIED,
    builtin: t.builtin,
    sourceSha256: t.sourceSha256,
  });
}

export const OUTCOME: Record<ApplyOutcomeKind, ApplyOutcome> = {
  created: ApplyOutcome.CREATED,
  unchanged: ApplyOutcome.UNCHANGED,
  updated: ApplyOutcome.UPDATED,
};

export const STATUS: Record<ValueStatus, FeatureStatus> = {
  present: FeatureStatus.PRESENT,
  not_found: FeatureStatus.NOT_FOUND,
  expired: FeatureStatus.EXPIRED,
  null: FeatureStatus.NULL,
};

export function scalarFromValue(v: Value | undefined): Scalar {
  const k = v?.kind;
  if (!k || k.case === undefined) return null;
  if (k.case === "floatVectorValue") return k.value.values;
  return k.value;
}

export function entityKeyFromProto(key: EntityKey | undefined): Record<string, Scalar> {
  const out: Record<string, Scalar> = {};
  if (!key) return out;
  for (const name in key.keys) out[name] = scalarFromValue(key.keys[name]);
  return out;
}

export function requestDataFromProto(fields: Readonly<Record<string, Value>>): Record<string, Scalar> {
  const out: Record<string, Scalar> = {};
  for (const name in fields) out[name] = scalarFromValue(fields[name]);
  return out;
}

/** A domain value as a Value init of the ref's declared type. */
export function valueToProto(v: Scalar, kind: ValueKind): MessageInitShape<typeof ValueSchema> {
  switch (kind) {
    case "float32":
      return { kind: { case: "floatValue", value: Number(v) } };
    case "float64":
      return { kind: { case: "doubleValue", value: Number(v) } };
    case "int64":
      return { kind: { case: "int64Value", value: typeof v === "bigint" ? v : BigInt(v as number) } };
    case "string":
      return { kind: { case: "stringValue", value: v as string } };
    case "bool":
      return { kind: { case: "boolValue", value: v as boolean } };
    case "float_vector":
      return { kind: { case: "floatVectorValue", value: { values: v as number[] } } };
  }
}

export const valueMessage = (v: Scalar, kind: ValueKind): Value => create(ValueSchema, valueToProto(v, kind));
