// ExperimentService handlers: validate, call the domain, map the result.

import type { ServiceImpl } from "@connectrpc/connect";
import { EffectScale, ExperimentStatus, UnitType, type Experiment, type ExperimentReport } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import type { ExperimentService, LogExposuresRequest, LogOutcomesRequest } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { NotFoundError, PreconditionError, ResourceExhaustedError, ValidationError } from "../../lib/errors.js";
import { rawRequests } from "../../lib/pre-encoded.js";
import { principalOf } from "../../lib/principal.js";
import { createExperimentAssigner, type ExperimentAssigner } from "./assign.js";
import { samplePlan, validateKey } from "./definitions.js";
import type { GuardrailWatch } from "./guardrails.js";
import type { ComparisonHistory } from "./history.js";
import type { Ingestor } from "./ingest.js";
import { decodeLogExposuresRequest, decodeLogOutcomesRequest } from "./ingest-wire.js";
import { buildReport } from "./report.js";
import { mdeForMeans, mdeForProportions, sampleSizeForMeans, sampleSizeForProportions } from "./stats/sample-size.js";
import type { ExperimentStore } from "./store.js";

export interface ExperimentServiceDeps {
  readonly store: ExperimentStore;
  readonly ingest: Ingestor;
  readonly guardrails: GuardrailWatch;
  readonly history: ComparisonHistory;
  readonly maxBatch: number;
  readonly clock: () => number;
}

function openUnitOrDefault(field: string, v: number, fallback: number): number {
  if (v === 0) return fallback;
  if (!(v > 0 && v < 1)) throw new ValidationError(field, `must be in (0, 1), got ${v}`);
  return v;
}

/** The report of one experiment, its always-valid p-values the running minimum over earlier looks. */
export function analyze(deps: { ingest: Ingestor; history: ComparisonHistory }, e: Experiment, now: number, resamples = 0, seed = 0): ExperimentReport {
  return buildReport(e, deps.ingest, (_k, metric, arm) => deps.ingest.unitValues(e, metric, arm), {
    bootstrapResamples: resamples,
    bootstrapSeed: seed,
    now,
    priorSequentialP: (metric, arm) => deps.history.priorSequentialP(e.key, metric, arm),
  });
}

/** What follows an analysis of a running experiment: a history snapshot and guardrail transitions. */
export function observe(deps: { history: ComparisonHistory; guardrails: GuardrailWatch }, r: ExperimentReport, now: number): void {
  if (r.status !== ExperimentStatus.RUNNING) return;
  deps.history.record(r, now);
  deps.guardrails.observe(r);
}

