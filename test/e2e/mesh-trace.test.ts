// One Predict across the mesh is one trace (issue #8): registry, features, inference and
// router run as their own `mlmesh serve` processes exporting OTLP/HTTP JSON to a receiver in
// this test. The router's SERVER span is the ancestor of its CLIENT spans to the features and
// inference services, whose SERVER spans are their children, all under one trace id; the
// router's spans carry endpoint, model, version, arm, budget and time left. The prediction
// record the inference service logs on NATS names the same trace. And (issue #9) a feature
// its view tags PII appears in clear neither in any exported span nor in the prediction log.

import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { connect, type NatsConnection } from "nats";
import { PredictionLogBatchSchema, type PredictionLogged } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

interface OtlpAttr {
  key: string;
  value: { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean; arrayValue?: unknown };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: OtlpAttr[];
  links?: Array<{ traceId: string; spanId: string }>;
  service: string;
}

const SERVER = 2;
const CLIENT = 3;
// A PII value that cannot occur by accident in a span or a log record (and is exact in float32).
const SECRET_TENURE = 37.125;
const SALT = "mesh-trace-pii-salt-0123456789";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("mesh trace: router → features and router → inference in one trace, PII never in clear", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let receiver: http.Server;
  const spans: OtlpSpan[] = [];
  const rawBodies: string[] = [];
  const procs: MlmeshProcess[] = [];
  let router: Client<typeof RouterService>;
  const stamp = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const model = `trace_${stamp}`;
  const view = `tacct_${stamp}`;
  const endpoint = `trace-${stamp}`;
  const refs = [`${view}:tenure`, `${view}:calls`, `${view}:spend`];

  before(async () => {
    receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        rawBodies.push(body);
        const payload = JSON.parse(body) as {
          resourceSpans: Array<{ resource?: { attributes?: OtlpAttr[] }; scopeSpans: Array<{ spans: Array<Omit<OtlpSpan, "service">> }> }>;
        };
        for (const rs of payload.resourceSpans) {
          const service = rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? "";
          for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, service });
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" };

    nats = await testNats();
    nc = await connect({ servers: nats.url });
    const env = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn", MLMESH_INFERENCE_PII_SALT: SALT, ...otel });
    const addr = (s: string) => `http://127.0.0.1:${env[`MLMESH_${s.toUpperCase()}_GRPC_PORT`]}`;
    const all = { ...env, MLMESH_REGISTRY_ADDR: addr("registry"), MLMESH_FEATURES_ADDR: addr("features"), MLMESH_INFERENCE_ADDR: addr("inference"), MLMESH_EXPERIMENTS_ADDR: addr("experiments"), MLMESH_ROUTER_DEFAULT_BUDGET_MS: "5000" };
    procs.push(...(await Promise.all([startMlmesh(["serve", "registry"], all, 60_000), startMlmesh(["serve", "features"], all, 60_000), startMlmesh(["serve", "experiments"], all, 60_000)])));
    const registry = createServiceClient(RegistryService, addr("registry"));
    const features = createServiceClient(FeatureService, addr("features"));
    await features.applyFeatureViews({
      views: [
        {
          name: view,
          entities: [{ name: "account_id", type: ValueType.INT64 }],
          features: [
            { name: "tenure", type: ValueType.FLOAT64, pii: true },
            { name: "calls", type: ValueType.FLOAT64 },
            { name: "spend", type: ValueType.FLOAT64 },
          ],
          ttl: durationFromMs(3_600_000),
        },
      ],
      reason: "mesh trace test",
    });
    await features.writeFeatures({
      view,
      featureNames: ["tenure", "calls", "spend"],
      rows: [{ entityKey: { keys: { account_id: { kind: { case: "int64Value", value: 7n } } } }, eventTime: timestampFromMs(Date.now() - 1000), values: [SECRET_TENURE, 3, 55.5].map((x) => ({ kind: { case: "doubleValue" as const, value: x } })) }],
    });
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: refs }], entityKeys: ["account_id"] } } });
    await registry.promoteModelVersion({ modelName: model, version: 1n, reason: "trace test" });
    procs.push(await startMlmesh(["serve", "inference"], all, 60_000));
    procs.push(await startMlmesh(["serve", "router"], all, 60_000));
    router = createServiceClient(RouterService, addr("router"));
    await router.applyEndpoint({ endpoint: { name: endpoint, model, entities: ["account_id"] }, reason: "trace test" });
  });

  after(async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await nc?.close();
    await nats?.stop();
    receiver?.close();
  });

  it("links router SERVER → CLIENT → features/inference SERVER in one trace with the router's attributes", async () => {
    const res = await router.predict({ endpoint, entityKey: { keys: { account_id: { kind: { case: "int64Value", value: 7n } } } }, requestId: `req-${stamp}` });
    assert.ok(Number.isFinite(res.score) && res.score >= 0 && res.score <= 1, `score ${res.score}`);
    assert.equal(res.version, 1n);
    assert.match(res.traceId, /^[0-9a-f]{32}$/);
    const traceId = res.traceId;

    const byId = new Map<string, OtlpSpan>();
    const find = (pred: (s: OtlpSpan) => boolean) => spans.find((s) => s.traceId === traceId && pred(s));
    // Each process flushes its batch every 500 ms; wait until all four hops are in.
    const deadline = Date.now() + 30_000;
    let routerServer, featClient, featServer, infClient, infServer;
    for (;;) {
      routerServer = find((s) => s.kind === SERVER && s.name === "mlmesh.router.v1.RouterService/Predict");
      featClient = find((s) => s.kind === CLIENT && s.name === "mlmesh.features.v1.FeatureService/GetOnlineFeatures");
      featServer = find((s) => s.kind === SERVER && s.name === "mlmesh.features.v1.FeatureService/GetOnlineFeatures");
      infClient = find((s) => s.kind === CLIENT && s.name === "mlmesh.inference.v1.InferenceService/Score");
      infServer = find((s) => s.kind === SERVER && s.name === "mlmesh.inference.v1.InferenceService/Score");
      if ((routerServer && featClient && featServer && infClient && infServer) || Date.now() > deadline) break;
      await sleep(200);
    }
    const names = spans.filter((s) => s.traceId === traceId).map((s) => `${s.service}:${s.kind}:${s.name}`);
    assert.ok(routerServer && featClient && featServer && infClient && infServer, `spans of trace ${traceId}: ${names.join(", ")}`);
    for (const s of spans) byId.set(s.spanId, s);

    // The callee SERVER spans are direct children of the router's CLIENT spans ...
    assert.equal(featServer.parentSpanId, featClient.spanId);
    assert.equal(infServer.parentSpanId, infClient.spanId);
    assert.match(featServer.service, /features/);
    assert.match(infServer.service, /inference/);
    assert.match(routerServer.service, /router/);
    // ... and the CLIENT spans descend from the router's SERVER span (through its step spans).
    const ancestors = (s: OtlpSpan) => {
      const out: string[] = [];
      for (let p = s.parentSpanId; p && byId.has(p); p = byId.get(p)!.parentSpanId) out.push(byId.get(p)!.name);
      return out;
    };
    for (const [client, step] of [[featClient, "router.feature_fetch"], [infClient, "router.scoring"]] as const) {
      const chain = ancestors(client);
      assert.deepEqual([chain[0], chain.at(-1)], [step, "mlmesh.router.v1.RouterService/Predict"], `${client.name} ancestors: ${chain.join(" <- ")}`);
      assert.equal(client.service, routerServer.service);
    }

    const attr = (s: OtlpSpan, k: string) => s.attributes?.find((a) => a.key === k)?.value;
    const num = (v: OtlpAttr["value"] | undefined) => (v?.doubleValue ?? (v?.intValue !== undefined ? Number(v.intValue) : undefined));
    assert.deepEqual(attr(routerServer, "mlmesh.endpoint"), { stringValue: endpoint });
    assert.deepEqual(attr(routerServer, "mlmesh.model"), { stringValue: model });
    assert.equal(num(attr(routerServer, "mlmesh.model.version")), 1);
    assert.deepEqual(attr(routerServer, "mlmesh.router.arm"), { stringValue: "" });
    assert.deepEqual(attr(routerServer, "mlmesh.router.served_by"), { stringValue: "production" });
    assert.equal(num(attr(routerServer, "mlmesh.router.budget_ms")), 5000);
    const left = num(attr(routerServer, "mlmesh.router.time_left_ms"));
    assert.ok(left !== undefined && left > 0 && left < 5000, `time left ${left}`);
    const fetchStep = spans.find((s) => s.spanId === featClient.parentSpanId)!;
    assert.ok(num(attr(fetchStep, "mlmesh.router.step_budget_ms"))! > 0);
    assert.ok(num(attr(fetchStep, "mlmesh.router.time_left_ms"))! > 0);

    // The prediction log (NATS) names the request's trace, so its consumer joins it by id.
    const logged = await recordsFor(nc, model, res.requestId);
    assert.equal(logged.records.length, 1);
    assert.equal(logged.records[0]!.traceId, traceId);
    // ... and the batch's PRODUCER span (the parent of the consumer's span, carried in the NATS
    // headers) links the inference SERVER span that logged the record.
    const inferenceServer = spans.find((s) => s.traceId === traceId && s.kind === SERVER && s.name === "mlmesh.inference.v1.InferenceService/Score");
    assert.ok(inferenceServer, "the inference SERVER span of the request was exported");
    let producer: OtlpSpan | undefined;
    for (let i = 0; i < 100 && !producer; i++) {
      producer = spans.find((s) => s.name === `publish mlmesh.inference.predictions.${model}` && s.links?.some((l) => l.traceId === traceId));
      if (!producer) await sleep(100);
    }
    assert.ok(producer, "the prediction-log batch's producer span links the request");
    assert.ok(producer.links!.some((l) => l.spanId === inferenceServer.spanId), "the link names the inference SERVER span");

    // PII: the tenure value is nowhere in clear — neither in any exported span (every
    // attribute of every process) nor in the logged batch bytes, as text, float32 or float64.
    const clearText = String(SECRET_TENURE);
    for (const body of rawBodies) assert.ok(!body.includes(clearText), "a PII value appears in an exported span");
    const tenure = logged.records[0]!.inputs[`${view}:tenure`]?.kind;
    assert.equal(tenure?.case, "stringValue", "the PII column is logged as its salted hash");
    assert.notEqual(tenure?.value, clearText);
    assert.deepEqual(logged.records[0]!.inputs[`${view}:spend`]?.kind.value, 55.5, "untagged features stay in clear");
    const needles = [new TextEncoder().encode(clearText), new Uint8Array(new Float32Array([SECRET_TENURE]).buffer), new Uint8Array(new Float64Array([SECRET_TENURE]).buffer)];
    for (const b of logged.bytes) for (const n of needles) assert.ok(!contains(b, n), "a PII value appears in clear in the prediction log");
  });
});

async function recordsFor(nc: NatsConnection, model: string, requestId: string): Promise<{ records: PredictionLogged[]; bytes: Uint8Array[] }> {
  const subject = `mlmesh.inference.predictions.${model}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const out = { records: [] as PredictionLogged[], bytes: [] as Uint8Array[] };
    try {
      const consumer = await nc.jetstream().consumers.get("MLMESH_INFERENCE", { filterSubjects: subject });
      for (;;) {
        let got = 0;
        for await (const m of await consumer.fetch({ max_messages: 256, expires: 1000 })) {
          got++;
          const batch = fromBinary(PredictionLogBatchSchema, m.data);
          const mine = batch.records.filter((r) => r.requestId === requestId);
          if (mine.length) {
            out.records.push(...mine);
            out.bytes.push(m.data);
          }
        }
        if (got === 0) break;
      }
    } catch {
      // The stream appears with the first batch.
    }
    if (out.records.length > 0 || Date.now() > deadline) return out;
    await sleep(200);
  }
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}
