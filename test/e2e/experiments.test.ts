// The experiment service through its public surface: the real `mlmesh serve experiments`
// process, a real NATS, gRPC clients. Definitions and lifecycle (plan, CAS, audit, events),
// assignment equal to the stats module's hash (sticky across a ramp, exclusive layers),
// ingest by RPC and by JetStream, and a report whose numbers equal the tested stats modules
// run on the same unit-level data — before and after a restart.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import {
  ExperimentStatusChangedSchema,
  ExposureLoggedSchema,
  GuardrailBreachedSchema,
  type GuardrailBreached,
  OutcomeLoggedSchema,
  type ExperimentStatusChanged,
} from "../../gen/mlmesh/events/v1/experiments_events_pb.js";
import {
  AssignmentReason,
  Decision,
  EffectScale,
  ExperimentStatus,
  MetricDirection,
  MetricRole,
  MetricType,
  TargetingOperator,
  UnitType,
  ExperimentSchema,
  GuardrailStatus,
  type ExperimentReport,
} from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { ValueSchema } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { JetStreamBus } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import { createExperimentAssigner } from "../../services/experiments/assign.js";
import { benjaminiHochberg, holm } from "../../services/experiments/stats/corrections.js";
import { cupedTest } from "../../services/experiments/stats/cuped.js";
import { proportionsFromStats } from "../../services/experiments/stats/proportions.js";
import { ratioTest } from "../../services/experiments/stats/ratio.js";
import { plannedDurationDays, sampleSizeForMeans, sampleSizeForProportions, mdeForProportions } from "../../services/experiments/stats/sample-size.js";
import { msprtPValue } from "../../services/experiments/stats/sequential.js";
import { sampleRatioMismatch } from "../../services/experiments/stats/srm.js";
import { statsFromValues } from "../../services/experiments/stats/sufficient-stats.js";
import { welchFromStats } from "../../services/experiments/stats/welch.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const RUN = Math.random().toString(36).slice(2, 8);
const T0 = Date.UTC(2026, 0, 1);

function rejectsWith(code: Code, pattern: RegExp) {
  return (e: unknown) => {
    const ce = ConnectError.from(e);
    assert.equal(Code[ce.code], Code[code], ce.rawMessage);
    assert.match(ce.rawMessage, pattern);
    return true;
  };
}

