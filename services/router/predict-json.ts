// Predict's Connect JSON request and answer without protobuf-es's reflection: the request read
// from JSON.parse's object into the message literal fromJson would build, the answer written
// as the text toJsonString would write (predict-json.test.ts holds both to protobuf-es).
// Registered with lib/fast-json-codecs.ts on import; anything unusual is left to protobuf-es.

import type { Message } from "@bufbuild/protobuf";
import {
  FallbackAppliedSchema,
  FallbackKindSchema,
  OutputTensorSchema,
  ServedBySchema,
  ServingStepSchema,
  StepTimingSchema,
  TimingsSchema,
} from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { PredictRequestSchema, PredictResponseSchema, type PredictRequest } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { EntityKeySchema, FloatVectorSchema, ValueSchema, ValueTypeSchema, type EntityKey, type Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import {
  enumJsonNames,
  isJsonObject,
  isObject,
  jsonFieldsAre,
  readBool,
  readEntityKey,
  readString,
  readValueMap,
  registerJsonDecoder,
  registerJsonEncoder,
  writeBool,
  writeDouble,
  writeDuration,
  writeEnum,
  writeInt64,
  writeList,
  writeMap,
  writeString,
  writeValue,
} from "../../lib/fast-json-codecs.js";

// ---------------------------------------------------------------------------------------
// PredictRequest
// ---------------------------------------------------------------------------------------

// One bit per field, so a field given under both of its names is left to fromJson (which
// refuses it as set twice).
const ENDPOINT = 1;
const ENTITY_KEY = 2;
const CONTEXT = 4;
const REQUEST_ID = 8;
const INCLUDE_TIMINGS = 16;
const UNIT_ID = 32;
const INCLUDE_FEATURES = 64;

/** The PredictRequest fromJson reads from this text, or undefined to let fromJson read it. */
export function decodePredictRequest(text: string): PredictRequest | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined; // connect-unary parses it again, for JSON.parse's own message
  }
  if (!isJsonObject(json)) return undefined;
  let seen = 0;
  let endpoint: string | undefined = "";
  let entityKey: EntityKey | undefined;
  let context: Record<string, Value> | undefined = {};
  let requestId: string | undefined = "";
  let includeTimings: boolean | undefined = false;
  let unitId: string | undefined = "";
  let includeFeatures: boolean | undefined = false;
  for (const key in json) {
    const v = json[key];
    let bit: number;
    switch (key) {
      case "endpoint":
        bit = ENDPOINT;
        endpoint = readString(v);
        break;
      case "entityKey":
      case "entity_key":
        bit = ENTITY_KEY;
        entityKey = readEntityKey(v);
        if (entityKey === undefined) return undefined;
        break;
      case "context":
        bit = CONTEXT;
        context = readValueMap(v);
        break;
      case "requestId":
      case "request_id":
        bit = REQUEST_ID;
        requestId = readString(v);
        break;
      case "includeTimings":
      case "include_timings":
        bit = INCLUDE_TIMINGS;
        includeTimings = readBool(v);
        break;
      case "unitId":
      case "unit_id":
        bit = UNIT_ID;
        unitId = readString(v);
        break;
      case "includeFeatures":
      case "include_features":
        bit = INCLUDE_FEATURES;
        includeFeatures = readBool(v);
        break;
      default:
        return undefined;
    }
    if (seen & bit) return undefined;
    seen |= bit;
  }
  if (endpoint === undefined || context === undefined || requestId === undefined || includeTimings === undefined || unitId === undefined || includeFeatures === undefined) return undefined;
  // The literal create() makes, in its key order; fromJson adds a set entity key last.
  const $typeName = "mlmesh.router.v1.PredictRequest";
  if (entityKey === undefined) return { $typeName, endpoint, context, requestId, includeTimings, unitId, includeFeatures };
  return { $typeName, endpoint, context, requestId, includeTimings, unitId, includeFeatures, entityKey };
}

