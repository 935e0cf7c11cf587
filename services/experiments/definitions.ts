// Validation of experiment definitions and their sample-size plan. Everything here is pure:
// it reads an Experiment message and either throws a ValidationError naming the field or
// returns what the store persists.

import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import {
  EffectScale,
  MetricRole,
  MetricType,
  MetricDirection,
  SampleSizePlanSchema,
  TargetingOperator,
  UnitType,
  type Experiment,
  type Metric,
  type SampleSizePlan,
} from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { plannedDurationDays, sampleSizeForMeans, sampleSizeForProportions } from "./stats/sample-size.js";

export const KEY_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const DAY_MS = 86_400_000;

export function validateKey(field: string, key: string): string {
  if (!KEY_PATTERN.test(key)) throw new ValidationError(field, `must match ${KEY_PATTERN.source}, got ${JSON.stringify(key)}`);
  return key;
}

export const alphaOf = (e: Experiment): number => (e.alpha === 0 ? 0.05 : e.alpha);
export const powerOf = (e: Experiment): number => (e.power === 0 ? 0.8 : e.power);
export const coverageOf = (e: Experiment): number => e.coverageFraction ?? 1;
export const saltOf = (e: Experiment): string => (e.salt === "" ? e.key : e.salt);
export const controlOf = (e: Experiment): string => e.arms.find((a) => a.control)!.name;

function checkOpenUnit(field: string, v: number): void {
  if (v !== 0 && !(v > 0 && v < 1)) throw new ValidationError(field, `must be in (0, 1) (0 means the default), got ${v}`);
}

/** Arms: at least two, one control, unique names, weights in [0,1] summing to 1. */
export function validateArms(e: Experiment): void {
  if (e.arms.length < 2) throw new ValidationError("experiment.arms", `needs at least 2 arms, has ${e.arms.length}`);
  const names = new Set<string>();
  let sum = 0;
  e.arms.forEach((a, i) => {
    validateKey(`experiment.arms[${i}].name`, a.name);
    if (names.has(a.name)) throw new ValidationError(`experiment.arms[${i}].name`, `duplicate arm name ${JSON.stringify(a.name)}`);
    names.add(a.name);
    if (!(a.weight >= 0 && a.weight <= 1)) throw new ValidationError(`experiment.arms[${i}].weight`, `must be in [0, 1], got ${a.weight}`);
    sum += a.weight;
  });
  if (Math.abs(sum - 1) > 1e-9) throw new ValidationError("experiment.arms", `weights must sum to 1, they sum to ${sum}`);
  const controls = e.arms.filter((a) => a.control).length;
  if (controls !== 1) throw new ValidationError("experiment.arms", `exactly one arm must be the control, ${controls} are`);
}

export function validateCoverage(e: Experiment): void {
  const c = e.coverageFraction;
  if (c !== undefined && !(c >= 0 && c <= 1)) throw new ValidationError("experiment.coverage_fraction", `must be in [0, 1], got ${c}`);
}

function validateMetric(m: Metric, i: number): void {
  const f = `experiment.metrics[${i}]`;
  validateKey(`${f}.name`, m.name);
  if (m.role === MetricRole.UNSPECIFIED) throw new ValidationError(`${f}.role`, "is required");
  if (m.type === MetricType.UNSPECIFIED) throw new ValidationError(`${f}.type`, "is required");
  if (m.type === MetricType.RATIO && (m.numerator === "" || m.denominator === "")) {
    throw new ValidationError(`${f}`, "a RATIO metric needs numerator and denominator");
  }
  if ((m.role === MetricRole.PRIMARY || m.role === MetricRole.GUARDRAIL) && m.direction === MetricDirection.UNSPECIFIED) {
    throw new ValidationError(`${f}.direction`, `is required for a ${MetricRole[m.role]} metric`);
  }
  if (!(m.toleratedDegradation >= 0)) throw new ValidationError(`${f}.tolerated_degradation`, `must be >= 0, got ${m.toleratedDegradation}`);
  if (m.covariate !== "" && m.type === MetricType.RATIO) throw new ValidationError(`${f}.covariate`, "CUPED applies to MEAN and PROPORTION metrics only");
  for (const [k, v] of [["baseline_mean", m.baselineMean], ["baseline_sd", m.baselineSd]] as const) {
    if (!Number.isFinite(v)) throw new ValidationError(`${f}.${k}`, "must be finite");
  }
  if (m.baselineSd < 0) throw new ValidationError(`${f}.baseline_sd`, `must be >= 0, got ${m.baselineSd}`);
}

