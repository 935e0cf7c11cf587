// Which model version answers one request, from the live serving plan: single, canary
// (sticky by the experiments library's GrowthBook-v2 hash of salt + unit), shadow (the
// production answer plus refs to mirror), blue-green (the active colour) and experiment
// arms (assigned in-process). Pure: no I/O, no clock.

import { BlueGreenColor, ServedBy, type ServingPlan } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import type { Assignment } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { bucketV2 } from "../experiments/stats/assignment.js";
import { effectiveRef } from "./spec.js";

export interface RouteDecision {
  /** The ref that answers (effective form, e.g. churn@production). */
  readonly ref: string;
  readonly role: ServedBy;
  /** Ref to fall back to when `ref` fails (canary / arm), undefined when `ref` is production. */
  readonly fallbackRef: string | undefined;
  readonly arm: string;
  readonly experimentKey: string;
  /** Rule set selected by an experiment arm; "" = default rules. */
  readonly ruleSet: string;
  /** Shadow refs to mirror this request to (empty unless sampled). */
  readonly shadows: readonly string[];
  /** Experiment assignment to log as an exposure (in-experiment units only). */
  readonly exposure: Assignment | undefined;
  /** Role label for metrics and the prediction log. */
  readonly servedAs: string;
}

/** The canary bucket of a unit in [0, 1): GrowthBook v2 hash of salt + unit id. */
export function canaryBucket(salt: string, unitId: string): number {
  return bucketV2(salt, unitId);
}

export interface RouteInput {
  readonly endpoint: string;
  readonly model: string;
  /** The hashing unit for canary and experiment plans. */
  readonly unitId: string;
  /** Uniform [0, 1) draw for shadow sampling. */
  readonly random: number;
  /** Assigns the unit for experiment plans (undefined when the experiment is unknown). */
  readonly assign?: (experimentKey: string, unitId: string) => Assignment | undefined;
}

const ROLE_LABEL: Record<number, string> = {
  [ServedBy.PRODUCTION]: "production",
  [ServedBy.CANARY]: "canary",
  [ServedBy.BLUE]: "blue",
  [ServedBy.GREEN]: "green",
  [ServedBy.EXPERIMENT_ARM]: "arm",
  [ServedBy.FALLBACK]: "fallback",
};
export const roleLabel = (r: ServedBy): string => ROLE_LABEL[r] ?? "unknown";

/**
 * Decisions that depend on nothing but the plan (single, blue-green, no plan), made once per
 * plan object: plans are replaced on every change, never edited, and decisions are read-only.
 */
const constantDecisions = new WeakMap<ServingPlan, { readonly model: string; readonly decision: RouteDecision }>();

export function route(plan: ServingPlan, input: RouteInput): RouteDecision {
  const c = plan.plan.case;
  if (c === "single" || c === "blueGreen" || c === undefined) {
    const known = constantDecisions.get(plan);
    if (known && known.model === input.model) return known.decision;
    const decision = decide(plan, input);
    constantDecisions.set(plan, { model: input.model, decision });
    return decision;
  }
  return decide(plan, input);
}

function decide(plan: ServingPlan, input: RouteInput): RouteDecision {
  const m = input.model;
  const base = { fallbackRef: undefined, arm: "", experimentKey: "", ruleSet: "", shadows: [] as string[], exposure: undefined };
  const p = plan.plan;
  switch (p.case) {
    case "canary": {
      const prod = effectiveRef(p.value.productionModelRef, m);
      const w = p.value.canaryWeight;
      const inCanary = w > 0 && input.unitId !== "" && canaryBucket(p.value.salt || input.endpoint, input.unitId) < w;
      if (inCanary) return { ...base, ref: effectiveRef(p.value.canaryModelRef, m), role: ServedBy.CANARY, fallbackRef: prod, servedAs: "canary" };
      return { ...base, ref: prod, role: ServedBy.PRODUCTION, servedAs: "production" };
    }
    case "shadow": {
      const prod = effectiveRef(p.value.productionModelRef, m);
      const shadows = input.random < p.value.mirrorFraction ? p.value.shadowModelRefs.map((r) => effectiveRef(r, m)) : [];
      return { ...base, ref: prod, role: ServedBy.PRODUCTION, shadows, servedAs: "production" };
    }
    case "blueGreen": {
      const green = p.value.active === BlueGreenColor.GREEN;
      return {
        ...base,
        ref: effectiveRef(green ? p.value.greenModelRef : p.value.blueModelRef, m),
        role: green ? ServedBy.GREEN : ServedBy.BLUE,
        servedAs: green ? "green" : "blue",
      };
    }
    case "experiment": {
      const dflt = effectiveRef(p.value.defaultModelRef, m);
      const a = input.unitId ? input.assign?.(p.value.experimentKey, input.unitId) : undefined;
      const binding = a?.inExperiment ? p.value.arms[a.arm] : undefined;
      if (!a || !a.inExperiment || !binding) return { ...base, ref: dflt, role: ServedBy.PRODUCTION, servedAs: "production" };
      const ref = binding.modelRef ? effectiveRef(binding.modelRef, m) : dflt;
      return {
        ...base,
        ref,
        role: ServedBy.EXPERIMENT_ARM,
        fallbackRef: ref === dflt ? undefined : dflt,
        arm: a.arm,
        experimentKey: p.value.experimentKey,
        ruleSet: binding.ruleSet,
        exposure: a,
        servedAs: a.arm,
      };
    }
    case "single":
      return { ...base, ref: effectiveRef(p.value.modelRef, m), role: ServedBy.PRODUCTION, servedAs: "production" };
    default:
      return { ...base, ref: `${m}@production`, role: ServedBy.PRODUCTION, servedAs: "production" };
  }
}

/** The production ref of a plan (what a rollout compares against and falls back to). */
export function productionRef(plan: ServingPlan, model: string): string {
  const p = plan.plan;
  switch (p.case) {
    case "single":
      return effectiveRef(p.value.modelRef, model);
    case "canary":
    case "shadow":
      return effectiveRef(p.value.productionModelRef, model);
    case "blueGreen":
      return effectiveRef(p.value.active === BlueGreenColor.GREEN ? p.value.greenModelRef : p.value.blueModelRef, model);
    case "experiment":
      return effectiveRef(p.value.defaultModelRef, model);
    default:
      return `${model}@production`;
  }
}
