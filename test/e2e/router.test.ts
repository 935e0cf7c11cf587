// The router through real processes on real NATS: `mlmesh serve` registry, features,
// inference and router, ONNX fixtures pushed to the registry, features written to the
// feature service. Predict and Rank answer with the model's numbers (numpy's, from
// test/fixtures/inference/expected.json); endpoints apply idempotently from the CLI; a
// canary is sticky and near its weight; shadows add no latency and record agreement; a
// feature-service stall gives a fallback answer within budget; rollouts promote, roll back
// on a failing gate (named, on NATS) and resume after a router restart.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { RolloutRolledBackSchema, type RolloutRolledBack } from "../../gen/mlmesh/events/v1/router_events_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { MetricDirection, MetricRole, MetricType, UnitType } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { createExperimentAssigner } from "../../services/experiments/assign.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { BlueGreenColor, FallbackKind, GateKind, PredicateOperator, RolloutState, ServedBy } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { DriftAlertSchema } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { DriftState } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { JetStreamBus } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const EXPECTED = JSON.parse(readFileSync(path.join(REPO_ROOT, "test/fixtures/inference/expected.json"), "utf8")) as Record<string, { inputs: number[][]; scores: number[] }>;
const V1 = EXPECTED["lr_v1.onnx"]!;
const V2 = EXPECTED["lr_v2.onnx"]!;
const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const TOL = 1e-5;
const HOUR = 3_600_000;

