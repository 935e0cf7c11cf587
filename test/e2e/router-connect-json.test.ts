// Predict over Connect JSON on the router's real HTTP port (`mlmesh up`, real NATS, a real
// ONNX model and features) answers with the bytes it answered with before the hand-written
// codecs (services/router/predict-json.ts): the same call, gzip-compressed, goes through
// connect-node's handler (protobuf-es fromJson/toJsonString), and the same call over gRPC
// (@grpc/grpc-js) gives the message whose toJsonString is the body. Bad bodies get the error
// they got before: fromJson's, worded by connect-unary.ts, or the handler's.

import assert from "node:assert/strict";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { after, before, describe, it } from "node:test";
import { fromJson, toJsonString, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { PredictRequestSchema, PredictResponseSchema, RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { grpcJsClient, type GrpcJsClient } from "../support/grpc-js-client.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const gzip = promisify(zlib.gzip);
const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const PREDICT = "/mlmesh.router.v1.RouterService/Predict";
// One trace for both calls of a pair, so the answers' trace_id is the same.
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("router Predict over Connect JSON: the same bytes as protobuf-es's path", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let http: string;
  let grpcClient: GrpcJsClient;
  const stamp = Date.now().toString(36);
  const model = `churn_json_${stamp}`;
  const ep = `json-${stamp}`;

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(["up"], await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" }), 60_000);
    http = proc.endpoint("router").http;
    grpcClient = grpcJsClient(RouterService, proc.endpoint("router").grpc);
    const registry = createServiceClient(RegistryService, proc.endpoint("registry").grpc);
    const features = createServiceClient(FeatureService, proc.endpoint("features").grpc);
    const router = createServiceClient(RouterService, proc.endpoint("router").grpc);

    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } } });
    await registry.promoteModelVersion({ modelName: model, version: 1n, reason: "first" });
    await features.applyFeatureViews({
      views: [{ name: "acct", entities: [{ name: "account_id", type: ValueType.INT64 }], features: FEATURES.map((f) => ({ name: f.split(":")[1]!, type: ValueType.FLOAT64 })), ttl: durationFromMs(86_400_000) }],
    });
    await features.writeFeatures({
      view: "acct",
      featureNames: ["tenure", "calls", "spend"],
      rows: [
        { entityKey: { keys: { account_id: { kind: { case: "int64Value", value: 1n } } } }, eventTime: timestampFromMs(Date.now() - 1000), values: [12, 3, 0.1].map((x) => ({ kind: { case: "doubleValue" as const, value: x } })) },
        { entityKey: { keys: { account_id: { kind: { case: "int64Value", value: 2n } } } }, eventTime: timestampFromMs(Date.now() - 1000), values: [1, -0, 1e-7].map((x) => ({ kind: { case: "doubleValue" as const, value: x } })) },
      ],
    });
    await router.applyEndpoint({ endpoint: { name: ep, model, entities: ["account_id"] } });
  });

  after(async () => {
    grpcClient?.close();
    await proc?.stop("SIGKILL");
    await nats?.stop();
  });

  /** One POST; `compressed` sends the body gzip-compressed, which only connect-node takes. */
  async function post(body: string, compressed: boolean): Promise<{ status: number; text: string; type: string | null }> {
    const headers: Record<string, string> = { "content-type": "application/json", traceparent: TRACEPARENT };
    if (compressed) headers["content-encoding"] = "gzip";
    const res = await fetch(`${http}${PREDICT}`, { method: "POST", headers, body: compressed ? await gzip(body) : body });
    return { status: res.status, text: await res.text(), type: res.headers.get("content-type") };
  }

  const bodies = (requestId: string) => [
    JSON.stringify({ endpoint: ep, entityKey: { keys: { account_id: { int64Value: "1" } } }, requestId }),
    JSON.stringify({ endpoint: ep, entity_key: { keys: { account_id: { int64_value: 2 } } }, request_id: requestId, include_features: true, unit_id: "sess-\u00e9\u{1f600}" }),
    JSON.stringify({ endpoint: ep, entityKey: { keys: { account_id: { int64Value: 1 } } }, requestId, includeFeatures: true, context: { "acct:calls": { doubleValue: 7 }, note: { stringValue: "a\"b\\c\n" } } }),
  ];

  it("answers with connect-node's bytes, and with toJsonString of the gRPC answer", async () => {
    for (const [i, body] of bodies(`req-${stamp}`).entries()) {
      const fast = await post(body, false);
      const plain = await post(body, true);
      assert.equal(fast.status, 200, fast.text);
      assert.equal(fast.type, plain.type);
      assert.equal(fast.text, plain.text, `body ${i}`);
      const answer = JSON.parse(fast.text) as Record<string, unknown>;
      assert.equal(answer.traceId, TRACEPARENT.split("-")[1], "the pinned trace");
      assert.equal(answer.modelRef, `${model}@production`);
      if (i > 0) assert.ok(answer.features, "include_features answers the feature values");

      const metadata = new grpc.Metadata();
      metadata.set("traceparent", TRACEPARENT);
      const req = fromJson(PredictRequestSchema, JSON.parse(body) as JsonValue);
      const viaGrpc = await grpcClient.unary("Predict", PredictRequestSchema, PredictResponseSchema, req, { metadata });
      assert.equal(fast.text, toJsonString(PredictResponseSchema, viaGrpc), `body ${i} over gRPC`);
    }
  });

  /** The error the fast path answered a body fromJson refuses with before the codecs existed. */
  function decodeError(body: string): string | undefined {
    try {
      fromJson(PredictRequestSchema, JSON.parse(body === "" ? "{}" : body) as JsonValue, { ignoreUnknownFields: false });
      return undefined;
    } catch (e) {
      return `cannot decode message ${PredictRequestSchema.typeName} from JSON: ${(e as Error).message}`;
    }
  }

  it("bad bodies get the error they got before: fromJson's, or the handler's as connect-node answers it", async () => {
    const bad = [
      JSON.stringify({ endpoint: ep, bogus: 1 }),
      JSON.stringify({ endpoint: ep, entityKey: {}, entity_key: {} }),
      JSON.stringify({ endpoint: ep, entityKey: { keys: { account_id: { int64Value: "1e3" } } } }),
      JSON.stringify({ endpoint: ep, entityKey: { keys: { account_id: { stringValue: "\ud800" } } } }),
      JSON.stringify({ endpoint: ep, entityKey: { keys: { account_id: null } } }),
      "{",
      "[]",
    ];
    const refusedByHandler = [
      JSON.stringify({ endpoint: ep, entityKey: null }),
      JSON.stringify({ endpoint: "no-such-endpoint", entityKey: { keys: { account_id: { int64Value: "1" } } } }),
      "{}",
    ];
    for (const body of bad) {
      const fast = await post(body, false);
      const expected = decodeError(body);
      assert.ok(expected, body);
      assert.equal(fast.status, 400, body);
      assert.deepEqual(JSON.parse(fast.text), { code: "invalid_argument", message: expected }, body);
    }
    for (const body of refusedByHandler) {
      assert.equal(decodeError(body), undefined, body);
      const fast = await post(body, false);
      const plain = await post(body, true);
      assert.notEqual(fast.status, 200, body);
      assert.equal(fast.status, plain.status, body);
      assert.equal(fast.text, plain.text, body);
    }
    // An empty body is read as {} (connect-node, given it gzip-compressed, cannot parse it).
    assert.deepEqual(await post("", false), await post("{}", false));
  });
});