// ---------------------------------------------------------------------------------------
// PredictResponse
// ---------------------------------------------------------------------------------------

const SERVED_BY = enumJsonNames(ServedBySchema);
const FALLBACK_KIND = enumJsonNames(FallbackKindSchema);
const SERVING_STEP = enumJsonNames(ServingStepSchema);
const VALUE_TYPE = enumJsonNames(ValueTypeSchema);

/**
 * Appends one member to an object being written, which starts as "{" (the member's `key` is
 * `,"name":`, its comma dropped for the first). `json` undefined (a value the writer does not
 * take) poisons the result; "" (an empty list or map) leaves the member out.
 */
function member(out: string | undefined, key: string, json: string | undefined): string | undefined {
  if (out === undefined || json === undefined) return undefined;
  if (json === "") return out;
  return out === "{" ? "{" + key.substring(1) + json : out + key + json;
}

/** The object's text: `{}` when no member was set. */
function object(members: string | undefined): string | undefined {
  return members === undefined ? undefined : members + "}";
}

// Implicit presence: toJson leaves out a scalar or enum equal to its zero value (a double's
// +0 only: -0 is written, as 0).
const str = (v: unknown) => (v === "" ? "" : writeString(v));
const dbl = (v: unknown) => (Object.is(v, 0) ? "" : writeDouble(v));
const i64 = (v: unknown) => (v === 0n ? "" : writeInt64(v));
const bool = (v: unknown) => (v === false ? "" : writeBool(v));
const enm = (v: unknown, names: ReadonlyMap<number, string>) => (v === 0 ? "" : writeEnum(v, names));
// Explicit presence: a message field (or an unboxed wrapper) is written when not undefined.
const opt = (v: unknown, write: (x: unknown) => string | undefined) => (v === undefined ? "" : write(v));

function messageOf(v: unknown, typeName: string): Record<string, unknown> | undefined {
  return isObject(v) && v.$typeName === typeName ? v : undefined;
}

function writeOutputTensor(v: unknown): string | undefined {
  const t = messageOf(v, "mlmesh.router.v1.OutputTensor");
  if (t === undefined) return undefined;
  let m: string | undefined = "{";
  m = member(m, ',"datatype":', enm(t.datatype, VALUE_TYPE));
  m = member(m, ',"shape":', writeList(t.shape, writeInt64));
  m = member(m, ',"doubleValues":', writeList(t.doubleValues, writeDouble));
  m = member(m, ',"int64Values":', writeList(t.int64Values, writeInt64));
  m = member(m, ',"stringValues":', writeList(t.stringValues, writeString));
  m = member(m, ',"boolValues":', writeList(t.boolValues, writeBool));
  return object(m);
}

function writeFallbackApplied(v: unknown): string | undefined {
  const f = messageOf(v, "mlmesh.router.v1.FallbackApplied");
  if (f === undefined) return undefined;
  let m: string | undefined = "{";
  m = member(m, ',"kind":', enm(f.kind, FALLBACK_KIND));
  m = member(m, ',"reason":', str(f.reason));
  m = member(m, ',"features":', writeList(f.features, writeString));
  m = member(m, ',"failedModelRef":', str(f.failedModelRef));
  return object(m);
}

function writeStepTiming(v: unknown): string | undefined {
  const s = messageOf(v, "mlmesh.router.v1.StepTiming");
  if (s === undefined) return undefined;
  let m: string | undefined = "{";
  m = member(m, ',"step":', enm(s.step, SERVING_STEP));
  m = member(m, ',"elapsed":', opt(s.elapsed, writeDuration));
  m = member(m, ',"budget":', opt(s.budget, writeDuration));
  m = member(m, ',"budgetExceeded":', bool(s.budgetExceeded));
  return object(m);
}

