// The analysis of one experiment from its per-arm sufficient statistics (O(arms)): per metric
// and arm the numbers, comparisons with Holm/BH across arms x metrics, CUPED, the mSPRT
// always-valid result, SRM over phases, guardrails as non-inferiority tests, and a decision.

import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  ArmExposuresSchema,
  ArmStatisticsSchema,
  ComparisonSchema,
  Decision,
  ExperimentReportSchema,
  ExperimentStatus,
  GuardrailResultSchema,
  GuardrailStatus,
  EffectScale,
  MetricDirection,
  MetricResultSchema,
  MetricRole,
  MetricType,
  SrmResultSchema,
  TestMethod,
  type Comparison as ComparisonPb,
  type Experiment,
  type ExperimentReport,
  type GuardrailResult,
  type Metric,
} from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { DomainError } from "../../lib/errors.js";
import { absoluteMde, alphaOf, controlOf, samplePlan } from "./definitions.js";
import type { Ingestor } from "./ingest.js";
import { bootstrapMeanDiff } from "./stats/bootstrap.js";
import { benjaminiHochberg, holm } from "./stats/corrections.js";
import { cupedTest } from "./stats/cuped.js";
import { decideExperiment, nonInferiorityTest, type ArmEvidence, type Direction } from "./stats/decision.js";
import type { Comparison } from "./stats/effect.js";
import { proportionsFromStats } from "./stats/proportions.js";
import { ratioEstimate, ratioTest } from "./stats/ratio.js";
import { msprtInterval, msprtPValue } from "./stats/sequential.js";
import { SRM_THRESHOLD, sampleRatioMismatch } from "./stats/srm.js";
import { emptyStats, mergeStats, type ArmStats } from "./stats/sufficient-stats.js";
import { welchFromStats } from "./stats/welch.js";

const DECISION: Record<string, Decision> = {
  SHIP: Decision.SHIP,
  DO_NOT_SHIP: Decision.DO_NOT_SHIP,
  KEEP_RUNNING: Decision.KEEP_RUNNING,
  INVALID: Decision.INVALID,
};
const GUARDRAIL: Record<string, GuardrailStatus> = { PASS: GuardrailStatus.PASSED, FAIL: GuardrailStatus.FAILED, INCONCLUSIVE: GuardrailStatus.INCONCLUSIVE };

/** Unit-level values of one metric per arm, for the bootstrap (the only O(units) part). */
export type UnitValues = (experiment: string, metric: string, arm: string) => number[];

export interface ReportOptions {
  readonly bootstrapResamples?: number;
  readonly bootstrapSeed?: number;
  readonly now?: number;
  /** The smallest always-valid p-value of earlier looks (ComparisonHistory), for the running minimum. */
  readonly priorSequentialP?: (metric: string, arm: string) => number | undefined;
}

const why = (err: unknown): string => {
  if (err instanceof DomainError) return err.message;
  throw err;
};

const direction = (m: Metric): Direction => (m.direction === MetricDirection.LOWER_IS_BETTER ? "decrease" : "increase");

/**
 * An arm's statistics of one metric. With CUPED, units without the covariate take the pooled
 * covariate mean (no adjustment for them), so the arm's (y, x) moments are the merge of both parts.
 */
function armStatsOf(ingest: Ingestor, e: Experiment, m: Metric): { stats: Map<string, ArmStats>; withCov: Map<string, number> } {
  const parts = e.arms.map((a) => ({ arm: a.name, ...ingest.armStats(e.key, m.name, a.name) }));
  const pooledCov = parts.reduce((acc, p) => mergeStats(acc, p.cov), emptyStats());
  const stats = new Map<string, ArmStats>();
  const withCov = new Map<string, number>();
  for (const p of parts) {
    const imputed: ArmStats = { ...p.plain, meanX: m.type === MetricType.RATIO ? p.plain.meanX : pooledCov.meanX, m2X: m.type === MetricType.RATIO ? p.plain.m2X : 0, cXY: m.type === MetricType.RATIO ? p.plain.cXY : 0 };
    stats.set(p.arm, mergeStats(p.cov, imputed));
    withCov.set(p.arm, p.cov.n);
  }
  return { stats, withCov };
}