/** The whole definition (CreateExperiment, or the result of an update of a DRAFT). */
export function validateDefinition(e: Experiment): void {
  validateKey("experiment.key", e.key);
  if (e.unitType === UnitType.UNSPECIFIED) throw new ValidationError("experiment.unit_type", "is required");
  validateArms(e);
  validateCoverage(e);
  if (e.salt !== "" && e.salt.trim() === "") throw new ValidationError("experiment.salt", "must not be blank");
  if (e.layer) {
    validateKey("experiment.layer.name", e.layer.name);
    const { startFraction: s, endFraction: t } = e.layer;
    if (!(s >= 0 && s < t && t <= 1)) throw new ValidationError("experiment.layer", `needs 0 <= start_fraction < end_fraction <= 1, got [${s}, ${t})`);
  }
  e.targeting.forEach((c, i) => {
    if (c.attribute === "") throw new ValidationError(`experiment.targeting[${i}].attribute`, "is required");
    if (c.operator === TargetingOperator.UNSPECIFIED) throw new ValidationError(`experiment.targeting[${i}].operator`, "is required");
    const needsValue = c.operator !== TargetingOperator.EXISTS && c.operator !== TargetingOperator.NOT_EXISTS;
    if (needsValue && c.values.length === 0) throw new ValidationError(`experiment.targeting[${i}].values`, "needs at least one value");
    if (c.operator === TargetingOperator.MATCHES) {
      const v = c.values[0]?.kind;
      if (v?.case !== "stringValue") throw new ValidationError(`experiment.targeting[${i}].values[0]`, "must be a string regular expression");
      try {
        new RegExp(v.value);
      } catch (err) {
        throw new ValidationError(`experiment.targeting[${i}].values[0]`, `is not a regular expression: ${(err as Error).message}`);
      }
    }
  });
  if (e.metrics.length === 0) throw new ValidationError("experiment.metrics", "needs at least one PRIMARY metric");
  const names = new Set<string>();
  e.metrics.forEach((m, i) => {
    validateMetric(m, i);
    if (names.has(m.name)) throw new ValidationError(`experiment.metrics[${i}].name`, `duplicate metric name ${JSON.stringify(m.name)}`);
    names.add(m.name);
  });
  if (!e.metrics.some((m) => m.role === MetricRole.PRIMARY)) throw new ValidationError("experiment.metrics", "needs at least one PRIMARY metric");
  checkOpenUnit("experiment.alpha", e.alpha);
  checkOpenUnit("experiment.power", e.power);
  if (!(e.mde >= 0) || !Number.isFinite(e.mde)) throw new ValidationError("experiment.mde", `must be >= 0, got ${e.mde}`);
  if (!(e.expectedDailyUnits >= 0) || !Number.isFinite(e.expectedDailyUnits)) {
    throw new ValidationError("experiment.expected_daily_units", `must be >= 0, got ${e.expectedDailyUnits}`);
  }
  if (e.sequential && !(e.sequential.mixingVariance >= 0)) {
    throw new ValidationError("experiment.sequential.mixing_variance", `must be >= 0, got ${e.sequential.mixingVariance}`);
  }
}

/** The absolute MDE of a metric, or a reason why there is none. */
export function absoluteMde(e: Experiment, m: Metric): number | string {
  if (!(e.mde > 0)) return "no mde given";
  if (e.mdeScale !== EffectScale.RELATIVE) return e.mde;
  if (!(m.baselineMean !== 0)) return `metric ${m.name} has no baseline_mean for a RELATIVE mde`;
  return Math.abs(e.mde * m.baselineMean);
}

interface MetricPlan {
  readonly metric: string;
  readonly n: number;
  readonly arcsine?: number;
}

function planMetric(e: Experiment, m: Metric): MetricPlan | string {
  const mde = absoluteMde(e, m);
  if (typeof mde === "string") return mde;
  const options = { alpha: alphaOf(e), power: powerOf(e) };
  if (m.type === MetricType.PROPORTION) {
    const p = m.baselineMean;
    if (!(p > 0 && p < 1)) return `metric ${m.name} needs a baseline_mean (rate) in (0, 1)`;
    if (!(p + mde < 1)) return `metric ${m.name}: baseline rate + mde must stay below 1`;
    const s = sampleSizeForProportions(p, mde, options);
    return { metric: m.name, n: s.nPerArm, arcsine: s.nPerArmArcsine };
  }
  if (m.type === MetricType.MEAN) {
    if (!(m.baselineSd > 0)) return `metric ${m.name} needs a baseline_sd`;
    return { metric: m.name, n: sampleSizeForMeans(m.baselineSd, mde, options).nPerArm };
  }
  return `metric ${m.name} is a RATIO; plan it from a MEAN or PROPORTION metric`;
}

/** Units per arm needed (largest over primary metrics), total eligible units, duration. */
export function samplePlan(e: Experiment): SampleSizePlan {
  const reasons: string[] = [];
  let best: MetricPlan | undefined;
  for (const m of e.metrics) {
    if (m.role !== MetricRole.PRIMARY) continue;
    const p = planMetric(e, m);
    if (typeof p === "string") reasons.push(p);
    else if (!best || p.n > best.n) best = p;
  }
  if (!best) return create(SampleSizePlanSchema, { unavailableReason: reasons.join("; ") || "no primary metric" });
  const coverage = coverageOf(e);
  const weights = e.arms.map((a) => a.weight);
  const smallest = Math.min(...weights);
  const plan = create(SampleSizePlanSchema, { nPerArm: BigInt(best.n), limitingMetric: best.metric });
  if (best.arcsine !== undefined) plan.nPerArmArcsine = BigInt(best.arcsine);
  if (!(smallest > 0 && coverage > 0)) {
    plan.unavailableReason = "an arm has weight 0 or coverage is 0, so it never reaches the sample size";
    return plan;
  }
  plan.totalUnits = BigInt(Math.ceil(best.n / (smallest * coverage) - 1e-9));
  if (e.expectedDailyUnits > 0) {
    const days = plannedDurationDays(best.n, weights, e.expectedDailyUnits, coverage);
    plan.plannedDuration = create(DurationSchema, { seconds: BigInt((days * DAY_MS) / 1000) });
  }
  return plan;
}
