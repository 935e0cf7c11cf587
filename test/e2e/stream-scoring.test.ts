// Stream scoring (issue #10) through real processes on a private NATS: events published on
// `mlmesh.scoring.in.<endpoint>` come out on `mlmesh.scoring.out.<endpoint>` scored by the same
// Predict path (numpy's numbers for lr_v1), one result per input; a router SIGKILLed in the
// middle of the stream and restarted still leaves exactly one result per input (counted by
// msg id and by stored message), none lost — results are published before inputs are acked
// and carry a msg id derived from the input, so JetStream drops a re-scored input's second
// result. An invalid input is answered with an error result instead of looping.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { connect, type NatsConnection } from "nats";
import { StreamScoreRequestSchema, StreamScoreResultSchema, type StreamScoreResult } from "../../gen/mlmesh/events/v1/router_events_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { startPrivateNats, type TestNats } from "../support/nats.js";

const EXPECTED = JSON.parse(readFileSync(path.join(REPO_ROOT, "test/fixtures/inference/expected.json"), "utf8")) as Record<string, { inputs: number[][]; scores: number[] }>;
const V1 = EXPECTED["lr_v1.onnx"]!;
const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const TOL = 1e-5;
let routerLog: () => string = () => "";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const i64 = (x: number) => ({ kind: { case: "int64Value" as const, value: BigInt(x) } });

/** Every result stored on the endpoint's output subject, with its msg id. */
async function results(nc: NatsConnection, endpoint: string): Promise<Array<{ msgId: string; result: StreamScoreResult }>> {
  const subject = `mlmesh.scoring.out.${endpoint}`;
  const consumer = await nc.jetstream().consumers.get("MLMESH_SCORING", { filterSubjects: subject });
  const out: Array<{ msgId: string; result: StreamScoreResult }> = [];
  for (;;) {
    let got = 0;
    for await (const m of await consumer.fetch({ max_messages: 500, expires: 1000 })) {
      got++;
      out.push({ msgId: m.headers?.get("Nats-Msg-Id") ?? "", result: fromBinary(StreamScoreResultSchema, m.data) });
    }
    if (got === 0) return out;
  }
}

