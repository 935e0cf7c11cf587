// The assignment library: what the router calls in-process (no network hop) and what the
// Assign RPCs run. Deterministic: the same definition, unit id and attributes give the same
// arm in any process — GrowthBook hash v2 (stats/assignment.ts, docs/assignment-spec.md).

import { scalarOf, type Scalar } from "../../lib/values.js";
import { create } from "@bufbuild/protobuf";
import {
  AssignmentReason,
  AssignmentSchema,
  ExperimentStatus,
  TargetingOperator,
  type Assignment,
  type Experiment,
  type TargetingCondition,
} from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import type { Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { createAssigner } from "./stats/assignment.js";

export type UnitAttributes = Readonly<Record<string, Value>>;

/** Assigns units of one experiment; build it once per definition revision. */
export type ExperimentAssigner = (unitId: string, attributes?: UnitAttributes) => Assignment;

function compare(a: Scalar, b: Scalar): number | undefined {
  if (typeof a !== typeof b) return undefined;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Compiled MATCHES patterns, per condition object (definitions are immutable once built). */
const PATTERNS = new WeakMap<TargetingCondition, RegExp>();

/** One targeting condition; a type mismatch fails the condition, never throws. */
export function conditionHolds(c: TargetingCondition, attributes: UnitAttributes): boolean {
  const present = Object.hasOwn(attributes, c.attribute);
  const actual = present ? scalarOf(attributes[c.attribute]) : undefined;
  const values = c.values.map((v) => scalarOf(v));
  const eq = (v: Scalar | undefined) => actual !== undefined && v !== undefined && compare(actual, v) === 0;
  switch (c.operator) {
    case TargetingOperator.EXISTS:
      return present;
    case TargetingOperator.NOT_EXISTS:
      return !present;
    case TargetingOperator.EQUALS:
      return eq(values[0]);
    case TargetingOperator.NOT_EQUALS:
      return !present || (actual !== undefined && values[0] !== undefined && compare(actual, values[0]) !== undefined && !eq(values[0]));
    case TargetingOperator.IN:
      return values.some(eq);
    case TargetingOperator.NOT_IN:
      return !present || (actual !== undefined && !values.some(eq));
    case TargetingOperator.LESS_THAN:
    case TargetingOperator.LESS_THAN_OR_EQUAL:
    case TargetingOperator.GREATER_THAN:
    case TargetingOperator.GREATER_THAN_OR_EQUAL: {
      if (actual === undefined || values[0] === undefined) return false;
      const r = compare(actual, values[0]);
      if (r === undefined) return false;
      if (c.operator === TargetingOperator.LESS_THAN) return r < 0;
      if (c.operator === TargetingOperator.LESS_THAN_OR_EQUAL) return r <= 0;
      if (c.operator === TargetingOperator.GREATER_THAN) return r > 0;
      return r >= 0;
    }
    case TargetingOperator.MATCHES: {
      const re = values[0];
      if (typeof actual !== "string" || typeof re !== "string") return false;
      let compiled = PATTERNS.get(c);
      if (!compiled) {
        compiled = new RegExp(`^(?:${re})$`);
        PATTERNS.set(c, compiled);
      }
      return compiled.test(actual);
    }
    default:
      return false;
  }
}

/** Layer seed: the layer name with a "__" prefix, so layers are independent of arm hashes. */
export const layerSeed = (layer: string): string => `__${layer}`;

/**
 * Builds the assigner of one experiment. The arm ranges follow the definition's current
 * weights and coverage; raising coverage or the last arm's weight keeps every unit in its arm.
 */
export function createExperimentAssigner(experiment: Experiment): ExperimentAssigner {
  const key = experiment.key;
  const control = experiment.arms.find((a) => a.control) ?? experiment.arms[0];
  const payloads = new Map(experiment.arms.map((a) => [a.name, a.payload]));
  const phase = Math.max(0, experiment.phases.length - 1);
  const running = experiment.status === ExperimentStatus.RUNNING;
  const assigner = createAssigner({
    seed: experiment.salt === "" ? key : experiment.salt,
    arms: experiment.arms.map((a) => ({ name: a.name, weight: a.weight })),
    coverage: experiment.coverageFraction ?? 1,
    layer: experiment.layer ? { seed: layerSeed(experiment.layer.name), range: [experiment.layer.startFraction, experiment.layer.endFraction] } : undefined,
  });
  const targeting = experiment.targeting;
  return (unitId, attributes = {}) => {
    if (typeof unitId !== "string" || unitId === "") throw new ValidationError("unit_id", "must be a non-empty string");
    const a = assigner(unitId);
    const bucket = Math.round(a.bucket * 10000);
    const answer = (reason: AssignmentReason, arm = control?.name ?? "") =>
      create(AssignmentSchema, { experimentKey: key, unitId, arm, payload: payloads.get(arm), bucket, inExperiment: reason === AssignmentReason.ASSIGNED, reason, phase });
    if (!running) return answer(AssignmentReason.NOT_RUNNING);
    if (!targeting.every((c) => conditionHolds(c, attributes))) return answer(AssignmentReason.TARGETING_MISMATCH);
    if (a.reason === "not_in_layer") return answer(AssignmentReason.OUTSIDE_LAYER);
    if (a.reason === "not_in_coverage" || a.arm === null) return answer(AssignmentReason.OUTSIDE_COVERAGE);
    return answer(AssignmentReason.ASSIGNED, a.arm);
  };
}

/** One unit, one experiment (builds the assigner each call; keep one per revision on a hot path). */
export function assignUnit(experiment: Experiment, unitId: string, attributes: UnitAttributes = {}): Assignment {
  return createExperimentAssigner(experiment)(unitId, attributes);
}
