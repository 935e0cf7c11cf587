// Predict's hand-written JSON codecs against protobuf-es itself: every request the decoder
// takes reads as fromJson reads it (equals and a structural deep-equal), everything else is
// left to fromJson; every answer the encoder writes is byte for byte toJsonString's, and
// what it declines is what toJsonString throws on or what it does not know.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, equals, fromJson, toJsonString, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { FallbackKind, ServedBy, ServingStep } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { PredictRequestSchema, PredictResponseSchema, type PredictRequest, type PredictResponse } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType, type Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import { jsonDecoder, jsonEncoder, quote } from "../../lib/fast-json-codecs.js";
import { decodePredictRequest, encodePredictResponse, predictCodecsMatchProtos } from "./predict-json.js";

/** mulberry32: reproducible cases. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** fromJson as connect-unary calls it: the message, or the error text it would answer with. */
function reference(text: string): { message?: PredictRequest; error?: string } {
  try {
    return { message: fromJson(PredictRequestSchema, JSON.parse(text) as JsonValue, { ignoreUnknownFields: false }) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** The decoder's answer for `text`, checked against fromJson whenever it gives one. */
function decodeChecked(text: string): PredictRequest | undefined {
  const fast = decodePredictRequest(text);
  if (fast === undefined) return undefined;
  const ref = reference(text);
  assert.equal(ref.error, undefined, `the decoder took ${text}, which fromJson refuses`);
  // protobuf-es's equals holds NaN unequal to itself: it must judge ours as it judges its own.
  const selfEqual = equals(PredictRequestSchema, ref.message!, reference(text).message!);
  assert.equal(equals(PredictRequestSchema, fast, ref.message!), selfEqual, `equals: ${text}`);
  assert.ok(selfEqual || text.includes("NaN"), `equals: ${text}`);
  assert.deepStrictEqual(fast, ref.message, text);
  assert.deepStrictEqual(Object.keys(fast), Object.keys(ref.message!), `key order: ${text}`);
  return fast;
}

const accepted = (text: string) => assert.ok(decodeChecked(text), `the decoder declined ${text}`);
const declined = (text: string) => assert.equal(decodePredictRequest(text), undefined, `the decoder took ${text}`);

/** toJsonString's text, or undefined where it throws. */
function referenceJson(m: unknown): string | undefined {
  try {
    return toJsonString(PredictResponseSchema, m as PredictResponse);
  } catch {
    return undefined;
  }
}

/** The encoder's text for `m`, checked byte for byte against toJsonString whenever it gives one. */
function encodeChecked(m: unknown): string | undefined {
  const fast = encodePredictResponse(m as PredictResponse);
  if (fast !== undefined) assert.equal(fast, referenceJson(m));
  return fast;
}

const STRINGS = ["", "a", "u17", 'quo"te', "back\\slash", "line\nbreak\ttab\r", "\u0000\u001f\u007f", "é ñ ü", "日本語", "😀 pair", "\u2028\u2029", "</script>", "x".repeat(200)];

describe("PredictRequest JSON decoder", () => {
  it("is registered for PredictRequest, and the codecs match the protos they were written for", () => {
    assert.ok(predictCodecsMatchProtos(), "a field was added to a message the codecs handle: extend predict-json.ts");
    assert.equal(jsonDecoder(PredictRequestSchema.typeName), decodePredictRequest);
    assert.equal(jsonEncoder(PredictResponseSchema.typeName), encodePredictResponse);
  });

  it("reads the bench body, both spellings of every field, every Value kind, as fromJson does", () => {
    accepted('{"endpoint":"bench-x","entityKey":{"keys":{"user_id":{"stringValue":"u17"}}}}');
    accepted("{}");
    accepted('{"entityKey":{}}');
    accepted('{"entity_key":{"keys":{}}}');
    accepted('{"context":{}}');
    accepted(
      '{"endpoint":"e","entity_key":{"keys":{"a":{"string_value":"x"},"b":{"int64_value":"7"}}},"context":{"c":{"double_value":1.5}},"request_id":"r","include_timings":true,"unit_id":"u","include_features":false}',
    );
    accepted('{"includeFeatures":true,"unitId":"s-1","requestId":"r-1","includeTimings":false,"context":{"k":{"boolValue":false}},"endpoint":"e"}');
    // Every Value kind, both spellings, and the unset kind.
    for (const [camel, snake, values] of [
      ["stringValue", "string_value", STRINGS.map((s) => JSON.stringify(s))],
      ["int64Value", "int64_value", ["0", "-0", "42", "-42", '"0"', '"-0"', '"007"', '"9223372036854775807"', '"-9223372036854775808"', String(Number.MAX_SAFE_INTEGER), String(-Number.MAX_SAFE_INTEGER)]],
      ["doubleValue", "double_value", ["0", "-0", "1.5", "-2.25e-300", "1e308", "5e-324", '"NaN"', '"Infinity"', '"-Infinity"']],
      ["floatValue", "float_value", ["0", "0.1", "-3.4028234663852886e38", "3.4028234663852886e38", '"NaN"', '"-Infinity"']],
      ["boolValue", "bool_value", ["true", "false"]],
      ["floatVectorValue", "float_vector_value", ['{"values":[]}', "{}", '{"values":[1,0.5,-0.25,"NaN","Infinity"]}']],
    ] as const) {
      for (const v of values) {
        accepted(`{"entityKey":{"keys":{"k":{"${camel}":${v}}}}}`);
        accepted(`{"context":{"k":{"${snake}":${v}}}}`);
      }
    }
    accepted('{"context":{"null":{}}}');
  });

  it("reads strings with escapes and unicode as JSON.parse does, keys included", () => {
    accepted('{"endpoint":"\\u00e9\\n\\"\\\\\\/\\ud83d\\ude00","context":{"\\u65e5":{"stringValue":"\\t"},"":{"stringValue":""}}}');
    // Integer-like map keys come first in a JS object, in fromJson's message as in ours.
    accepted('{"context":{"b":{"int64Value":1},"2":{"int64Value":2},"1":{"int64Value":3},"-1":{"int64Value":4}}}');
  });

  it("leaves to fromJson what it does not read exactly, fromJson's errors included", () => {
    const cases: Array<[string, "refused" | "read"]> = [
      ['{"endpoint":"e","bogus":1}', "refused"],
      ['{"entityKey":{"keys":{},"extra":1}}', "refused"],
      ['{"context":{"k":{"stringValue":"a","bogus":1}}}', "refused"],
      ['{"endpoint":null}', "read"],
      ['{"entityKey":null}', "read"],
      ['{"context":null}', "read"],
      ['{"context":{"k":null}}', "refused"],
      ['{"context":{"k":{"stringValue":null}}}', "read"],
      ['{"context":{"k":{"stringValue":null,"int64Value":"1"}}}', "read"],
      ['{"entityKey":{"keys":null}}', "read"],
      ['{"entityKey":{"keys":{"a":{"floatVectorValue":{"values":[null]}}}}}', "refused"],
      ['{"entityKey":{"keys":{"a":{"floatVectorValue":null}}}}', "read"],
      ['{"entityKey":{},"entity_key":{}}', "refused"],
      ['{"requestId":"a","request_id":"b"}', "refused"],
      ['{"context":{"k":{"stringValue":"a","string_value":"a"}}}', "refused"],
      ['{"context":{"k":{"stringValue":"a","int64Value":"1"}}}', "refused"],
      ['{"endpoint":"\\ud800"}', "refused"],
      ['{"context":{"\\udc00":{}}}', "refused"],
      ['{"context":{"k":{"stringValue":"x\\ud800"}}}', "refused"],
      ['{"context":{"__proto__":{"stringValue":"p"}}}', "read"],
      ['{"endpoint":1}', "refused"],
      ['{"includeTimings":"true"}', "refused"],
      ['{"includeTimings":1}', "refused"],
      ['{"context":[]}', "refused"],
      ['{"entityKey":"k"}', "refused"],
      ['{"context":{"k":{"int64Value":"9223372036854775808"}}}', "refused"],
      ['{"context":{"k":{"int64Value":"-9223372036854775809"}}}', "refused"],
      ['{"context":{"k":{"int64Value":1.5}}}', "refused"],
      ['{"context":{"k":{"int64Value":1e20}}}', "refused"],
      ['{"context":{"k":{"int64Value":9007199254740993}}}', "read"],
      ['{"context":{"k":{"int64Value":" 12"}}}', "read"],
      ['{"context":{"k":{"int64Value":"0x10"}}}', "read"],
      ['{"context":{"k":{"int64Value":"1e3"}}}', "refused"],
      ['{"context":{"k":{"int64Value":""}}}', "refused"],
      ['{"context":{"k":{"int64Value":true}}}', "refused"],
      ['{"context":{"k":{"doubleValue":"1.5"}}}', "read"],
      ['{"context":{"k":{"doubleValue":"nan"}}}', "refused"],
      ['{"context":{"k":{"doubleValue":1e999}}}', "refused"],
      ['{"context":{"k":{"floatValue":1e39}}}', "refused"],
      ['{"context":{"k":{"boolValue":"true"}}}', "refused"],
      ['{"context":{"k":{"floatVectorValue":{"values":[1e39]}}}}', "refused"],
      ['{"context":{"k":{"floatVectorValue":{"values":{}}}}}', "refused"],
      ["[]", "refused"],
      ["null", "refused"],
      ['"text"', "refused"],
      ["42", "refused"],
      ["{", "refused"],
      ["", "refused"],
      ['{"endpoint":"e",}', "refused"],
    ];
    for (const [text, fromJsonSays] of cases) {
      declined(text);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        continue; // connect-unary's JSON.parse throws, as before
      }
      const ref = reference(text);
      assert.equal(ref.error === undefined ? "read" : "refused", fromJsonSays, `${text}: ${ref.error ?? "read"} (${typeof parsed})`);
    }
  });

  it("random requests, and random damage to them: whatever it reads, it reads as fromJson does", () => {
    const rand = rng(20240611);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const spell = (camel: string, snake: string) => (rand() < 0.5 ? camel : snake);
    const randomString = () => (rand() < 0.6 ? pick(STRINGS) : String.fromCharCode(...Array.from({ length: Math.floor(rand() * 6) }, () => Math.floor(rand() * 0x3000))));
    const randomValue = (): Record<string, unknown> => {
      switch (Math.floor(rand() * 7)) {
        case 0:
          return { [spell("stringValue", "string_value")]: randomString() };
        case 1:
          return { [spell("int64Value", "int64_value")]: rand() < 0.5 ? Math.floor((rand() - 0.5) * 2 ** 40) : String(BigInt(Math.floor((rand() - 0.5) * 2 ** 52)) * 1000n) };
        case 2:
          return { [spell("doubleValue", "double_value")]: rand() < 0.1 ? pick(["NaN", "Infinity", "-Infinity"]) : (rand() - 0.5) * 10 ** Math.floor(rand() * 40 - 20) };
        case 3:
          return { [spell("floatValue", "float_value")]: Math.fround(rand() * 100) };
        case 4:
          return { [spell("boolValue", "bool_value")]: rand() < 0.5 };
        case 5:
          return { [spell("floatVectorValue", "float_vector_value")]: { values: Array.from({ length: Math.floor(rand() * 4) }, () => Math.fround(rand())) } };
        default:
          return {};
      }
    };
    const randomMap = () => Object.fromEntries(Array.from({ length: Math.floor(rand() * 4) }, () => [pick(["user_id", "item_id", "1", "07", "", "geo", randomString()]), randomValue()]));
    const randomRequest = (): Record<string, unknown> => {
      const r: Record<string, unknown> = {};
      const fields: Array<[() => string, () => unknown]> = [
        [() => "endpoint", randomString],
        [() => spell("entityKey", "entity_key"), () => (rand() < 0.1 ? {} : { keys: randomMap() })],
        [() => "context", randomMap],
        [() => spell("requestId", "request_id"), randomString],
        [() => spell("includeTimings", "include_timings"), () => rand() < 0.5],
        [() => spell("unitId", "unit_id"), randomString],
        [() => spell("includeFeatures", "include_features"), () => rand() < 0.5],
      ];
      for (const [name, value] of fields.sort(() => rand() - 0.5)) if (rand() < 0.7) r[name()] = value();
      return r;
    };
    /** Replaces one value somewhere in the tree with something odd. */
    const damage = (node: unknown): unknown => {
      const odd = pick<unknown>([null, 1, 1.5, -1, "", "x", true, [], {}, { bogus: 1 }, "\ud800", "NaN", 1e300, "12", [1]]);
      if (!node || typeof node !== "object" || Array.isArray(node) || rand() < 0.25) return odd;
      const obj = { ...(node as Record<string, unknown>) };
      const keys = Object.keys(obj);
      if (keys.length === 0 || rand() < 0.15) obj[pick(["bogus", "entity_key", "stringValue", "values", "keys", "__proto__"])] = odd;
      else {
        const k = pick(keys);
        obj[k] = damage(obj[k]);
      }
      return obj;
    };
    let took = 0;
    let tookDamaged = 0;
    for (let i = 0; i < 3000; i++) {
      const req = randomRequest();
      if (decodeChecked(JSON.stringify(req))) took++;
      const bad = JSON.stringify(damage(req));
      if (decodeChecked(bad)) tookDamaged++;
    }
    // Most well-formed requests take the fast path (lone surrogates in random strings do not).
    assert.ok(took > 2000, `took ${took} of 3000`);
    assert.ok(tookDamaged > 100 && tookDamaged < 2500, `took ${tookDamaged} damaged ones`);
  });
});

type ResponseInit = MessageInitShape<typeof PredictResponseSchema>;

const v = (kind: Value["kind"]): Value => ({ $typeName: "mlmesh.types.v1.Value", kind });
const NUMBERS = [0, -0, 1, -1, 0.1, 1 / 3, 1e21, 1e-7, 123456789012345680000, 5e-324, Number.MAX_VALUE, -Number.MAX_VALUE, NaN, Infinity, -Infinity, 0.30000000000000004];

describe("PredictResponse JSON encoder", () => {
  it("writes what toJsonString writes: defaults left out, wrappers, enums, maps, lists, durations", () => {
    const cases: ResponseInit[] = [
      {},
      { requestId: "r", score: 0.73, rawScore: 0.73, model: "m", version: 3n, modelRef: "m@production", servedBy: ServedBy.PRODUCTION, planRevision: 1n, traceId: "0af7651916cd43dd8448eb211c80319c" },
      { score: -0, rawScore: NaN, decision: false },
      { score: Infinity, rawScore: -Infinity, decision: true },
      { version: -9223372036854775808n, planRevision: 9223372036854775807n, servedBy: 99 as ServedBy },
      { servedBy: -3 as ServedBy },
      { classProbabilities: { "0": 0.25, "1": 0.75 } },
      { classProbabilities: { b: 1, "2": -0, "1": NaN, a: Infinity, "": 0 } },
      {
        outputs: {
          probabilities: { datatype: ValueType.FLOAT64, shape: [2n], doubleValues: [0.25, 0.75] },
          label: { datatype: ValueType.STRING, shape: [1n], stringValues: ["yes \"quoted\""] },
          ints: { datatype: ValueType.INT64, shape: [2n, 1n], int64Values: [-1n, 0n] },
          bools: { datatype: 77 as ValueType, boolValues: [true, false] },
          empty: {},
        },
      },
      {
        fallbacks: [
          { kind: FallbackKind.FEATURE_VALUES_MISSING, reason: "acct:tenure NOT_FOUND", features: ["acct:tenure", "acct:spend"] },
          { kind: FallbackKind.PRODUCTION_VERSION, reason: "", failedModelRef: "churn@4" },
          {},
        ],
        degraded: true,
      },
      {
        timings: {
          total: { seconds: 0n, nanos: 1_234_567 },
          effectiveBudget: { seconds: 2n, nanos: 0 },
          steps: [
            { step: ServingStep.ASSIGNMENT, elapsed: { seconds: 0n, nanos: 1000 }, budget: { seconds: 0n, nanos: 0 } },
            { step: ServingStep.FEATURE_FETCH, elapsed: { seconds: 1n, nanos: 500_000_000 }, budget: { seconds: 1n, nanos: 1 }, budgetExceeded: true },
            { step: ServingStep.SCORING, elapsed: { seconds: -1n, nanos: -5_000 } },
            { step: ServingStep.POST_PROCESSING, elapsed: { seconds: 0n, nanos: -120_000_000 }, budget: { seconds: 315_576_000_000n, nanos: 999_999_999 } },
            {},
          ],
        },
      },
      { timings: {} },
      {
        features: {
          "acct:tenure": v({ case: "doubleValue", value: 12 }),
          "acct:zero": v({ case: "doubleValue", value: 0 }),
          "acct:f": v({ case: "floatValue", value: 0.1 }),
          "acct:calls": v({ case: "int64Value", value: 0n }),
          "acct:big": v({ case: "int64Value", value: -9223372036854775808n }),
          "acct:name": v({ case: "stringValue", value: "" }),
          "acct:note": v({ case: "stringValue", value: "日本\n😀" }),
          "acct:flag": v({ case: "boolValue", value: false }),
          "acct:emb": v({ case: "floatVectorValue", value: { $typeName: "mlmesh.types.v1.FloatVector", values: [0.5, -0, NaN] } }),
          "acct:emb0": v({ case: "floatVectorValue", value: { $typeName: "mlmesh.types.v1.FloatVector", values: [] } }),
          "acct:null": v({ case: undefined }),
          "3": v({ case: "stringValue", value: "integer-like key" }),
        },
      },
      { requestId: STRINGS.join("|"), arm: "\ud800 lone", experimentKey: "\udfff", traceId: "\u2028" },
    ];
    for (const init of cases) {
      const m = create(PredictResponseSchema, init);
      assert.ok(encodeChecked(m) !== undefined, `declined ${toJsonString(PredictResponseSchema, m)}`);
    }
  });

  it("quotes every UTF-16 code unit, alone and in surrogate pairs, as JSON.stringify does", () => {
    for (let c = 0; c <= 0xffff; c++) {
      const s = String.fromCharCode(c);
      assert.equal(quote(s), JSON.stringify(s), `U+${c.toString(16)}`);
      assert.equal(quote(`a${s}b`), JSON.stringify(`a${s}b`), `U+${c.toString(16)} inside`);
    }
    for (const s of ["\ud83d\ude00", "\ud83d", "\ude00\ud83d", "x\udbff\udfffy", ...STRINGS]) assert.equal(quote(s), JSON.stringify(s));
  });

  it("writes the message literal serve.ts answers with, unset fields given as undefined", () => {
    const literal: PredictResponse = {
      $typeName: "mlmesh.router.v1.PredictResponse",
      requestId: "3f1c",
      score: 0.8125,
      rawScore: 0.8125,
      decision: undefined,
      classProbabilities: { "0": 0.1875, "1": 0.8125 },
      outputs: { probabilities: { $typeName: "mlmesh.router.v1.OutputTensor", datatype: ValueType.FLOAT64, shape: [2n], doubleValues: [0.1875, 0.8125], int64Values: [], stringValues: [], boolValues: [] } },
      model: "churn",
      version: 1n,
      modelRef: "churn@production",
      arm: "",
      experimentKey: "",
      servedBy: ServedBy.PRODUCTION,
      fallbacks: [],
      degraded: false,
      timings: undefined,
      features: {},
      planRevision: 4n,
      traceId: "",
    };
    assert.ok(encodeChecked(literal));
    assert.ok(encodeChecked({ ...literal, features: Object.fromEntries(new Map([["acct:tenure", v({ case: "doubleValue", value: 3 })]])) }));
  });

  it("random answers: byte for byte toJsonString's", () => {
    const rand = rng(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const maybe = <T>(x: () => T, p = 0.5): T | undefined => (rand() < p ? x() : undefined);
    const num = () => (rand() < 0.4 ? pick(NUMBERS) : (rand() - 0.5) * 10 ** Math.floor(rand() * 60 - 30));
    const str = () => (rand() < 0.3 ? "" : rand() < 0.7 ? pick(STRINGS) : String.fromCharCode(...Array.from({ length: Math.floor(rand() * 8) }, () => Math.floor(rand() * 0xffff))));
    const i64 = () => (rand() < 0.3 ? 0n : BigInt(Math.floor((rand() - 0.5) * 2 ** 53)) * BigInt(Math.floor(rand() * 1000)));
    const list = <T>(x: () => T) => Array.from({ length: rand() < 0.3 ? 0 : Math.floor(rand() * 4) }, x);
    const map = <T>(x: () => T) => Object.fromEntries(list(() => [pick(["a", "b", "0", "10", "2", "", str()]), x()]));
    const duration = () => {
      const seconds = BigInt(Math.floor((rand() - 0.5) * 1e6));
      const nanos = Math.floor(rand() * 1e9) * (seconds < 0n ? -1 : seconds > 0n ? 1 : pick([1, -1])) * (rand() < 0.3 ? 0 : 1);
      return { seconds, nanos: rand() < 0.3 ? Math.round(nanos / 1e6) * 1e6 : rand() < 0.3 ? Math.round(nanos / 1e3) * 1e3 : nanos };
    };
    const value = (): Value["kind"] =>
      pick<() => Value["kind"]>([
        () => ({ case: "doubleValue", value: num() }),
        () => ({ case: "floatValue", value: Math.fround(num()) }),
        () => ({ case: "int64Value", value: i64() }),
        () => ({ case: "stringValue", value: str() }),
        () => ({ case: "boolValue", value: rand() < 0.5 }),
        () => ({ case: "floatVectorValue", value: { $typeName: "mlmesh.types.v1.FloatVector", values: list(() => Math.fround(num())) } }),
        () => ({ case: undefined }),
      ])();
    for (let i = 0; i < 2000; i++) {
      const init: ResponseInit = {
        requestId: str(),
        score: num(),
        rawScore: num(),
        decision: maybe(() => rand() < 0.5),
        classProbabilities: map(num),
        outputs: map(() => ({ datatype: pick([0, 1, 2, 3, 4, 5, 6, 42]) as ValueType, shape: list(i64), doubleValues: list(num), int64Values: list(i64), stringValues: list(str), boolValues: list(() => rand() < 0.5) })),
        model: str(),
        version: i64(),
        modelRef: str(),
        arm: str(),
        experimentKey: str(),
        servedBy: pick([0, 1, 2, 3, 4, 5, 6, 17]) as ServedBy,
        fallbacks: list(() => ({ kind: pick([0, 1, 2, 3, 4, 5, 9]) as FallbackKind, reason: str(), features: list(str), failedModelRef: str() })),
        degraded: rand() < 0.5,
        timings: maybe(() => ({ total: maybe(duration), effectiveBudget: maybe(duration), steps: list(() => ({ step: pick([0, 1, 2, 3, 4, 5, 8]) as ServingStep, elapsed: maybe(duration), budget: maybe(duration), budgetExceeded: rand() < 0.5 })) })),
        features: map(() => ({ kind: value() })),
        planRevision: i64(),
        traceId: str(),
      };
      const m = create(PredictResponseSchema, init);
      assert.ok(encodeChecked(m) !== undefined, `declined ${toJsonString(PredictResponseSchema, m)}`);
    }
  });

  it("declines what toJsonString throws on, and shapes it was not written for", () => {
    const base = create(PredictResponseSchema, { requestId: "r", score: 1 });
    const odd: unknown[] = [
      { ...base, $typeName: "mlmesh.router.v1.RankResponse" },
      { ...base, score: "1" },
      { ...base, version: 7 },
      { ...base, version: "7" },
      { ...base, planRevision: 0 },
      { ...base, servedBy: 1.5 },
      { ...base, servedBy: NaN },
      { ...base, decision: null },
      { ...base, decision: { $typeName: "google.protobuf.BoolValue", value: true } },
      { ...base, degraded: 1 },
      { ...base, requestId: 5 },
      { ...base, outputs: undefined },
      { ...base, classProbabilities: null },
      { ...base, classProbabilities: Object.assign(Object.create({ inherited: 1 }) as object, { own: 2 }) },
      { ...base, classProbabilities: { a: "1" } },
      { ...base, fallbacks: [{ kind: 1, reason: "x", features: [], failedModelRef: "" }] },
      { ...base, fallbacks: [{ $typeName: "x.Y", kind: 1, reason: "", features: [], failedModelRef: "" }] },
      { ...base, fallbacks: "none" },
      { ...base, outputs: { o: { $typeName: "mlmesh.router.v1.OutputTensor", datatype: 0, shape: [1], doubleValues: [], int64Values: [], stringValues: [], boolValues: [] } } },
      { ...base, outputs: { o: { $typeName: "mlmesh.router.v1.OutputTensor", datatype: 0, shape: [], doubleValues: new Float64Array([1]), int64Values: [], stringValues: [], boolValues: [] } } },
      { ...base, features: { a: { kind: { case: "stringValue", value: "s" } } } },
      { ...base, features: { a: v({ case: "nope", value: 1 } as never) } },
      { ...base, features: { a: v({ case: "int64Value", value: 1 } as never) } },
      { ...base, features: { a: v({ case: "floatVectorValue", value: { values: [1] } } as never) } },
      { ...base, timings: null },
      { ...base, timings: { $typeName: "mlmesh.router.v1.Timings", total: { seconds: 1n, nanos: -1 }, steps: [] } },
      { ...base, timings: { $typeName: "mlmesh.router.v1.Timings", total: { seconds: 315_576_000_001n, nanos: 0 }, steps: [] } },
      { ...base, timings: { $typeName: "mlmesh.router.v1.Timings", total: { seconds: 1n, nanos: 1e9 }, steps: [] } },
      { ...base, timings: { $typeName: "mlmesh.router.v1.Timings", total: { seconds: 1, nanos: 0 }, steps: [] } },
      { ...base, timings: { $typeName: "mlmesh.router.v1.Timings", steps: [{ step: 1 }] } },
    ];
    for (const m of odd) assert.equal(encodeChecked(m), undefined, JSON.stringify(m, (_k, x) => (typeof x === "bigint" ? `${x}n` : x)));
  });
});