async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; router log tail: ${routerLog().slice(-3000)}`);
    await sleep(250);
  }
}

describe("stream scoring: score_in → Predict → score_out, exactly once per input across a crash", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  const procs: MlmeshProcess[] = [];
  let router: MlmeshProcess | undefined;
  let routerEnv: Record<string, string>;
  const stamp = Date.now().toString(36);
  const model = `stream_${stamp}`;
  const ep = `stream-${stamp}`;
  const ep2 = `stream2-${stamp}`;

  const publishInputs = async (endpoint: string, n: number, tag: string) => {
    const js = nc.jetstream();
    for (let i = 0; i < n; i++) {
      const account = (i % V1.inputs.length) + 1;
      const req = create(StreamScoreRequestSchema, { requestId: `${tag}-${i}`, entityKey: { keys: { account_id: i64(account) } } });
      await js.publish(`mlmesh.scoring.in.${endpoint}`, toBinary(StreamScoreRequestSchema, req), { msgID: `${tag}-${i}` });
    }
  };
  const expectedScore = (requestId: string) => V1.scores[Number(requestId.split("-").at(-1)) % V1.inputs.length]!;

  before(async () => {
    nats = await startPrivateNats();
    nc = await connect({ servers: nats.url });
    const env = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" });
    const addr = (s: string) => `http://127.0.0.1:${env[`MLMESH_${s.toUpperCase()}_GRPC_PORT`]}`;
    const all = { ...env, MLMESH_REGISTRY_ADDR: addr("registry"), MLMESH_FEATURES_ADDR: addr("features"), MLMESH_INFERENCE_ADDR: addr("inference"), MLMESH_EXPERIMENTS_ADDR: addr("experiments") };
    procs.push(...(await Promise.all([startMlmesh(["serve", "registry"], all, 60_000), startMlmesh(["serve", "features"], all, 60_000)])));
    procs.push(await startMlmesh(["serve", "inference"], all, 60_000));
    const registry = createServiceClient(RegistryService, addr("registry"));
    const features = createServiceClient(FeatureService, addr("features"));
    await features.applyFeatureViews({ views: [{ name: "acct", entities: [{ name: "account_id", type: ValueType.INT64 }], features: FEATURES.map((f) => ({ name: f.split(":")[1]!, type: ValueType.FLOAT64 })), ttl: durationFromMs(3_600_000) }] });
    await features.writeFeatures({
      view: "acct",
      featureNames: ["tenure", "calls", "spend"],
      rows: V1.inputs.map((x, i) => ({ entityKey: { keys: { account_id: i64(i + 1) } }, eventTime: timestampFromMs(Date.now() - 1000), values: x.map((v) => ({ kind: { case: "doubleValue" as const, value: v } })) })),
    });
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } } });
    await registry.promoteModelVersion({ modelName: model, version: 1n, reason: "stream test" });
    routerEnv = { ...all, MLMESH_ROUTER_DEFAULT_BUDGET_MS: "5000", MLMESH_ROUTER_STREAM_ENDPOINTS: `${ep},${ep2}`, MLMESH_ROUTER_STREAM_ACK_WAIT: "2s" };
    router = await startMlmesh(["serve", "router"], routerEnv, 60_000);
    routerLog = router.stderr;
    const rc = createServiceClient(RouterService, addr("router"));
    for (const name of [ep, ep2]) await rc.applyEndpoint({ endpoint: { name, model, entities: ["account_id"] } });
  });

  after(async () => {
    await router?.stop("SIGKILL").catch(() => undefined);
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await nc?.close();
    await nats?.stop();
  });

  it("N inputs give exactly N results with the model's scores; an invalid input gets an error result", async () => {
    const n = 30;
    await sleep(0);
    await publishInputs(ep, n, "a");
    // An input without the entity key can never score.
    await nc.jetstream().publish(`mlmesh.scoring.in.${ep}`, toBinary(StreamScoreRequestSchema, create(StreamScoreRequestSchema, { requestId: "bad" })), { msgID: "bad" });
    const got = await waitFor(() => results(nc, ep), (r) => r.length >= n + 1, 20_000, `${n + 1} results`);
    await sleep(500);
    const final = await results(nc, ep);
    assert.equal(final.length, n + 1, "one stored result per input");
    assert.equal(new Set(final.map((r) => r.msgId)).size, n + 1);
    for (const { msgId, result } of got) {
      if (result.requestId === "bad") {
        assert.match(result.error, /entity_key\.keys\["account_id"\]/);
        assert.equal(msgId, `score:${ep}:bad`);
        continue;
      }
      assert.equal(result.error, "");
      assert.equal(msgId, `score:${ep}:${result.inputMsgId}`);
      assert.equal(result.inputMsgId, result.requestId);
      assert.equal(result.model, model);
      assert.equal(result.version, 1n);
      assert.ok(Math.abs(result.score - expectedScore(result.requestId)) < TOL, `${result.requestId}: ${result.score} vs ${expectedScore(result.requestId)}`);
    }
    const metrics = await (await fetch(`${router!.endpoint("router").http}/metrics`)).text();
    assert.match(metrics, new RegExp(`mlmesh_router_stream_scored_total\\{endpoint="${ep}",outcome="ok"\\} ${n}`));
    assert.match(metrics, new RegExp(`mlmesh_router_stream_failures_total\\{endpoint="${ep}",reason="invalid"\\} 1`));
    assert.match(metrics, new RegExp(`mlmesh_router_stream_lag_seconds\\{endpoint="${ep}"\\} `));
    assert.match(metrics, new RegExp(`mlmesh_router_stream_pending_messages\\{endpoint="${ep}"\\} `));
  });

  it("a router SIGKILLed mid-stream and restarted leaves exactly one result per input", async (t) => {
    const n = 600;
    const jsm = await nc.jetstreamManager();
    const stored = async () => {
      const subject = `mlmesh.scoring.out.${ep2}`;
      const info = await jsm.streams.info("MLMESH_SCORING", { subjects_filter: subject });
      return info.state.subjects?.[subject] ?? 0;
    };
    // The whole input is queued before the router works through it, so the kill lands mid-stream.
    await router!.stop("SIGKILL");
    router = undefined;
    await publishInputs(ep2, n, "k");
    router = await startMlmesh(["serve", "router"], routerEnv, 60_000);
    routerLog = router.stderr;
    await waitFor(stored, (c) => c >= 20, 60_000, "the first results");
    await router.stop("SIGKILL");
    router = undefined;
    const before = await stored();
    assert.ok(before < n, `the router was killed mid-stream (${before} of ${n} done)`);
    t.diagnostic(`killed with ${before} of ${n} results stored`);
    router = await startMlmesh(["serve", "router"], routerEnv, 60_000);
    routerLog = router.stderr;
    const got = await waitFor(() => results(nc, ep2), (r) => new Set(r.map((x) => x.result.requestId)).size >= n, 120_000, `${n} distinct results`);
    // Give redeliveries (ack wait 2 s) time to show any double.
    await sleep(4000);
    const final = await results(nc, ep2);
    const metrics = await (await fetch(`${router.endpoint("router").http}/metrics`)).text();
    const dup = /mlmesh_router_stream_duplicate_results_total\{endpoint="[^"]+"\} (\d+)/.exec(metrics)?.[1] ?? "0";
    // >0 when the kill fell between a result's publish and its input's ack (timing decides).
    t.diagnostic(`${final.length} results stored; the restarted router re-scored ${dup} input(s) whose result was already stored`);
    assert.equal(new Set(final.map((r) => r.msgId)).size, n, "exactly N distinct result msg ids");
    assert.equal(final.length, n, "and exactly N stored results: no double survived the dedup window");
    assert.ok(got.length <= n);
    for (const { result } of final) assert.ok(Math.abs(result.score - expectedScore(result.requestId)) < TOL, result.requestId);
  });
});