function close(actual: number, expected: number, what: string, tol = 1e-9) {
  assert.ok(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: ${actual} != ${expected}`);
}

/** Deterministic pseudo-random numbers (mulberry32) for the unit-level data. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const definition = (key: string, extra: Record<string, unknown> = {}): MessageInitShape<typeof ExperimentSchema> => ({
  key,
  description: "checkout v2",
  unitType: UnitType.USER,
  arms: [
    { name: "control", weight: 0.5, control: true },
    { name: "treatment", weight: 0.5 },
  ],
  metrics: [
    { name: "revenue", role: MetricRole.PRIMARY, type: MetricType.MEAN, direction: MetricDirection.HIGHER_IS_BETTER, covariate: "pre_revenue", baselineSd: 10 },
    { name: "converted", role: MetricRole.SECONDARY, type: MetricType.PROPORTION, outcome: "purchase", direction: MetricDirection.HIGHER_IS_BETTER, baselineMean: 0.3 },
    { name: "latency", role: MetricRole.GUARDRAIL, type: MetricType.MEAN, direction: MetricDirection.LOWER_IS_BETTER, toleratedDegradation: 5 },
    { name: "ctr", role: MetricRole.SECONDARY, type: MetricType.RATIO, numerator: "click", denominator: "impression" },
  ],
  mde: 1,
  expectedDailyUnits: 1000,
  ...extra,
}) as MessageInitShape<typeof ExperimentSchema>;

describe("experiment service", () => {
  let nats: TestNats;
  let env: Record<string, string>;
  let proc: MlmeshProcess;
  let ex: Client<typeof ExperimentService>;
  const key = `checkout-${RUN}`;

  before(async () => {
    nats = await testNats();
    env = await isolatedEnv({ MLMESH_NATS_URL: nats.url });
    proc = await startMlmesh(["serve", "experiments"], env);
    ex = createServiceClient(ExperimentService, proc.endpoint("experiments").grpc);
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
  });

  it("creates, validates, updates with compare-and-set, starts, ramps and audits definitions", async () => {
    const created = await ex.createExperiment({ experiment: definition(key), reason: "hypothesis A" });
    const e = created.experiment!;
    assert.equal(e.status, ExperimentStatus.DRAFT);
    assert.equal(e.revision, 1n);
    const n = sampleSizeForMeans(10, 1).nPerArm;
    assert.equal(created.plan!.nPerArm, BigInt(n));
    assert.equal(created.plan!.limitingMetric, "revenue");
    assert.equal(created.plan!.totalUnits, BigInt(2 * n));
    assert.equal(created.plan!.plannedDuration!.seconds, BigInt(plannedDurationDays(n, [0.5, 0.5], 1000) * 86400));

    const bad = (extra: Record<string, unknown>) => ex.createExperiment({ experiment: definition(`bad-${RUN}`, extra) });
    await assert.rejects(bad({ arms: [{ name: "a", weight: 0.5, control: true }, { name: "b", weight: 0.4 }] } as never), rejectsWith(Code.InvalidArgument, /weights must sum to 1/));
    await assert.rejects(bad({ arms: [{ name: "a", weight: 0.5, control: true }, { name: "b", weight: 0.5, control: true }] } as never), rejectsWith(Code.InvalidArgument, /exactly one arm must be the control/));
    await assert.rejects(bad({ metrics: [{ name: "m", role: MetricRole.SECONDARY, type: MetricType.MEAN }] } as never), rejectsWith(Code.InvalidArgument, /PRIMARY/));
    await assert.rejects(bad({ metrics: [{ name: "r", role: MetricRole.PRIMARY, type: MetricType.RATIO, direction: 1 }] } as never), rejectsWith(Code.InvalidArgument, /^experiment\.metrics\[0\]: a RATIO metric needs numerator and denominator/));
    await assert.rejects(bad({ alpha: 1.5 }), rejectsWith(Code.InvalidArgument, /^experiment\.alpha/));
    await assert.rejects(ex.createExperiment({ experiment: definition(key) }), rejectsWith(Code.AlreadyExists, /already exists/));
    await assert.rejects(ex.getExperiment({ key: `nope-${RUN}` }), rejectsWith(Code.NotFound, /not found/));

    const upd = await ex.updateExperiment({ experiment: { key, description: "checkout v2.1" }, updateMask: { paths: ["description"] }, expectedRevision: 1n });
    assert.equal(upd.experiment!.revision, 2n);
    await assert.rejects(
      ex.updateExperiment({ experiment: { key, description: "x" }, updateMask: { paths: ["description"] }, expectedRevision: 1n }),
      rejectsWith(Code.Aborted, /revision 2, not 1/),
    );
    await assert.rejects(ex.updateExperiment({ experiment: { key }, updateMask: { paths: [] } }), rejectsWith(Code.InvalidArgument, /update_mask/));

    const started = await ex.startExperiment({ key, expectedRevision: 2n, reason: "go" });
    assert.equal(started.experiment!.status, ExperimentStatus.RUNNING);
    assert.equal(started.experiment!.phases.length, 1);
    await assert.rejects(ex.startExperiment({ key }), rejectsWith(Code.FailedPrecondition, /only a DRAFT can start/));
    await assert.rejects(
      ex.updateExperiment({ experiment: { key, salt: "other" }, updateMask: { paths: ["salt"] } }),
      rejectsWith(Code.FailedPrecondition, /salt cannot change while the experiment is RUNNING/),
    );

    const list = await ex.listExperiments({ status: ExperimentStatus.RUNNING });
    assert.ok(list.experiments.some((x) => x.key === key));
    const audit = await ex.listAuditRecords({ experimentKey: key });
    assert.deepEqual(audit.records.map((r) => [r.action, r.reason]), [
      ["experiment.start", "go"],
      ["experiment.update", ""],
      ["experiment.create", "hypothesis A"],
    ]);
  });

  it("assigns exactly like the in-process library, sticky across a ramp, exclusive within a layer", async () => {
    const rampKey = `ramp-${RUN}`;
    await ex.createExperiment({
      experiment: definition(rampKey, {
        arms: [{ name: "control", weight: 0.95, control: true }, { name: "treatment", weight: 0.05 }],
        targeting: [{ attribute: "country", operator: TargetingOperator.IN, values: [{ kind: { case: "stringValue", value: "fr" } }, { kind: { case: "stringValue", value: "de" } }] }],
      } as never),
    });
    const draft = await ex.assign({ experimentKey: rampKey, unitId: "u1" });
    assert.equal(draft.assignment!.reason, AssignmentReason.NOT_RUNNING);
    const running = (await ex.startExperiment({ key: rampKey })).experiment!;
    const units = Array.from({ length: 400 }, (_, i) => ({ unitId: `user-${i}`, attributes: { country: { kind: { case: "stringValue" as const, value: "fr" } } } }));
    const local = createExperimentAssigner(running);
    const batch = await ex.batchAssign({ units, experimentKeys: [rampKey] });
    assert.deepEqual(
      batch.assignments.map((a) => [a.arm, a.bucket, a.inExperiment]),
      units.map((u) => local(u.unitId, { country: create(ValueSchema, u.attributes.country) })).map((a) => [a.arm, a.bucket, a.inExperiment]),
    );
    const mismatch = await ex.assign({ experimentKey: rampKey, unitId: "user-1", attributes: { country: { kind: { case: "stringValue", value: "us" } } } });
    assert.equal(mismatch.assignment!.reason, AssignmentReason.TARGETING_MISMATCH);
    assert.equal(mismatch.assignment!.arm, "control");

    const before5 = batch.assignments.filter((a) => a.arm === "treatment").map((a) => a.unitId);
    assert.ok(before5.length > 0);
    const ramped = await ex.updateExperiment({
      experiment: { key: rampKey, arms: [{ name: "control", weight: 0.9, control: true }, { name: "treatment", weight: 0.1 }] },
      updateMask: { paths: ["arms"] },
      reason: "ramp to 10%",
    });
    assert.equal(ramped.experiment!.phases.length, 2);
    await proc.stop();
    proc = await startMlmesh(["serve", "experiments"], env);
    ex = createServiceClient(ExperimentService, proc.endpoint("experiments").grpc);
    const after = await ex.batchAssign({ units, experimentKeys: [rampKey] });
    const after10 = new Set(after.assignments.filter((a) => a.arm === "treatment").map((a) => a.unitId));
    for (const u of before5) assert.ok(after10.has(u), `${u} stays in treatment after the ramp and a restart`);
    assert.ok(after10.size > before5.length);
    assert.ok(after.assignments.every((a) => a.phase === 1));
    const fr = { country: { kind: { case: "stringValue" as const, value: "fr" } } };
    const logged = await ex.batchAssign({ units: units.slice(0, 50), experimentKeys: [rampKey], logExposures: true, source: "test" });
    await ex.assign({ experimentKey: rampKey, unitId: "user-1", attributes: fr, logExposure: true });
    const exposed = (await ex.getReport({ experimentKey: rampKey })).report!;
    assert.deepEqual(
      exposed.arms.map((a) => [a.arm, a.units]),
      ["control", "treatment"].map((arm) => [arm, BigInt(logged.assignments.filter((a) => a.arm === arm && a.inExperiment).length)]),
      "Assign and BatchAssign log exposures once per unit, in phase 1",
    );

    const layer = (k: string, s: number, t: number) => definition(k, { layer: { name: `lay-${RUN}`, startFraction: s, endFraction: t } } as never);
    await ex.createExperiment({ experiment: layer(`la-${RUN}`, 0, 0.5) });
    await ex.createExperiment({ experiment: layer(`lb-${RUN}`, 0.5, 1) });
    await ex.createExperiment({ experiment: layer(`lc-${RUN}`, 0.4, 0.6) });
    await ex.startExperiment({ key: `la-${RUN}` });
    await ex.startExperiment({ key: `lb-${RUN}` });
    await assert.rejects(ex.startExperiment({ key: `lc-${RUN}` }), rejectsWith(Code.FailedPrecondition, new RegExp(`overlaps running experiment la-${RUN}`)));
    const both = await ex.batchAssign({ units: units.slice(0, 200), experimentKeys: [`lb-${RUN}`, `la-${RUN}`] });
    for (let i = 0; i < 200; i++) {
      const [a, b] = [both.assignments[2 * i]!, both.assignments[2 * i + 1]!];
      assert.equal(a.experimentKey, `la-${RUN}`, "key order");
      assert.equal(Number(a.inExperiment) + Number(b.inExperiment), 1, `unit ${i} is in exactly one experiment of the layer`);
    }
  });

  it("ingests exposures, outcomes and covariates into a report equal to the stats modules, across a restart", async () => {
    const rand = rng(42);
    const units = Array.from({ length: 240 }, (_, i) => `cu-${i}`);
    const arm = new Map<string, string>();
    const exp = (await ex.getExperiment({ key })).experiment!;
    const local = createExperimentAssigner(exp);
    for (const u of units) arm.set(u, local(u).arm);
    const data = new Map(units.map((u) => {
      const t = arm.get(u) === "treatment";
      const pre = 20 + 10 * rand();
      return [u, { pre: rand() < 0.9 ? pre : undefined, revenue: pre * 0.8 + (t ? 3 : 0) + 8 * rand(), bought: rand() < (t ? 0.4 : 0.3), latency: 100 + 20 * rand(), clicks: Math.floor(5 * rand()), impressions: 5 + Math.floor(5 * rand()) }];
    }));
    const outcomes = units.flatMap((u) => {
      const d = data.get(u)!;
      const time = timestampFromMs(T0 + 1000);
      const o = [
        { unitId: u, metric: "revenue", value: d.revenue / 2, time, outcomeId: `${RUN}-${u}-r1` },
        { unitId: u, metric: "revenue", value: d.revenue / 2, time, outcomeId: `${RUN}-${u}-r2` },
        { unitId: u, metric: "latency", value: d.latency, time },
        { unitId: u, metric: "click", value: d.clicks, time },
        { unitId: u, metric: "impression", value: d.impressions, time },
      ];
      if (d.bought) o.push({ unitId: u, metric: "purchase", value: 1, time, outcomeId: `${RUN}-${u}-p` });
      return o;
    });
    // An outcome from before the exposure is not caused by the arm and must not count.
    outcomes.push({ unitId: units[0]!, metric: "revenue", value: 1000, time: timestampFromMs(T0 - 1), outcomeId: "" });
    const half = Math.floor(outcomes.length / 2);
    const covs = units.filter((u) => data.get(u)!.pre !== undefined).map((u) => ({ unitId: u, name: "pre_revenue", value: data.get(u)!.pre! }));

    // Half the outcomes and covariates arrive before the exposures, half after.
    assert.equal((await ex.logOutcomes({ outcomes: outcomes.slice(0, half) })).accepted, BigInt(half));
    await ex.setCovariates({ covariates: covs.slice(0, 100) });
    const exposures = units.map((u) => ({ experimentKey: key, unitId: u, arm: arm.get(u)!, time: timestampFromMs(T0), source: "test" }));
    const first = await ex.logExposures({ exposures });
    assert.equal(first.accepted, BigInt(units.length));
    const again = await ex.logExposures({ exposures: exposures.slice(0, 10) });
    assert.deepEqual([again.accepted, again.duplicates, again.ignored], [0n, 10n, 0n]);
    const switched = await ex.logExposures({ exposures: [{ ...exposures[0]!, arm: arm.get(units[0]!) === "control" ? "treatment" : "control" }] });
    assert.equal(switched.ignored, 1n);
    await ex.logOutcomes({ outcomes: outcomes.slice(half) });
    const dup = await ex.logOutcomes({ outcomes: outcomes.slice(0, 3) });
    assert.deepEqual([dup.accepted, dup.duplicates], [1n, 2n], "outcome ids seen before are dropped; the latency outcome has no id, so it counts again");
    await ex.setCovariates({ covariates: covs.slice(100) });

    // Bad input: all or nothing, the offending index named.
    await assert.rejects(ex.logExposures({ exposures: [exposures[0]!, { ...exposures[1]!, arm: "nope" }] }), rejectsWith(Code.InvalidArgument, /^exposures\[1\]\.arm/));
    await assert.rejects(ex.logExposures({ exposures: [{ ...exposures[1]!, experimentKey: `nope-${RUN}` }] }), rejectsWith(Code.NotFound, /nope/));
    await assert.rejects(ex.logExposures({ exposures: [{ ...exposures[1]!, time: undefined }] }), rejectsWith(Code.InvalidArgument, /^exposures\[0\]\.time: is required/));
    await assert.rejects(ex.logOutcomes({ outcomes: [{ unitId: "x", metric: "revenue", value: Number.NaN }] }), rejectsWith(Code.InvalidArgument, /^outcomes\[0\]\.value: must be finite/));
    await assert.rejects(ex.setCovariates({ covariates: [{ unitId: "x", name: "pre", value: Infinity }] }), rejectsWith(Code.InvalidArgument, /^covariates\[0\]\.value/));
    // Malformed bytes on the gRPC port, where LogOutcomes is read by a hand-written decoder:
    // INVALID_ARGUMENT naming the outcome and field (outcomes[0].unit_id claims 9 bytes, has 1).
    const rawClient = new grpc.Client(proc.endpoint("experiments").grpc.replace(/^https?:\/\//, ""), grpc.credentials.createInsecure());
    try {
      const bad = Buffer.from([0x0a, 0x03, 0x0a, 0x09, 0x61]);
      const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
        rawClient.makeUnaryRequest(`/${ExperimentService.typeName}/LogOutcomes`, (b: Buffer) => b, (b: Buffer) => b, bad, (e) => (e ? resolve(e) : reject(new Error("malformed request accepted")))),
      );
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^request: is not a valid mlmesh\.experiments\.v1\.LogOutcomesRequest message \(length 9 past the end of the message at outcomes\[0\]\.unit_id\)/);
    } finally {
      rawClient.close();
    }

    // The same numbers from the tested stats modules on the unit-level data.
    const arms = ["control", "treatment"];
    const byArm = (f: (u: string) => number) => Object.fromEntries(arms.map((a) => [a, units.filter((u) => arm.get(u) === a).map(f)]));
    const latencyOf = (u: string) => data.get(u)!.latency * (u === units[0] ? 2 : 1);
    const withPre = units.filter((u) => data.get(u)!.pre !== undefined);
    const preMean = withPre.reduce((s, u) => s + data.get(u)!.pre!, 0) / withPre.length;
    const revenue = byArm((u) => data.get(u)!.revenue);
    const pre = byArm((u) => data.get(u)!.pre ?? preMean);
    const stats = (ys: Record<string, number[]>, xs?: Record<string, number[]>) => arms.map((a) => statsFromValues(ys[a]!, xs?.[a]));
    const [rc, rt] = stats(revenue, pre) as [ReturnType<typeof statsFromValues>, ReturnType<typeof statsFromValues>];
    const expected = {
      revenue: welchFromStats(rc, rt),
      cuped: cupedTest(rc, rt, [rc, rt]),
      converted: proportionsFromStats(...(stats(byArm((u) => (data.get(u)!.bought ? 1 : 0))) as [never, never])),
      latency: welchFromStats(...(stats(byArm(latencyOf)) as [never, never])),
      ctr: ratioTest(...(stats(byArm((u) => data.get(u)!.clicks), byArm((u) => data.get(u)!.impressions)) as [never, never])),
    };
    const family = [expected.revenue.pValue, expected.converted.pValue, expected.ctr.pValue];
    const srm = sampleRatioMismatch(arms.map((a) => revenue[a]!.length), [0.5, 0.5]);

    const check = (r: ExperimentReport) => {
      assert.deepEqual(r.arms.map((a) => [a.arm, Number(a.units)]), arms.map((a) => [a, revenue[a]!.length]));
      close(r.srm!.chi2, srm.chi2, "srm chi2");
      close(r.srm!.pValue, srm.pValue, "srm p");
      const metric = (name: string) => r.metrics.find((m) => m.metric === name)!;
      const rev = metric("revenue");
      close(rev.arms[1]!.mean, rt.meanY, "revenue treatment mean");
      close(rev.arms[1]!.variance, rt.m2Y / (rt.n - 1), "revenue treatment variance");
      for (const [name, want] of Object.entries({ revenue: expected.revenue, converted: expected.converted, latency: expected.latency, ctr: expected.ctr })) {
        const c = metric(name).comparisons[0]!;
        assert.equal(c.unavailableReason, "", name);
        close(c.diff, want.diff, `${name} diff`);
        close(c.pValue, want.pValue, `${name} p`);
        close(c.ciLow, want.ciLow, `${name} ci_low`);
        close(c.ciHigh, want.ciHigh, `${name} ci_high`);
        close(c.relativeLift, want.relative!.lift, `${name} lift`);
      }
      const h = holm(family).adjusted;
      const bh = benjaminiHochberg(family).adjusted;
      ["revenue", "converted", "ctr"].forEach((name, i) => {
        close(metric(name).comparisons[0]!.pValueHolm, h[i]!, `${name} holm`);
        close(metric(name).comparisons[0]!.pValueBh, bh[i]!, `${name} bh`);
      });
      const cu = rev.comparisons[0]!.cuped!;
      close(cu.diff, expected.cuped.diff, "cuped diff");
      close(cu.pValue, expected.cuped.pValue, "cuped p");
      close(cu.theta, expected.cuped.theta, "cuped theta");
      close(cu.varianceReduction, expected.cuped.varianceReduction, "cuped variance reduction");
      assert.equal(cu.nWithCovariate, BigInt(withPre.length));
      const look = { diff: expected.revenue.diff, variance: expected.revenue.se ** 2 };
      close(rev.comparisons[0]!.sequential!.pValue, msprtPValue(look, { mixingVariance: 1 }), "msprt p");
      assert.equal(r.guardrails.length, 1);
      assert.equal(r.guardrails[0]!.metric, "latency");
      assert.equal(r.guardrails[0]!.margin, 5);
      assert.ok(r.decision !== Decision.UNSPECIFIED && r.decisionReason !== "");
    };
    const report = (await ex.getReport({ experimentKey: key, bootstrapResamples: 200, bootstrapSeed: 7n })).report!;
    check(report);
    const boot = report.metrics[0]!.comparisons[0]!.bootstrap!;
    assert.equal(boot.resamples, 200);
    assert.ok(boot.ciLow < boot.ciHigh);

    await proc.stop();
    proc = await startMlmesh(["serve", "experiments"], env);
    ex = createServiceClient(ExperimentService, proc.endpoint("experiments").grpc);
    const again2 = (await ex.getReport({ experimentKey: key, bootstrapResamples: 200, bootstrapSeed: 7n })).report!;
    check(again2);
    assert.deepEqual(again2.metrics[0]!.comparisons[0]!.bootstrap, boot, "same seed and data, same bootstrap CI");
    const withHistory = (await ex.getReport({ experimentKey: key, includeHistory: true })).report!;
    const revenueNow = withHistory.metrics[0]!.comparisons[0]!;
    assert.equal(revenueNow.history.length, 1, "one snapshot per minute at most, kept across the restart");
    assert.equal(revenueNow.history[0]!.n, BigInt(units.length));
    close(revenueNow.history[0]!.diff, expected.revenue.diff, "history diff");
    close(revenueNow.history[0]!.sequentialPValue, revenueNow.sequential!.pValue, "history sequential p");
  });

  it("consumes ExposureLogged and OutcomeLogged from JetStream and reports status changes", async () => {
    const bus = await JetStreamBus.connect({ servers: nats.url, name: "experiments-events-test", logger: createLogger({ level: "silent" }) });
    try {
      const before = (await ex.getReport({ experimentKey: key })).report!;
      const exp = (await ex.getExperiment({ key })).experiment!;
      const local = createExperimentAssigner(exp);
      const units = ["nu-1", "nu-2", "nu-3", "nu-4"];
      await bus.publish(
        "mlmesh.experiments.exposure_logged",
        ExposureLoggedSchema,
        create(ExposureLoggedSchema, { exposures: units.map((u) => ({ experimentKey: key, unitId: u, arm: local(u).arm, time: timestampFromMs(T0) })) }),
      );
      await bus.publish(
        "mlmesh.experiments.outcome_logged",
        OutcomeLoggedSchema,
        create(OutcomeLoggedSchema, { outcomes: units.map((u) => ({ unitId: u, metric: "revenue", value: 1, time: timestampFromMs(T0 + 5), outcomeId: `${RUN}-${u}-nats` })) }),
      );
      const total = (r: ExperimentReport) => r.arms.reduce((s, a) => s + Number(a.units), 0);
      const deadline = Date.now() + 10_000;
      let now = before;
      while (Date.now() < deadline && total(now) < total(before) + 4) {
        await new Promise((r) => setTimeout(r, 100));
        now = (await ex.getReport({ experimentKey: key })).report!;
      }
      assert.equal(total(now), total(before) + 4, "the exposures arrived through JetStream");

      const events: ExperimentStatusChanged[] = [];
      const sub = await bus.subscribe({
        stream: "MLMESH_EXPERIMENTS",
        durable: `test_experiments_${RUN}`,
        filterSubject: `mlmesh.experiments.experiment_status_changed.${key}`,
        schema: ExperimentStatusChangedSchema,
        handler: async (e) => void events.push(e.message),
      });
      await assert.rejects(ex.stopExperiment({ key, reason: "done", shippedArm: "nope" }), rejectsWith(Code.InvalidArgument, /^shipped_arm/));
      const stopped = await ex.stopExperiment({ key, reason: "done", shippedArm: "treatment" });
      assert.equal(stopped.experiment!.status, ExperimentStatus.STOPPED);
      const ignored = await ex.logExposures({ exposures: [{ experimentKey: key, unitId: "late", arm: "control", time: timestampFromMs(T0) }] });
      assert.equal(ignored.ignored, 1n);
      const end = Date.now() + 10_000;
      while (Date.now() < end && !events.some((e) => e.status === ExperimentStatus.STOPPED)) await new Promise((r) => setTimeout(r, 50));
      await sub.stop();
      assert.deepEqual(events.map((e) => [e.previousStatus, e.status]), [
        [ExperimentStatus.DRAFT, ExperimentStatus.RUNNING],
        [ExperimentStatus.RUNNING, ExperimentStatus.STOPPED],
      ]);
      assert.equal(events[1]!.shippedArm, "treatment");
      assert.notEqual(events[1]!.decision, Decision.UNSPECIFIED);
    } finally {
      await bus.close();
    }
  });

  it("publishes GuardrailBreached once when a guardrail turns FAILED", async () => {
    const gkey = `guard-${RUN}`;
    await ex.createExperiment({ experiment: definition(gkey, { metrics: [
      { name: "revenue", role: MetricRole.PRIMARY, type: MetricType.MEAN, direction: MetricDirection.HIGHER_IS_BETTER },
      { name: "latency", role: MetricRole.GUARDRAIL, type: MetricType.MEAN, direction: MetricDirection.LOWER_IS_BETTER, toleratedDegradation: 1 },
    ] }) });
    const e = (await ex.startExperiment({ key: gkey })).experiment!;
    const local = createExperimentAssigner(e);
    const rand = rng(7);
    const units = Array.from({ length: 60 }, (_, i) => `g-${i}`);
    await ex.logExposures({ exposures: units.map((u) => ({ experimentKey: gkey, unitId: u, arm: local(u).arm, time: timestampFromMs(T0) })) });
    await ex.logOutcomes({
      outcomes: units.flatMap((u) => [
        { unitId: u, metric: "latency", value: 100 + (local(u).arm === "treatment" ? 50 : 0) + 5 * rand(), time: timestampFromMs(T0 + 1), experimentKey: gkey },
        { unitId: u, metric: "revenue", value: 10 * rand(), time: timestampFromMs(T0 + 1), experimentKey: gkey },
      ]),
    });
    const bus = await JetStreamBus.connect({ servers: nats.url, name: "experiments-guardrail-test", logger: createLogger({ level: "silent" }) });
    const events: GuardrailBreached[] = [];
    const sub = await bus.subscribe({
      stream: "MLMESH_EXPERIMENTS",
      durable: `test_guardrail_${RUN}`,
      filterSubject: `mlmesh.experiments.guardrail_breached.${gkey}`,
      schema: GuardrailBreachedSchema,
      handler: async (ev) => void events.push(ev.message),
    });
    try {
      const r = (await ex.getReport({ experimentKey: gkey })).report!;
      assert.equal(r.guardrails[0]!.status, GuardrailStatus.FAILED);
      assert.equal(r.decision, Decision.DO_NOT_SHIP);
      await ex.getReport({ experimentKey: gkey });
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && events.length === 0) await new Promise((res) => setTimeout(res, 50));
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(events.length, 1, "one event per transition into FAILED, not one per analysis");
      assert.equal(events[0]!.guardrail!.metric, "latency");
      assert.equal(events[0]!.guardrail!.arm, "treatment");
      assert.equal(events[0]!.armUnits + events[0]!.controlUnits, BigInt(units.length));
    } finally {
      await sub.stop();
      await bus.close();
    }
  });

  it("computes sample sizes and MDEs like the stats module", async () => {
    const p = await ex.computeSampleSize({ baseline: { case: "baselineRate", value: 0.1 }, mde: 0.02 });
    const want = sampleSizeForProportions(0.1, 0.02);
    assert.equal(p.nPerArm, BigInt(want.nPerArm));
    assert.equal(p.nPerArmArcsine, BigInt(want.nPerArmArcsine));
    const rel = await ex.computeSampleSize({ baseline: { case: "sd", value: 5 }, mde: 0.1, mdeScale: EffectScale.RELATIVE, baselineMean: 20, alpha: 0.01, power: 0.9 });
    assert.equal(rel.nPerArm, BigInt(sampleSizeForMeans(5, 2, { alpha: 0.01, power: 0.9 }).nPerArm));
    const mde = await ex.computeMde({ baseline: { case: "baselineRate", value: 0.1 }, nPerArm: 5000n });
    close(mde.mde, mdeForProportions(0.1, 5000).mde, "mde");
    await assert.rejects(ex.computeSampleSize({ baseline: { case: "baselineRate", value: 1.2 }, mde: 0.1 }), rejectsWith(Code.InvalidArgument, /^baseline_rate/));
    await assert.rejects(ex.computeSampleSize({ mde: 0.1 }), rejectsWith(Code.InvalidArgument, /^baseline/));
    await assert.rejects(ex.computeMde({ baseline: { case: "sd", value: 1 }, nPerArm: 1n }), rejectsWith(Code.InvalidArgument, /^n_per_arm/));
    await assert.rejects(ex.getReport({ experimentKey: `la-${RUN}x` }), rejectsWith(Code.NotFound, /not found/));
  });
});