function writeTimings(v: unknown): string | undefined {
  const t = messageOf(v, "mlmesh.router.v1.Timings");
  if (t === undefined) return undefined;
  let m: string | undefined = "{";
  m = member(m, ',"total":', opt(t.total, writeDuration));
  m = member(m, ',"effectiveBudget":', opt(t.effectiveBudget, writeDuration));
  m = member(m, ',"steps":', writeList(t.steps, writeStepTiming));
  return object(m);
}

/** The text toJsonString(PredictResponseSchema, message) writes, or undefined to let it. */
export function encodePredictResponse(message: Message): string | undefined {
  const r = messageOf(message, "mlmesh.router.v1.PredictResponse");
  if (r === undefined) return undefined;
  let m: string | undefined = "{";
  m = member(m, ',"requestId":', str(r.requestId));
  m = member(m, ',"score":', dbl(r.score));
  m = member(m, ',"rawScore":', dbl(r.rawScore));
  m = member(m, ',"decision":', opt(r.decision, writeBool));
  m = member(m, ',"classProbabilities":', writeMap(r.classProbabilities, writeDouble));
  m = member(m, ',"outputs":', writeMap(r.outputs, writeOutputTensor));
  m = member(m, ',"model":', str(r.model));
  m = member(m, ',"version":', i64(r.version));
  m = member(m, ',"modelRef":', str(r.modelRef));
  m = member(m, ',"arm":', str(r.arm));
  m = member(m, ',"experimentKey":', str(r.experimentKey));
  m = member(m, ',"servedBy":', enm(r.servedBy, SERVED_BY));
  m = member(m, ',"fallbacks":', writeList(r.fallbacks, writeFallbackApplied));
  m = member(m, ',"degraded":', bool(r.degraded));
  m = member(m, ',"timings":', opt(r.timings, writeTimings));
  m = member(m, ',"features":', writeMap(r.features, writeValue));
  m = member(m, ',"planRevision":', i64(r.planRevision));
  m = member(m, ',"traceId":', str(r.traceId));
  return object(m);
}

// ---------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------

/**
 * Whether every message the codecs read or write still has the fields they were written for
 * (by JSON name, in field-number order). A field added to one of these protos stops the
 * registration, so the new field is never dropped; predict-json.test.ts fails on it.
 */
export function predictCodecsMatchProtos(): boolean {
  return (
    jsonFieldsAre(PredictRequestSchema, ["endpoint", "entityKey", "context", "requestId", "includeTimings", "unitId", "includeFeatures"]) &&
    jsonFieldsAre(EntityKeySchema, ["keys"]) &&
    jsonFieldsAre(ValueSchema, ["doubleValue", "floatValue", "int64Value", "stringValue", "boolValue", "floatVectorValue"]) &&
    jsonFieldsAre(FloatVectorSchema, ["values"]) &&
    jsonFieldsAre(PredictResponseSchema, [
      "requestId",
      "score",
      "rawScore",
      "decision",
      "classProbabilities",
      "outputs",
      "model",
      "version",
      "modelRef",
      "arm",
      "experimentKey",
      "servedBy",
      "fallbacks",
      "degraded",
      "timings",
      "features",
      "planRevision",
      "traceId",
    ]) &&
    jsonFieldsAre(OutputTensorSchema, ["datatype", "shape", "doubleValues", "int64Values", "stringValues", "boolValues"]) &&
    jsonFieldsAre(FallbackAppliedSchema, ["kind", "reason", "features", "failedModelRef"]) &&
    jsonFieldsAre(TimingsSchema, ["total", "effectiveBudget", "steps"]) &&
    jsonFieldsAre(StepTimingSchema, ["step", "elapsed", "budget", "budgetExceeded"])
  );
}

if (predictCodecsMatchProtos()) {
  registerJsonDecoder(PredictRequestSchema.typeName, decodePredictRequest);
  registerJsonEncoder(PredictResponseSchema.typeName, encodePredictResponse);
}
