// Predict's Connect JSON codecs (services/router/predict-json.ts) against protobuf-es's
// reflective fromJson/toJsonString, measured in the same run on the same inputs: ns per decode
// of a request text (JSON.parse included on both sides) and per encode of an answer. The
// inputs are the bench:mesh request and answers shaped as serve.ts makes them. Prints a table
// with the ratios; not a test (predict-json.test.ts checks that both give the same results).
//
//   node --import tsx bench/predict-json-codec.ts      (MLMESH_BENCH_MS=400 per round by default)

import { fromJson, toJsonString, type JsonValue } from "@bufbuild/protobuf";
import { FallbackKind, ServedBy, ServingStep } from "../gen/mlmesh/router/v1/router_resources_pb.js";
import { PredictRequestSchema, PredictResponseSchema, type PredictResponse } from "../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType, type Value } from "../gen/mlmesh/types/v1/types_pb.js";
import { decodePredictRequest, encodePredictResponse } from "../services/router/predict-json.js";

const ROUND_MS = Number(process.env.MLMESH_BENCH_MS ?? "400");
const ROUNDS = 5;

/** Median over rounds of the ns one call takes; `sink` keeps the results alive. */
function nsPerOp(fn: () => unknown): number {
  let sink = 0;
  const perRound: number[] = [];
  for (let r = 0; r < ROUNDS + 1; r++) {
    let n = 0;
    const t0 = performance.now();
    const end = t0 + ROUND_MS;
    let t = t0;
    while (t < end) {
      for (let i = 0; i < 256; i++) if (fn() !== undefined) sink++;
      n += 256;
      t = performance.now();
    }
    if (r > 0) perRound.push(((t - t0) * 1e6) / n); // round 0 warms the JIT up
  }
  if (sink < 0) console.log(sink);
  return perRound.sort((a, b) => a - b)[Math.floor(perRound.length / 2)]!;
}

const value = (kind: Value["kind"]): Value => ({ $typeName: "mlmesh.types.v1.Value", kind });
const tensor = (datatype: ValueType, shape: bigint[], doubleValues: number[], stringValues: string[] = []) => ({
  $typeName: "mlmesh.router.v1.OutputTensor" as const,
  datatype,
  shape,
  doubleValues,
  int64Values: [],
  stringValues,
  boolValues: [],
});
const duration = (ms: number) => ({ $typeName: "google.protobuf.Duration" as const, seconds: BigInt(Math.floor(ms / 1000)), nanos: Math.round((ms % 1000) * 1e6) });

const plainAnswer: PredictResponse = {
  $typeName: "mlmesh.router.v1.PredictResponse",
  requestId: "6f1d2c1e-6b7a-4d0e-9a51-3f2b8c4d9e10",
  score: 0.8127340078353882,
  rawScore: 0.8127340078353882,
  decision: undefined,
  classProbabilities: { "0": 0.18726599216461182, "1": 0.8127340078353882 },
  outputs: {
    output_label: tensor(ValueType.STRING, [], [], ["1"]),
    output_probability: tensor(ValueType.FLOAT64, [2n], [0.18726599216461182, 0.8127340078353882]),
  },
  model: "bench_model",
  version: 1n,
  modelRef: "bench_model@production",
  arm: "",
  experimentKey: "",
  servedBy: ServedBy.PRODUCTION,
  fallbacks: [],
  degraded: false,
  timings: undefined,
  features: {},
  planRevision: 1n,
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
};

const richAnswer: PredictResponse = {
  ...plainAnswer,
  decision: true,
  fallbacks: [{ $typeName: "mlmesh.router.v1.FallbackApplied", kind: FallbackKind.FEATURE_VALUES_MISSING, reason: "acct:spend NOT_FOUND", features: ["acct:spend"], failedModelRef: "" }],
  degraded: true,
  timings: {
    $typeName: "mlmesh.router.v1.Timings",
    total: duration(3.2),
    effectiveBudget: duration(50),
    steps: (
      [
        [ServingStep.ASSIGNMENT, 0.01],
        [ServingStep.FEATURE_FETCH, 1.2],
        [ServingStep.SCORING, 1.7],
        [ServingStep.POST_PROCESSING, 0.02],
      ] as const
    ).map(([step, ms]) => ({ $typeName: "mlmesh.router.v1.StepTiming" as const, step, elapsed: duration(ms), budget: duration(12.5), budgetExceeded: false })),
  },
  features: {
    "acct:tenure": value({ case: "doubleValue", value: 12 }),
    "acct:calls": value({ case: "int64Value", value: 3n }),
    "acct:plan": value({ case: "stringValue", value: "premium" }),
    "acct:spend": value({ case: "doubleValue", value: 0 }),
  },
};

const requests: Array<[string, string]> = [
  ["bench:mesh request", '{"endpoint":"bench-x","entityKey":{"keys":{"user_id":{"stringValue":"u17"}}}}'],
  [
    "request with context",
    JSON.stringify({ endpoint: "churn", entity_key: { keys: { account_id: { int64Value: "42" } } }, context: { country: { stringValue: "DE" }, "acct:calls": { doubleValue: 7 } }, requestId: "r-1", includeFeatures: true }),
  ],
];
const answers: Array<[string, PredictResponse]> = [
  ["Predict answer", plainAnswer],
  ["answer with timings, features, fallback", richAnswer],
];

const rows: Array<{ what: string; protobufEs: number; fast: number; parse?: number }> = [];
for (const [what, text] of requests) {
  if (decodePredictRequest(text) === undefined) throw new Error(`the decoder declined ${text}`);
  rows.push({
    what: `decode ${what}`,
    protobufEs: nsPerOp(() => fromJson(PredictRequestSchema, JSON.parse(text) as JsonValue, { ignoreUnknownFields: false })),
    fast: nsPerOp(() => decodePredictRequest(text)),
    // JSON.parse alone, the part both pay: a CPU profile of connect-unary.ts charged it to the
    // caller, not to fromJson, so the rest is what the profile's fromJson share stood for.
    parse: nsPerOp(() => JSON.parse(text)),
  });
}
for (const [what, message] of answers) {
  if (encodePredictResponse(message) !== toJsonString(PredictResponseSchema, message)) throw new Error(`the encoder differs on ${what}`);
  rows.push({ what: `encode ${what}`, protobufEs: nsPerOp(() => toJsonString(PredictResponseSchema, message)), fast: nsPerOp(() => encodePredictResponse(message)) });
}

const col = (x: string | number, w: number) => (typeof x === "number" ? x.toFixed(0) : x).padStart(w);
console.log(`${"".padEnd(44)}${col("protobuf-es ns", 16)}${col("fast ns", 9)}${col("speed-up", 10)}${col("JSON.parse ns", 15)}${col("speed-up without it", 21)}`);
for (const r of rows) {
  const line = `${r.what.padEnd(44)}${col(r.protobufEs, 16)}${col(r.fast, 9)}${col((r.protobufEs / r.fast).toFixed(1) + "x", 10)}`;
  console.log(r.parse === undefined ? line : `${line}${col(r.parse, 15)}${col(((r.protobufEs - r.parse) / Math.max(1, r.fast - r.parse)).toFixed(1) + "x", 21)}`);
}