export function createExperimentService(deps: ExperimentServiceDeps): Partial<ServiceImpl<typeof ExperimentService>> {
  const { store, ingest, clock } = deps;
  const assigners = new Map<string, { revision: bigint; assign: ExperimentAssigner }>();
  const assignerOf = (e: Experiment): ExperimentAssigner => {
    const cached = assigners.get(e.key);
    if (cached && cached.revision === e.revision) return cached.assign;
    const assign = createExperimentAssigner(e);
    assigners.set(e.key, { revision: e.revision, assign });
    return assign;
  };
  const report = (e: Experiment, resamples = 0, seed = 0) => analyze({ ingest, history: deps.history }, e, clock(), resamples, seed);

  return {
    createExperiment(req, ctx) {
      if (!req.experiment) throw new ValidationError("experiment", "is required");
      const e = store.create(req.experiment, { principal: principalOf(ctx), reason: req.reason });
      return { experiment: e, plan: samplePlan(e) };
    },
    getExperiment(req) {
      const e = store.get(validateKey("key", req.key));
      return { experiment: e, plan: samplePlan(e) };
    },
    listExperiments(req) {
      return store.list({ pageSize: req.pageSize, pageToken: req.pageToken, status: req.status, layer: req.layer });
    },
    updateExperiment(req, ctx) {
      if (!req.experiment) throw new ValidationError("experiment", "is required");
      const e = store.update(req.experiment, req.updateMask?.paths ?? [], req.expectedRevision, { principal: principalOf(ctx), reason: req.reason });
      return { experiment: e, plan: samplePlan(e) };
    },
    startExperiment(req, ctx) {
      return { experiment: store.start(validateKey("key", req.key), req.expectedRevision, { principal: principalOf(ctx), reason: req.reason }) };
    },
    stopExperiment(req, ctx) {
      const current = store.get(validateKey("key", req.key));
      // The final report's decision travels with ExperimentStatusChanged (as if already stopped).
      const decision = current.status === ExperimentStatus.RUNNING ? report({ ...current, status: ExperimentStatus.STOPPED }).decision : 0;
      return { experiment: store.stop(req.key, req.shippedArm, decision, { principal: principalOf(ctx), reason: req.reason }) };
    },
    listAuditRecords(req) {
      if (req.experimentKey !== "") validateKey("experiment_key", req.experimentKey);
      return store.audit.list({ scope: req.experimentKey || undefined, newestFirst: true, pageSize: req.pageSize, pageToken: req.pageToken });
    },
    assign(req) {
      const e = store.get(req.experimentKey);
      if (req.unitId === "") throw new ValidationError("unit_id", "must not be empty");
      const assignment = assignerOf(e)(req.unitId, req.attributes);
      if (req.logExposure && assignment.inExperiment) {
        ingest.logExposures([{ $typeName: "mlmesh.experiments.v1.Exposure", experimentKey: e.key, unitId: req.unitId, arm: assignment.arm, time: { $typeName: "google.protobuf.Timestamp", seconds: BigInt(Math.floor(clock() / 1000)), nanos: (clock() % 1000) * 1e6 }, phase: assignment.phase, source: req.source }]);
      }
      return { assignment };
    },
    batchAssign(req) {
      if (req.units.length * Math.max(1, req.experimentKeys.length) > deps.maxBatch) {
        throw new ResourceExhaustedError(`${req.units.length} units x ${req.experimentKeys.length || "all"} experiments exceed the limit of ${deps.maxBatch} assignments per call`);
      }
      let experiments: Experiment[];
      if (req.experimentKeys.length > 0) {
        experiments = [...new Set(req.experimentKeys)].sort().map((k) => {
          const e = store.find(k);
          if (!e) throw new NotFoundError("experiment", k);
          return e;
        });
      } else {
        if (req.unitType === UnitType.UNSPECIFIED) throw new ValidationError("unit_type", "is required when experiment_keys is empty");
        experiments = store.all().filter((e) => e.status === ExperimentStatus.RUNNING && e.unitType === req.unitType);
      }
      req.units.forEach((u, i) => {
        if (u.unitId === "") throw new ValidationError(`units[${i}].unit_id`, "must not be empty");
      });
      const assignments = req.units.flatMap((u) => experiments.map((e) => assignerOf(e)(u.unitId, u.attributes)));
      if (req.logExposures) {
        const now = clock();
        const time = { $typeName: "google.protobuf.Timestamp" as const, seconds: BigInt(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 };
        ingest.logExposures(
          assignments.filter((a) => a.inExperiment).map((a) => ({ $typeName: "mlmesh.experiments.v1.Exposure" as const, experimentKey: a.experimentKey, unitId: a.unitId, arm: a.arm, time, phase: a.phase, source: req.source })),
        );
      }
      return { assignments };
    },
    logExposures: rawRequests((req: LogExposuresRequest | Uint8Array) => {
      const r = req instanceof Uint8Array ? ingest.logExposureRows(decodeLogExposuresRequest(req)) : ingest.logExposures(req.exposures);
      return { accepted: BigInt(r.accepted), duplicates: BigInt(r.duplicates), ignored: BigInt(r.ignored) };
    }),
    // On the gRPC port the request arrives as bytes, read by a hand-written decoder (the
    // ingest rate of issue #6); every other transport passes the decoded message. Same for logExposures.
    logOutcomes: rawRequests((req: LogOutcomesRequest | Uint8Array) => {
      const r = req instanceof Uint8Array ? ingest.logOutcomeColumns(decodeLogOutcomesRequest(req)) : ingest.logOutcomes(req.outcomes);
      return { accepted: BigInt(r.accepted), duplicates: BigInt(r.duplicates) };
    }),
    setCovariates(req) {
      return { accepted: BigInt(ingest.setCovariates(req.covariates).accepted) };
    },
    getReport(req) {
      const e = store.get(req.experimentKey);
      if (e.status === ExperimentStatus.DRAFT) throw new PreconditionError(`experiment ${e.key} is DRAFT: start it before asking for a report`);
      if (req.bootstrapResamples < 0) throw new ValidationError("bootstrap_resamples", `must be >= 0, got ${req.bootstrapResamples}`);
      const r = report(e, req.bootstrapResamples, Number(req.bootstrapSeed));
      observe(deps, r, clock());
      if (req.includeHistory) {
        for (const m of r.metrics) for (const c of m.comparisons) c.history = deps.history.list(e.key, m.metric, c.arm);
      }
      return { report: r };
    },
    computeSampleSize(req) {
      const alpha = openUnitOrDefault("alpha", req.alpha, 0.05);
      const power = openUnitOrDefault("power", req.power, 0.8);
      if (!(req.mde > 0) || !Number.isFinite(req.mde)) throw new ValidationError("mde", `must be > 0, got ${req.mde}`);
      const b = req.baseline;
      if (b.case === "baselineRate") {
        if (!(b.value > 0 && b.value < 1)) throw new ValidationError("baseline_rate", `must be in (0, 1), got ${b.value}`);
        const mde = req.mdeScale === EffectScale.RELATIVE ? req.mde * b.value : req.mde;
        if (!(b.value + mde < 1)) throw new ValidationError("mde", `baseline_rate + mde must stay below 1, got ${b.value + mde}`);
        const s = sampleSizeForProportions(b.value, mde, { alpha, power });
        return { nPerArm: BigInt(s.nPerArm), nPerArmArcsine: BigInt(s.nPerArmArcsine), absoluteMde: mde, effectSize: s.cohensH };
      }
      if (b.case === "sd") {
        if (!(b.value > 0)) throw new ValidationError("sd", `must be > 0, got ${b.value}`);
        let mde = req.mde;
        if (req.mdeScale === EffectScale.RELATIVE) {
          if (req.baselineMean === 0) throw new ValidationError("baseline_mean", "is required with sd and a RELATIVE mde");
          mde = Math.abs(req.mde * req.baselineMean);
        }
        const s = sampleSizeForMeans(b.value, mde, { alpha, power });
        return { nPerArm: BigInt(s.nPerArm), absoluteMde: mde, effectSize: mde / b.value };
      }
      throw new ValidationError("baseline", "set exactly one of baseline_rate or sd");
    },
    computeMde(req) {
      const alpha = openUnitOrDefault("alpha", req.alpha, 0.05);
      const power = openUnitOrDefault("power", req.power, 0.8);
      if (req.nPerArm < 2n) throw new ValidationError("n_per_arm", `must be >= 2, got ${req.nPerArm}`);
      const n = Number(req.nPerArm);
      const b = req.baseline;
      if (b.case === "baselineRate") {
        if (!(b.value > 0 && b.value < 1)) throw new ValidationError("baseline_rate", `must be in (0, 1), got ${b.value}`);
        const r = mdeForProportions(b.value, n, { alpha, power });
        return { mde: r.mde, relativeMde: r.mde / b.value, mdeArcsine: r.mdeArcsine };
      }
      if (b.case === "sd") {
        if (!(b.value > 0)) throw new ValidationError("sd", `must be > 0, got ${b.value}`);
        const mde = mdeForMeans(b.value, n, { alpha, power });
        return { mde, relativeMde: req.baselineMean !== 0 ? mde / Math.abs(req.baselineMean) : undefined };
      }
      throw new ValidationError("baseline", "set exactly one of baseline_rate or sd");
    },
  };
}