const f64 = (x: number) => ({ kind: { case: "doubleValue" as const, value: x } });
const i64 = (x: number) => ({ kind: { case: "int64Value" as const, value: BigInt(x) } });
const str = (x: string) => ({ kind: { case: "stringValue" as const, value: x } });
const acct = (id: number) => ({ keys: { account_id: i64(id) } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rejectsWith(code: Code, pattern: RegExp) {
  return (e: unknown) => {
    const ce = ConnectError.from(e);
    assert.equal(Code[ce.code], Code[code], ce.rawMessage);
    assert.match(ce.rawMessage, pattern);
    return true;
  };
}

async function until<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

describe("router: endpoints, predict, rank, plans and rollouts over the real mesh", () => {
  let nats: TestNats;
  const procs: Record<string, MlmeshProcess> = {};
  let routerEnv: Record<string, string>;
  let cliEnv: Record<string, string>;
  let registry: Client<typeof RegistryService>;
  let features: Client<typeof FeatureService>;
  let router: Client<typeof RouterService>;
  const stamp = Date.now().toString(36);
  const churn = `churn_${stamp}`;
  const ranker = `ranker_${stamp}`;
  const ep = `churn-${stamp}`;

  const routerLogs: Array<() => string> = [];
  const startRouter = async () => {
    procs.router = await startMlmesh(["serve", "router"], routerEnv);
    routerLogs.push(procs.router.stderr);
    router = createServiceClient(RouterService, procs.router.endpoint("router").grpc);
  };

  before(async () => {
    nats = await testNats();
    const base = { MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" };
    const env = await isolatedEnv(base);
    const addr = (s: string) => `http://127.0.0.1:${env[`MLMESH_${s.toUpperCase()}_GRPC_PORT`]}`;
    const addrs = { MLMESH_REGISTRY_ADDR: addr("registry"), MLMESH_FEATURES_ADDR: addr("features"), MLMESH_INFERENCE_ADDR: addr("inference"), MLMESH_ROUTER_ADDR: addr("router"), MLMESH_EXPERIMENTS_ADDR: addr("experiments") };
    const all = { ...env, ...addrs };
    [procs.registry, procs.features, procs.experiments] = await Promise.all([startMlmesh(["serve", "registry"], all), startMlmesh(["serve", "features"], all), startMlmesh(["serve", "experiments"], all)]);
    procs.inference = await startMlmesh(["serve", "inference"], all);
    routerEnv = { ...all, MLMESH_ROUTER_SHADOW_TIMEOUT: "5s", MLMESH_ROUTER_EXPOSURE_FLUSH: "200ms", MLMESH_ROUTER_ROLLOUT_TICK: "100ms", MLMESH_ROUTER_MIN_ROLLOUT_INTERVAL: "300ms", MLMESH_ROUTER_DEFAULT_BUDGET_MS: "2000" };
    cliEnv = addrs;
    await startRouter();
    registry = createServiceClient(RegistryService, procs.registry.endpoint("registry").grpc);
    features = createServiceClient(FeatureService, procs.features.endpoint("features").grpc);

    const binding = { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } };
    await upload(registry, churn, fixture("lr_v1.onnx"), { spec: binding });
    await upload(registry, churn, fixture("lr_v2.onnx"), { spec: binding });
    // v3: four inputs named "features" and no binding, so the endpoint's three features cannot feed it.
    await upload(registry, churn, fixture("lr_other_inputs.onnx"));
    await registry.promoteModelVersion({ modelName: churn, version: 1n, reason: "first" });
    const rankBinding = { featureBinding: { inputs: [{ inputName: "x", features: ["acct:tenure", "item:price", "item:pop"] }], entityKeys: ["account_id", "item_id"] } };
    await upload(registry, ranker, fixture("lr_v1.onnx"), { spec: rankBinding });
    await registry.promoteModelVersion({ modelName: ranker, version: 1n, reason: "first" });

    const ttl = durationFromMs(24 * HOUR);
    await features.applyFeatureViews({
      views: [
        { name: "acct", entities: [{ name: "account_id", type: ValueType.INT64 }], features: FEATURES.map((f) => ({ name: f.split(":")[1]!, type: ValueType.FLOAT64 })), ttl },
        {
          name: "item",
          entities: [{ name: "item_id", type: ValueType.INT64 }],
          features: [
            { name: "price", type: ValueType.FLOAT64 },
            { name: "pop", type: ValueType.FLOAT64 },
            { name: "category", type: ValueType.STRING },
          ],
          ttl,
        },
        { name: "lists", entities: [{ name: "account_id", type: ValueType.INT64 }], features: [{ name: "recent", type: ValueType.STRING }], ttl },
      ],
    });
    await features.writeFeatures({ view: "lists", featureNames: ["recent"], rows: [{ entityKey: acct(2), eventTime: timestampFromMs(Date.now() - 1000), values: [str('["1","3","6"]')] }] });
    const now = Date.now();
    await features.writeFeatures({
      view: "acct",
      featureNames: ["tenure", "calls", "spend"],
      rows: V1.inputs.map((x, i) => ({ entityKey: acct(i + 1), eventTime: timestampFromMs(now - 1000), values: x.map(f64) })),
    });
    await features.writeFeatures({
      view: "item",
      featureNames: ["price", "pop", "category"],
      rows: [1, 2, 3, 4, 5, 6].map((id) => ({ entityKey: { keys: { item_id: i64(id) } }, eventTime: timestampFromMs(now - 1000), values: [f64(id * 10), f64(id % 3), str(id % 2 ? "odd" : "even")] })),
    });
  });

  after(async () => {
    if (process.env.MLMESH_TEST_DEBUG) for (const log of [...routerLogs, ...Object.values(procs).map((p) => p.stderr)]) process.stderr.write(log());
    for (const p of [procs.router, procs.inference, procs.features, procs.registry, procs.experiments]) await p?.stop();
    await nats?.stop();
  });

  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [MLMESH_BIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, ...cliEnv }, encoding: "utf8", timeout: 30_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it("applies the minimal endpoint file from the CLI; re-applying is a no-op; bad fields are named", async () => {
    const file = path.join(procs.router!.dataDir, "endpoint.json");
    writeFileSync(file, JSON.stringify({ name: ep, model: churn, entities: ["account_id"] }));
    const first = cli(["endpoints", "apply", file, "--json"]);
    assert.equal(first.code, 0, first.stderr);
    const [created] = JSON.parse(first.stdout) as Array<{ created: boolean; changed: boolean }>;
    assert.equal(created!.created, true);
    const again = cli(["endpoints", "apply", file, "--json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout).map((r: { created: boolean; changed: boolean }) => [r.created, r.changed]), [[false, false]]);
    const arrayFile = path.join(procs.router!.dataDir, "endpoints.json");
    writeFileSync(arrayFile, JSON.stringify([{ name: `${ep}-a`, model: churn, entities: ["account_id"] }, { name: `${ep}-b`, model: churn, entities: ["account_id"], description: "second" }]));
    const both = cli(["endpoints", "apply", arrayFile]);
    assert.equal(both.code, 0, both.stderr);
    assert.match(both.stdout, new RegExp(`endpoint ${ep}-a created.*\\n.*endpoint ${ep}-b created`, "s"));
    const bad = cli(["endpoints", "apply", arrayFile.replace("endpoints.json", "missing.json")]);
    assert.equal(bad.code, 2, "a missing file is a usage error");
    const got = (await router.getEndpoint({ name: ep })).endpoint!;
    assert.equal(got.status?.generation, 1n);
    assert.equal(got.servingPlan?.plan.case, "single");
    assert.equal(got.status?.traffic[0]?.version, 1n, "serves churn@production = v1");
    const audit = await router.listAuditRecords({ resourcePrefix: `endpoints/${ep}` });
    assert.deepEqual(audit.records.filter((r) => r.resource === `endpoints/${ep}`).map((r) => r.action), ["endpoint.apply"], "the no-op apply is not audited");

    await assert.rejects(router.applyEndpoint({ endpoint: { name: "Bad.Name", model: churn, entities: ["account_id"] } }), rejectsWith(Code.InvalidArgument, /^endpoint\.name: /));
    await assert.rejects(router.applyEndpoint({ endpoint: { name: "x1", model: churn, entities: [] } }), rejectsWith(Code.InvalidArgument, /^endpoint\.entities: /));
    await assert.rejects(
      router.applyEndpoint({ endpoint: { name: "x2", model: churn, entities: ["account_id"], latencyBudget: { total: durationFromMs(10), scoring: durationFromMs(20) } } }),
      rejectsWith(Code.InvalidArgument, /^endpoint\.latency_budget: .*more than total/),
    );
    await assert.rejects(router.applyEndpoint({ endpoint: { name: "x3", model: "nope_model", entities: ["account_id"] } }), rejectsWith(Code.FailedPrecondition, /nope_model@production cannot be resolved/));
  });

  it("predicts with the production version's numbers, all outputs and per-step timings; the CLI prints JSON", async () => {
    for (let i = 0; i < V1.inputs.length; i++) {
      const r = await router.predict({ endpoint: ep, entityKey: acct(i + 1), includeTimings: i === 0 });
      assert.ok(Math.abs(r.score - V1.scores[i]!) <= TOL, `account ${i + 1}: ${r.score} vs ${V1.scores[i]}`);
      assert.equal(r.model, churn);
      assert.equal(r.version, 1n);
      assert.equal(r.servedBy, ServedBy.PRODUCTION);
      assert.equal(r.degraded, false);
      assert.ok(r.outputs.score, "every model output is returned");
      if (i === 0) {
        const steps = r.timings!.steps.map((s) => s.step);
        assert.equal(steps.length, 4, "assignment, feature fetch, scoring, post-processing");
        assert.ok(r.timings!.effectiveBudget!.seconds === 2n, "the default budget (2 s here)");
      }
    }
    await assert.rejects(router.predict({ endpoint: ep, entityKey: { keys: {} } }), rejectsWith(Code.InvalidArgument, /^entity_key\.keys\["account_id"\]: is required/));
    await assert.rejects(router.predict({ endpoint: "nope", entityKey: acct(1) }), rejectsWith(Code.NotFound, /endpoint "nope" not found/));
    const out = cli(["predict", ep, "--entity", "account_id=2", "--json"]);
    assert.equal(out.code, 0, out.stderr);
    const j = JSON.parse(out.stdout) as { score: number; model: string; version: number };
    assert.ok(Math.abs(j.score - V1.scores[1]!) <= TOL);
    assert.equal(j.model, churn);
    assert.equal(j.version, 1);
  });

  it("ranks: rules select candidates before one batched Score call, boosts and caps after", async () => {
    const name = `rank-${stamp}`;
    await router.applyEndpoint({
      endpoint: {
        name,
        model: ranker,
        entities: ["account_id"],
        candidateSelection: {
          candidateEntity: "item_id",
          rules: {
            rules: [
              { name: "withdrawn", rule: { case: "exclusion", value: { candidateIds: ["6"] } } },
              { name: "affordable", rule: { case: "filter", value: { allOf: [{ operand: { case: "featureRef", value: "item:price" }, operator: PredicateOperator.LE, valueContextKey: "max_price" }] } } },
              { name: "promo", rule: { case: "boost", value: { when: [{ operand: { case: "featureRef", value: "item:category" }, operator: PredicateOperator.EQ, value: str("even") }], effect: { case: "add", value: 1 } } } },
              { name: "one-per-category", rule: { case: "categoryCap", value: { categoryFeatureRef: "item:category", maxPerCategory: 1 } } },
            ],
          },
        },
      },
    });
    const res = await router.rank({ endpoint: name, entityKey: acct(2), candidates: ["1", "2", "3", "4", "5", "6"].map((id) => ({ id })), k: 2, context: { max_price: f64(40) }, explain: true });
    assert.equal(res.candidatesReceived, 6);
    assert.equal(res.candidatesScored, 4, "6 excluded, 5 filtered out (price 50 > 40): only 4 rows reach the model");
    assert.equal(res.items.length, 2);
    // Numbers: sigmoid(x·W + b) with v1's weights (make_models.py) on [tenure 1, price, pop].
    const model = (price: number, pop: number) => 1 / (1 + Math.exp(-(0.5 * 1 - 1.25 * price + 2 * pop + 0.1)));
    const even = [2, 4].map((id) => ({ id: String(id), s: model(id * 10, id % 3) + 1 })).sort((a, b) => b.s - a.s);
    const odd = [1, 3].map((id) => ({ id: String(id), s: model(id * 10, id % 3) })).sort((a, b) => b.s - a.s);
    assert.deepEqual(res.items.map((i) => i.id), [even[0]!.id, odd[0]!.id], "one per category, boosted even first");
    assert.ok(Math.abs(res.items[0]!.score - even[0]!.s) < 1e-5);
    assert.deepEqual(res.items[0]!.boostsApplied, ["promo"]);
    const reasons = new Map(res.excluded.map((e) => [e.id, e.rule]));
    assert.equal(reasons.get("6"), "withdrawn");
    assert.equal(reasons.get("5"), "affordable");
    // The same model with candidates from a list stored in the feature service.
    const listed = `listed-${stamp}`;
    await router.applyEndpoint({ endpoint: { name: listed, model: ranker, entities: ["account_id"], candidateSelection: { candidateEntity: "item_id", source: { source: { case: "featureList", value: { featureRef: "lists:recent" } } } } } });
    const fromList = await router.rank({ endpoint: listed, entityKey: acct(2) });
    assert.equal(fromList.candidatesReceived, 3);
    assert.deepEqual(fromList.items.map((i) => i.id), ["1", "3", "6"].map((id) => ({ id, s: model(Number(id) * 10, Number(id) % 3) })).sort((a, b) => b.s - a.s).map((x) => x.id));
    const out = cli(["rank", name, "--entity", "account_id=2", "--candidates", "1,2,3", "--k", "2", "--context", "max_price=100", "--json"]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal((JSON.parse(out.stdout) as { items: unknown[] }).items.length, 2);
  });

  it("canary: sticky per unit, near its weight, and a unit in at 30% stays in at 60%", async () => {
    const name = `canary-${stamp}`;
    await router.applyEndpoint({ endpoint: { name, model: churn, entities: ["account_id"], servingPlan: { plan: { case: "canary", value: { canaryModelRef: `${churn}@2`, canaryWeight: 0.3 } } } } });
    const n = 600;
    const served = async (unit: string) => (await router.predict({ endpoint: name, entityKey: acct(2), unitId: unit })).version;
    const first = new Map<string, bigint>();
    for (let i = 0; i < n; i++) first.set(`u${i}`, await served(`u${i}`));
    const inCanary = [...first.values()].filter((v) => v === 2n).length;
    const sd = Math.sqrt(n * 0.3 * 0.7);
    assert.ok(Math.abs(inCanary - n * 0.3) <= 4 * sd, `${inCanary} of ${n} in the canary, expected ${n * 0.3} ± ${4 * sd}`);
    for (const u of ["u1", "u2", "u3", "u4", "u5"]) assert.equal(await served(u), first.get(u), "sticky");
    await router.setServingPlan({ endpoint: name, plan: { plan: { case: "canary", value: { canaryModelRef: `${churn}@2`, canaryWeight: 0.6 } } } });
    for (const [u, v] of [...first].slice(0, 150)) if (v === 2n) assert.equal(await served(u), 2n, `${u} stays in the canary`);
  });

  it("shadow: mirrored after the response (no added latency) with agreement and score differences", async () => {
    const name = `shadow-${stamp}`;
    // The shadow is v2 under another name whose batches wait 150 ms for company: a shadow
    // the caller waited for would add at least that much to every request.
    const slow = `${churn}_slow`;
    await upload(registry, slow, fixture("lr_v2.onnx"), { spec: { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } } });
    await createServiceClient(InferenceService, procs.inference!.endpoint("inference").grpc).setBatchingConfig({ modelName: slow, batching: { enabled: true, maxBatchSize: 64, maxQueueDelayUs: 150_000n } });
    await router.applyEndpoint({ endpoint: { name, model: churn, entities: ["account_id"], postProcessing: { threshold: 0.5 } } });
    const timeRound = async () => {
      const t: number[] = [];
      for (let i = 0; i < 48; i++) {
        const t0 = performance.now();
        await router.predict({ endpoint: name, entityKey: acct((i % 16) + 1) });
        t.push(performance.now() - t0);
      }
      t.sort((a, b) => a - b);
      return t[Math.floor(t.length / 2)]!;
    };
    await timeRound(); // warm-up
    const plain = await timeRound();
    await router.setServingPlan({ endpoint: name, plan: { plan: { case: "shadow", value: { shadowModelRefs: [`${slow}@1`], mirrorFraction: 1 } } } });
    const shadowed = await timeRound();
    const stats = await until(
      async () => {
        const s = (await router.getShadowStats({ endpoint: name })).shadows[0];
        return s && s.comparedRequests + s.shadowErrors + s.droppedRequests >= 48n ? s : undefined;
      },
      10_000,
      "shadow comparisons",
    );
    assert.deepEqual([stats.comparedRequests, stats.shadowErrors, stats.droppedRequests], [48n, 0n, 0n]);
    assert.ok(stats.p99LatencyMs >= 140, `the shadow really is slow: p99 ${stats.p99LatencyMs} ms`);
    assert.ok(shadowed < plain + 50, `median with a 150 ms shadow ${shadowed.toFixed(2)} ms vs without ${plain.toFixed(2)} ms`);
    assert.equal(stats.version, 1n);
    assert.equal(stats.shadowErrors, 0n);
    // Reference: the same 16 accounts scored by v1 (production) and v2 (shadow), from numpy.
    const diffs = V1.scores.map((s, i) => V2.scores[i]! - s);
    const agreeRef = V1.scores.filter((s, i) => s >= 0.5 === V2.scores[i]! >= 0.5).length / 16;
    const maxAbs = Math.max(...diffs.map(Math.abs));
    assert.ok(Math.abs(stats.maxAbsScoreDiff - maxAbs) < 1e-5, `${stats.maxAbsScoreDiff} vs ${maxAbs}`);
    assert.ok(Math.abs(stats.agreementRate - agreeRef) < 1e-9, `agreement ${stats.agreementRate} vs ${agreeRef} (each account equally often)`);
    const mean = diffs.reduce((a, b) => a + b, 0) / 16;
    assert.ok(Math.abs(stats.meanScoreDiff - mean) < 1e-5, `mean diff ${stats.meanScoreDiff} vs ${mean}`);
    await sleep(300);
    assert.deepEqual((await router.getShadowStats({ endpoint: name, window: durationFromMs(200) })).shadows, [], "nothing mirrored in the last 200 ms");
  });

  it("A/B: experiment arms map to versions, assigned in-process like the experiments library, exposures logged", async () => {
    const ex = createServiceClient(ExperimentService, procs.experiments!.endpoint("experiments").grpc);
    const key = `router-ab-${stamp}`;
    await ex.createExperiment({
      experiment: {
        key,
        unitType: UnitType.USER,
        arms: [
          { name: "control", weight: 0.5, control: true },
          { name: "treatment", weight: 0.5 },
        ],
        metrics: [{ name: "churned", role: MetricRole.PRIMARY, type: MetricType.PROPORTION, direction: MetricDirection.LOWER_IS_BETTER, baselineMean: 0.2 }],
        mde: 0.05,
        expectedDailyUnits: 1000,
      },
    });
    const running = (await ex.startExperiment({ key })).experiment!;
    const name = `ab-${stamp}`;
    const plan = { plan: { case: "experiment" as const, value: { experimentKey: key, defaultModelRef: `${churn}@1`, arms: { control: {}, treatment: { modelRef: `${churn}@2` } } } } };
    await assert.rejects(
      router.applyEndpoint({ endpoint: { name, model: churn, entities: ["account_id"], servingPlan: { plan: { case: "experiment", value: { experimentKey: key, arms: { control: {} } } } } } }),
      rejectsWith(Code.FailedPrecondition, /arms treatment are not bound/),
    );
    await router.applyEndpoint({ endpoint: { name, model: churn, entities: ["account_id"], servingPlan: plan } });
    const local = createExperimentAssigner(running);
    const units = Array.from({ length: 120 }, (_, i) => `ab-user-${i}`);
    for (const u of units) {
      const r = await router.predict({ endpoint: name, entityKey: acct(2), unitId: u });
      const a = local(u);
      assert.equal(r.arm, a.arm, u);
      assert.equal(r.experimentKey, key);
      assert.equal(r.servedBy, ServedBy.EXPERIMENT_ARM);
      assert.equal(r.version, a.arm === "treatment" ? 2n : 1n);
    }
    const want = ["control", "treatment"].map((arm) => [arm, BigInt(units.filter((u) => local(u).arm === arm).length)]);
    await until(async () => {
      const rep = (await ex.getReport({ experimentKey: key })).report!;
      const got = rep.arms.map((a) => [a.arm, a.units]);
      return JSON.stringify(got, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) === JSON.stringify(want, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) ? true : undefined;
    }, 15_000, "exposures in the experiment's report");
  });

  it("blue-green switches atomically and back, and a second router replica follows through NATS", async () => {
    const name = `bg-${stamp}`;
    const envB = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" });
    const replica = await startMlmesh(["serve", "router"], { ...envB, ...cliEnv, MLMESH_ROUTER_ADDR: `http://127.0.0.1:${envB.MLMESH_ROUTER_GRPC_PORT}` });
    try {
      const b = createServiceClient(RouterService, replica.endpoint("router").grpc);
      await router.applyEndpoint({ endpoint: { name, model: churn, entities: ["account_id"], servingPlan: { plan: { case: "blueGreen", value: { blueModelRef: `${churn}@1`, greenModelRef: `${churn}@2`, active: BlueGreenColor.BLUE } } } } });
      const versionOn = async (c: Client<typeof RouterService>) => (await c.predict({ endpoint: name, entityKey: acct(2) })).version;
      assert.equal(await versionOn(router), 1n);
      await until(async () => ((await versionOn(b).catch(() => 0n)) === 1n ? true : undefined), 10_000, "the replica to learn the endpoint");
      const sw = await router.switchBlueGreen({ endpoint: name });
      assert.deepEqual([sw.previous, sw.active, sw.changed], [BlueGreenColor.BLUE, BlueGreenColor.GREEN, true]);
      assert.equal(await versionOn(router), 2n, "the switch is effective at once on the replica that made it");
      await until(async () => ((await versionOn(b)) === 2n ? true : undefined), 10_000, "the replica to switch to green");
      const back = await router.switchBlueGreen({ endpoint: name, target: BlueGreenColor.BLUE });
      assert.equal(back.active, BlueGreenColor.BLUE);
      assert.equal(await versionOn(router), 1n);
      await until(async () => ((await versionOn(b)) === 1n ? true : undefined), 10_000, "the replica to switch back");
      const plan = await b.getServingPlan({ endpoint: name });
      assert.equal(plan.revision, 3n, "same plan revision on both replicas");
      await assert.rejects(router.switchBlueGreen({ endpoint: ep }), rejectsWith(Code.FailedPrecondition, /not blue_green/));
      await router.deleteEndpoint({ name, reason: "done" });
      await until(async () => ((await b.getEndpoint({ name }).catch((e: unknown) => ConnectError.from(e).code)) === Code.NotFound ? true : undefined), 10_000, "the replica to drop it");
    } finally {
      await replica.stop();
    }
  });

  it("a stalled feature service gives the fallback answer within the budget", async () => {
    const name = `fallback-${stamp}`;
    await router.applyEndpoint({
      endpoint: {
        name,
        model: churn,
        entities: ["account_id"],
        latencyBudget: { total: durationFromMs(300), featureFetch: durationFromMs(60) },
        fallbacks: { defaultFeatureValues: { "acct:tenure": f64(0), "acct:calls": f64(0), "acct:spend": f64(0) } },
      },
    });
    await router.predict({ endpoint: name, entityKey: acct(2) });
    const pid = procs.features!.proc.pid!;
    process.kill(pid, "SIGSTOP");
    try {
      const t0 = performance.now();
      const r = await router.predict({ endpoint: name, entityKey: acct(2), includeTimings: true });
      const ms = performance.now() - t0;
      assert.equal(r.degraded, true);
      assert.equal(r.fallbacks[0]?.kind, FallbackKind.FEATURE_FETCH_FAILED);
      assert.match(r.fallbacks[0]!.reason, /deadline 60 ms exceeded/);
      assert.ok(Math.abs(r.score - V1.scores[0]!) <= TOL, "all-zero defaults score like account 1 (all zeros)");
      assert.ok(ms < 300 + 150, `answered in ${ms.toFixed(1)} ms against a 300 ms budget`);
      const fetch = r.timings!.steps.find((s) => s.budgetExceeded);
      assert.ok(fetch, "the feature fetch step reports its budget exceeded");
    } finally {
      process.kill(pid, "SIGCONT");
    }
  });

  it("a rollout that passes every step promotes the registry's production alias", async () => {
    const traffic = startTraffic(() => router, ep);
    try {
      const start = cli(["rollout", "start", ep, "--version", "2", "--steps", "50,100", "--interval", "1s", "--min-requests", "5", "--max-error-rate", "0.05", "--max-p99-ms", "2000", "--json"]);
      assert.equal(start.code, 0, start.stderr);
      const r = await until(async () => {
        const s = (await router.getRolloutStatus({ endpoint: ep })).rollout!;
        return s.state === RolloutState.PROMOTED ? s : undefined;
      }, 20_000, "promotion");
      assert.deepEqual(r.history.map((h) => RolloutState[h.toState]), ["PROGRESSING", "PROGRESSING", "PROMOTING", "PROMOTED"]);
      assert.equal((await registry.resolveModelRef({ modelRef: `${churn}@production` })).version, 2n);
      const e = (await router.getEndpoint({ name: ep })).endpoint!;
      assert.equal(e.status?.activeRolloutId, "");
      assert.equal(e.status?.traffic[0]?.version, 2n);
      const status = cli(["rollout", "status", ep, "--json"]);
      assert.equal(status.code, 0, status.stderr);
      assert.equal((JSON.parse(status.stdout) as { state: string }).state, "ROLLOUT_STATE_PROMOTED");
      const actions = (await router.listAuditRecords({ resourcePrefix: `endpoints/${ep}/rollouts/` })).records.map((x) => x.action).reverse();
      assert.deepEqual(actions, ["rollout.start", "rollout.step", "rollout.promote"]);
    } finally {
      await traffic.stop();
    }
    assert.equal(traffic.errors(), 0, "no request failed during the rollout");
  });

  it("a canary that cannot score is rolled back within one interval, naming the gate, on NATS", async () => {
    const bus = await JetStreamBus.connect({ servers: nats.url, name: "router-e2e", logger: createLogger({ level: "silent" }) });
    const events: RolloutRolledBack[] = [];
    const sub = await bus.subscribe({ stream: "MLMESH_ROUTER", durable: `test_rb_${stamp}`, filterSubject: `mlmesh.router.rollout_rolled_back.${ep}`, schema: RolloutRolledBackSchema, handler: async (e) => void events.push(e.message) });
    const traffic = startTraffic(() => router, ep);
    try {
      const started = (await router.startRollout({ endpoint: ep, modelRef: `${churn}@3`, spec: { steps: [0.5, 1], interval: durationFromMs(1000), minRequests: 5n, maxErrorRate: 0.1, unloadGracePeriod: durationFromMs(500) } })).rollout!;
      const t0 = Date.now();
      const r = await until(async () => {
        const s = (await router.getRolloutStatus({ endpoint: ep })).rollout!;
        return s.state === RolloutState.ROLLED_BACK ? s : undefined;
      }, 10_000, "rollback");
      assert.ok(Date.now() - t0 < 1000 + 1500, `rolled back after ${Date.now() - t0} ms (interval 1 s)`);
      assert.equal(r.id, started.id);
      assert.equal(r.currentWeight, 0);
      assert.match(r.reason, /gate error_rate failed: canary error rate 1 > 0\.1/);
      await until(() => (events.length ? true : undefined), 10_000, "the RolloutRolledBack event");
      assert.equal(events[0]!.failedGates[0]!.gate, GateKind.ERROR_RATE);
      assert.equal(events[0]!.failedGates[0]!.value, 1);
      assert.equal(events[0]!.canaryVersion, 3n);
      const after = await router.predict({ endpoint: ep, entityKey: acct(2), unitId: "anyone" });
      assert.equal(after.version, 2n, "production alone serves again");
      const inference = createServiceClient(InferenceService, procs.inference!.endpoint("inference").grpc);
      await until(async () => ((await inference.listLoadedModels({})).models.some((m) => m.modelName === churn && m.version === 3n) ? undefined : true), 10_000, "the rolled-back canary to be unloaded after its grace period");
    } finally {
      await traffic.stop();
      await sub.stop();
      await bus.close();
    }
    assert.equal(traffic.errors(), 0, "canary failures fell back to production: no caller saw an error");
  });

  it("drift alerts from inference are a gate, and a paused rollout still rolls back on it", async () => {
    const traffic = startTraffic(() => router, ep);
    const bus = await JetStreamBus.connect({ servers: nats.url, name: "router-e2e-drift", logger: createLogger({ level: "silent" }) });
    try {
      await router.startRollout({ endpoint: ep, modelRef: `${churn}@1`, spec: { steps: [0.1, 1], interval: durationFromMs(1000), minRequests: 5n, maxDriftPsi: 0.2 } });
      const paused = (await router.pauseRollout({ endpoint: ep, reason: "looking at it" })).rollout!;
      assert.equal(paused.state, RolloutState.PAUSED);
      await bus.publish(`mlmesh.inference.drift_alert.${churn}`, DriftAlertSchema, create(DriftAlertSchema, { modelName: churn, version: 1n, feature: "acct:tenure", metric: "psi", value: 0.7, threshold: 0.2, state: DriftState.ALERT }));
      const r = await until(async () => {
        const s = (await router.getRolloutStatus({ endpoint: ep })).rollout!;
        return s.state === RolloutState.ROLLED_BACK ? s : undefined;
      }, 10_000, "rollback on drift");
      assert.match(r.reason, /gate drift_psi failed: largest input drift PSI 0\.7 \(acct:tenure\) > 0\.2/);
      const last = r.history[r.history.length - 1]!;
      assert.deepEqual([last.fromState, last.toState], [RolloutState.PAUSED, RolloutState.ROLLED_BACK]);
    } finally {
      await traffic.stop();
      await bus.close();
    }
  });

  it("a linked experiment's guardrail is a gate: a significant degradation rolls the canary back", async () => {
    const ex = createServiceClient(ExperimentService, procs.experiments!.endpoint("experiments").grpc);
    const key = `rollout-guard-${stamp}`;
    await ex.createExperiment({
      experiment: {
        key,
        unitType: UnitType.USER,
        arms: [
          { name: "production", weight: 0.5, control: true },
          { name: "canary", weight: 0.5 },
        ],
        metrics: [
          { name: "churned", role: MetricRole.PRIMARY, type: MetricType.PROPORTION, direction: MetricDirection.LOWER_IS_BETTER, baselineMean: 0.2 },
          { name: "latency_ms", role: MetricRole.GUARDRAIL, type: MetricType.MEAN, direction: MetricDirection.LOWER_IS_BETTER, toleratedDegradation: 1 },
        ],
        mde: 0.05,
        expectedDailyUnits: 1000,
      },
    });
    await ex.startExperiment({ key });
    await router.startRollout({ endpoint: ep, modelRef: `${churn}@1`, spec: { steps: [0.5, 1], interval: durationFromMs(2500), minRequests: 5n, guardrailExperimentKey: key } });
    let i = 0;
    const r = await until(async () => {
      const outcomes = [];
      for (let k = 0; k < 10; k++, i++) {
        const unitId = `guard-${i}`;
        const p = await router.predict({ endpoint: ep, entityKey: acct((i % 16) + 1), unitId });
        // The application's latency outcome: the canary is 40 ms slower.
        outcomes.push({ unitId, metric: "latency_ms", value: (p.servedBy === ServedBy.CANARY ? 50 : 10) + (i % 7), time: timestampFromMs(Date.now()) });
      }
      await ex.logOutcomes({ outcomes });
      const s = (await router.getRolloutStatus({ endpoint: ep })).rollout!;
      return s.state === RolloutState.ROLLED_BACK ? s : undefined;
    }, 20_000, "rollback on the guardrail");
    assert.match(r.reason, /gate experiment_guardrail failed: guardrail latency_ms degraded/);
    const g = r.gates.find((x) => x.gate === GateKind.EXPERIMENT_GUARDRAIL)!;
    assert.equal(g.subject, "latency_ms");
    assert.ok(g.value > 30, `diff ${g.value}`);
  });

  it("a router restarted mid-rollout resumes it where it was", async () => {
    let traffic = startTraffic(() => router, ep);
    try {
      await router.startRollout({ endpoint: ep, modelRef: `${churn}@1`, spec: { steps: [0.2, 0.4, 1], interval: durationFromMs(1500), minRequests: 5n, maxErrorRate: 0.05 } });
      const mid = await until(async () => {
        const s = (await router.getRolloutStatus({ endpoint: ep })).rollout!;
        return s.currentStepIndex >= 1 ? s : undefined;
      }, 15_000, "step 2");
      await traffic.stop();
      await procs.router!.stop();
      await startRouter();
      const resumed = (await router.getRolloutStatus({ endpoint: ep })).rollout!;
      assert.equal(resumed.id, mid.id);
      assert.ok(resumed.state === RolloutState.PROGRESSING || resumed.state === RolloutState.HOLDING_INCONCLUSIVE, RolloutState[resumed.state]);
      assert.ok(resumed.currentStepIndex >= mid.currentStepIndex);
      const plan = (await router.getServingPlan({ endpoint: ep })).plan!;
      assert.equal(plan.plan.case, "canary");
      traffic = startTraffic(() => router, ep);
      const done = await until(async () => {
        const s = (await router.getRolloutStatus({ endpoint: ep })).rollout!;
        return s.state === RolloutState.PROMOTED ? s : undefined;
      }, 20_000, "promotion after the restart");
      assert.equal(done.id, mid.id);
      assert.equal((await registry.resolveModelRef({ modelRef: `${churn}@production` })).version, 1n);
    } finally {
      await traffic.stop();
    }
  });

  it("follows a registry alias move without a registry call per request (AliasMoved on NATS)", async () => {
    const before = (await router.predict({ endpoint: ep, entityKey: acct(2) })).version;
    const target = before === 1n ? 2n : 1n;
    await registry.promoteModelVersion({ modelName: churn, version: target, reason: "moved outside the router" });
    await until(async () => ((await router.predict({ endpoint: ep, entityKey: acct(2) })).version === target ? true : undefined), 10_000, "the router to follow the alias");
  });
});

/** Steady Predict traffic from many units until stopped. */
function startTraffic(client: () => Client<typeof RouterService>, endpoint: string) {
  let stop = false;
  let errors = 0;
  let n = 0;
  const loop = (async () => {
    while (!stop) {
      const batch = Array.from({ length: 8 }, () => {
        const i = n++;
        return client()
          .predict({ endpoint, entityKey: { keys: { account_id: { kind: { case: "int64Value", value: BigInt((i % 16) + 1) } } } }, unitId: `unit-${i}` })
          .catch(() => void errors++);
      });
      await Promise.all(batch);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    errors: () => errors,
    stop: async () => {
      stop = true;
      await loop;
    },
  };
}