function compare(m: Metric, control: ArmStats, treatment: ArmStats, alpha: number): Comparison {
  if (m.type === MetricType.PROPORTION) return proportionsFromStats(control, treatment, { alpha });
  if (m.type === MetricType.RATIO) return ratioTest(control, treatment, { alpha });
  return welchFromStats(control, treatment, { alpha });
}

const METHOD: Record<number, TestMethod> = {
  [MetricType.MEAN]: TestMethod.WELCH_T,
  [MetricType.PROPORTION]: TestMethod.TWO_PROPORTION_Z,
  [MetricType.RATIO]: TestMethod.DELTA_METHOD_Z,
};

/** τ² of the mSPRT mixture: the setting, else the squared absolute MDE (this metric's, else the primary's). */
function mixingVariance(e: Experiment, m: Metric): number | undefined {
  if (e.sequential && e.sequential.mixingVariance > 0) return e.sequential.mixingVariance;
  for (const candidate of [m, ...e.metrics.filter((x) => x.role === MetricRole.PRIMARY)]) {
    const mde = absoluteMde(e, candidate);
    if (typeof mde === "number") return mde * mde;
  }
  return undefined;
}

export function buildReport(e: Experiment, ingest: Ingestor, unitValues: UnitValues, options: ReportOptions = {}): ExperimentReport {
  const now = options.now ?? Date.now();
  const alpha = alphaOf(e);
  const controlArm = controlOf(e);
  const treatments = e.arms.filter((a) => !a.control).map((a) => a.name);
  const sequentialOn = e.sequential?.enabled ?? false;
  const plan = samplePlan(e);

  // Exposures and SRM, expected counts weighted over phases by each phase's exposures.
  const counts = ingest.exposureCounts(e);
  const observed = new Map(e.arms.map((a) => [a.name, 0]));
  const expected = new Map(e.arms.map((a) => [a.name, 0]));
  for (let phase = 0; phase < Math.max(1, e.phases.length); phase++) {
    const inPhase = counts.filter((c) => c.phase === phase);
    const total = inPhase.reduce((s, c) => s + c.units, 0);
    const weights = e.phases[phase]?.armWeights ?? Object.fromEntries(e.arms.map((a) => [a.name, a.weight]));
    const sum = Object.values(weights).reduce((s, w) => s + w, 0);
    for (const c of inPhase) {
      observed.set(c.arm, observed.get(c.arm)! + c.units);
      expected.set(c.arm, expected.get(c.arm)! + (total * (weights[c.arm] ?? 0)) / sum);
    }
  }
  const arms = [controlArm, ...treatments];
  const totalUnits = arms.reduce((s, a) => s + observed.get(a)!, 0);
  const srm = create(SrmResultSchema, { ok: true, pValue: 1, threshold: SRM_THRESHOLD, degreesOfFreedom: arms.length - 1 });
  srm.arms = arms.map((a) => ({ $typeName: "mlmesh.experiments.v1.SrmArm", arm: a, observed: BigInt(observed.get(a)!), expected: expected.get(a)! }));
  const tested = arms.filter((a) => expected.get(a)! > 0);
  if (totalUnits > 0 && tested.length >= 2) {
    const r = sampleRatioMismatch(
      tested.map((a) => observed.get(a)!),
      tested.map((a) => expected.get(a)! / totalUnits),
    );
    srm.chi2 = r.chi2;
    srm.pValue = r.pValue;
    srm.ok = !r.flagged;
    srm.degreesOfFreedom = r.dof;
  }

  // Metrics and comparisons.
  const family: Array<{ c: ComparisonPb; p: number }> = [];
  const guardrails: GuardrailResult[] = [];
  const evidence = new Map<string, ArmEvidence>(treatments.map((t) => [t, { arm: t, primary: undefined as never, guardrails: [], invariants: [] }]));
  const unavailablePrimary: string[] = [];
  const metrics = e.metrics.map((m) => {
    const { stats, withCov } = armStatsOf(ingest, e, m);
    const result = create(MetricResultSchema, { metric: m.name, role: m.role, type: m.type, direction: m.direction });
    result.arms = arms.map((a) => {
      const s = stats.get(a)!;
      const out = create(ArmStatisticsSchema, { arm: a, n: BigInt(s.n) });
      if (m.type === MetricType.RATIO) {
        out.numeratorMean = s.meanY;
        out.denominatorMean = s.meanX;
        try {
          const r = ratioEstimate(s, a);
          out.mean = r.ratio;
          out.variance = r.variance * r.n;
        } catch (err) {
          why(err);
        }
      } else {
        out.mean = s.meanY;
        out.variance = s.n >= 2 ? s.m2Y / (s.n - 1) : 0;
      }
      return out;
    });
    const control = stats.get(controlArm)!;
    result.comparisons = treatments.map((t) => {
      const c = create(ComparisonSchema, { arm: t, controlArm, method: METHOD[m.type] });
      const treatment = stats.get(t)!;
      let cmp: Comparison;
      try {
        cmp = compare(m, control, treatment, alpha);
      } catch (err) {
        c.unavailableReason = why(err);
        if (m.role === MetricRole.PRIMARY) unavailablePrimary.push(`${m.name}/${t}: ${c.unavailableReason}`);
        if (m.role === MetricRole.GUARDRAIL) guardrails.push(create(GuardrailResultSchema, { metric: m.name, arm: t, status: GuardrailStatus.INCONCLUSIVE, unavailableReason: c.unavailableReason }));
        return c;
      }
      Object.assign(c, { diff: cmp.diff, ciLow: cmp.ciLow, ciHigh: cmp.ciHigh, pValue: cmp.pValue, statistic: cmp.statistic, degreesOfFreedom: Number.isFinite(cmp.df) ? cmp.df : 0 });
      if (cmp.relative) Object.assign(c, { relativeLift: cmp.relative.lift, relativeLiftCiLow: cmp.relative.ciLow, relativeLiftCiHigh: cmp.relative.ciHigh });
      if (m.covariate !== "" && m.type !== MetricType.RATIO && (withCov.get(controlArm)! > 0 || withCov.get(t)! > 0)) {
        try {
          const cu = cupedTest(control, treatment, arms.map((a) => stats.get(a)!), { alpha });
          c.cuped = {
            $typeName: "mlmesh.experiments.v1.CupedResult",
            covariate: m.covariate,
            theta: cu.theta,
            diff: cu.diff,
            ciLow: cu.ciLow,
            ciHigh: cu.ciHigh,
            pValue: cu.pValue,
            varianceReduction: cu.varianceReduction,
            nWithCovariate: BigInt(withCov.get(controlArm)! + withCov.get(t)!),
          };
        } catch (err) {
          why(err);
        }
      }
      const tau2 = mixingVariance(e, m);
      if (tau2 !== undefined && cmp.se > 0) {
        const look = { diff: cmp.diff, variance: cmp.se * cmp.se };
        const ci = msprtInterval(look, { mixingVariance: tau2, alpha });
        const pValue = Math.min(msprtPValue(look, { mixingVariance: tau2, alpha }), options.priorSequentialP?.(m.name, t) ?? 1);
        c.sequential = { $typeName: "mlmesh.experiments.v1.SequentialResult", pValue, ciLow: ci.low, ciHigh: ci.high, mixingVariance: tau2 };
      }
      const resamples = options.bootstrapResamples ?? 0;
      if (resamples > 0 && m.type !== MetricType.RATIO) {
        try {
          const b = bootstrapMeanDiff(unitValues(e.key, m.name, controlArm), unitValues(e.key, m.name, t), { iterations: resamples, alpha, seed: options.bootstrapSeed ?? 0 });
          c.bootstrap = { $typeName: "mlmesh.experiments.v1.BootstrapResult", ciLow: b.ciLow, ciHigh: b.ciHigh, resamples: b.iterations, seed: BigInt(b.seed) };
        } catch (err) {
          why(err);
        }
      }
      const ev = evidence.get(t)!;
      if (m.role === MetricRole.PRIMARY || m.role === MetricRole.SECONDARY) family.push({ c, p: cmp.pValue });
      if (m.role === MetricRole.INVARIANT) (ev.invariants as Array<{ metric: string; pValue: number }>).push({ metric: m.name, pValue: cmp.pValue });
      if (m.role === MetricRole.GUARDRAIL) {
        const tolerated = m.toleratedDegradationScale === EffectScale.RELATIVE ? m.toleratedDegradation * Math.abs(cmp.controlMean) : m.toleratedDegradation;
        const dir = direction(m);
        const g = create(GuardrailResultSchema, { metric: m.name, arm: t, diff: cmp.diff, margin: dir === "increase" ? -tolerated : tolerated });
        try {
          const ni = nonInferiorityTest({ estimate: cmp.diff, se: cmp.se, df: cmp.df, margin: tolerated, direction: dir, alpha });
          Object.assign(g, { status: GUARDRAIL[ni.status], bound: ni.worstCaseBound, pValue: ni.pValue });
          (ev.guardrails as Array<{ metric: string; result: typeof ni }>).push({ metric: m.name, result: ni });
        } catch (err) {
          Object.assign(g, { status: GuardrailStatus.INCONCLUSIVE, unavailableReason: why(err) });
        }
        guardrails.push(g);
      }
      return c;
    });
    return result;
  });

  if (family.length > 0) {
    const h = holm(family.map((f) => f.p), alpha);
    const bh = benjaminiHochberg(family.map((f) => f.p), alpha);
    family.forEach((f, i) => {
      f.c.pValueHolm = h.adjusted[i]!;
      f.c.pValueBh = bh.adjusted[i]!;
      f.c.significant = sequentialOn && f.c.sequential ? f.c.sequential.pValue < alpha : f.c.pValueHolm < alpha;
    });
  }

  // Decision: the first primary metric decides per arm.
  const primary = e.metrics.find((m) => m.role === MetricRole.PRIMARY)!;
  const primaryResult = metrics[e.metrics.indexOf(primary)]!;
  const minArm = Math.min(...arms.map((a) => observed.get(a)!));
  const nPlan = Number(plan.nPerArm);
  const stopped = e.status === ExperimentStatus.STOPPED;
  const report = create(ExperimentReportSchema, {
    experimentKey: e.key,
    status: e.status,
    revision: e.revision,
    computeTime: timestampFromMs(now),
    alpha,
    arms: arms.map((a) => create(ArmExposuresSchema, { arm: a, control: a === controlArm, units: BigInt(observed.get(a)!) })),
    srm,
    metrics,
    guardrails,
    plan,
    sampleProgressFraction: nPlan > 0 ? minArm / nPlan : 0,
  });
  if (e.startTime) {
    const end = e.stopTime ? timestampMs(e.stopTime) : now;
    const ms = Math.max(0, end - timestampMs(e.startTime));
    report.elapsed = create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });
  }
  if (!srm.ok) {
    const d = decideExperiment({ srm: { flagged: true, pValue: srm.pValue }, arms: treatments.map((t) => ({ arm: t, primary: { metric: primary.name, estimate: 0, pValue: 1, direction: direction(primary) } })), alpha, sampleComplete: false });
    report.decision = Decision.INVALID;
    report.decisionReason = d.reason;
    return report;
  }
  if (totalUnits === 0 || unavailablePrimary.length > 0) {
    report.decision = Decision.KEEP_RUNNING;
    report.decisionReason = totalUnits === 0 ? "no exposures yet" : `not enough data for the primary metric: ${unavailablePrimary.join("; ")}`;
    return report;
  }
  for (const c of primaryResult.comparisons) {
    const p = sequentialOn && c.sequential ? c.sequential.pValue : c.pValueHolm;
    (evidence.get(c.arm) as { primary: ArmEvidence["primary"] }).primary = { metric: primary.name, estimate: c.diff, pValue: p, direction: direction(primary) };
  }
  const d = decideExperiment({
    srm: { flagged: false, pValue: srm.pValue },
    arms: treatments.map((t) => evidence.get(t)!),
    alpha,
    sampleComplete: stopped || (nPlan > 0 && minArm >= nPlan),
  });
  report.decision = DECISION[d.decision]!;
  report.decisionReason = d.reason;
  report.recommendedArm = d.arm ?? "";
  return report;
}
