// Validation and normalisation of endpoint specs and serving plans. Every problem is a
// ValidationError naming the field (INVALID_ARGUMENT); resolving refs against the registry
// is the service's job, not this module's.

import { clone, create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import {
  EndpointSchema,
  ServingPlanSchema,
  type Endpoint,
  type FeaturePredicate,
  type RuleSet,
  type ServingPlan,
} from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";

export const ENDPOINT_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const FEATURE_REF = /^[A-Za-z_][A-Za-z0-9_]*:[A-Za-z_][A-Za-z0-9_]*$/;
const REF = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(@[A-Za-z0-9_.-]+)?$/;
const ENTITY = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export function validateEndpointName(name: string, field = "name"): string {
  if (!name) throw new ValidationError(field, "is required");
  if (!ENDPOINT_NAME.test(name)) throw new ValidationError(field, `${JSON.stringify(name.slice(0, 80))} must match ^[a-z][a-z0-9_-]{0,62}$ (lowercase, no dots)`);
  return name;
}

export function validateFeatureRef(ref: string, field: string): void {
  if (!FEATURE_REF.test(ref)) throw new ValidationError(field, `${JSON.stringify(ref.slice(0, 80))} is not a feature ref (view:feature)`);
}

function validateModelRef(ref: string, field: string): void {
  if (ref !== "" && !REF.test(ref)) throw new ValidationError(field, `${JSON.stringify(ref.slice(0, 80))} is not a model ref (name, name@alias, name@3)`);
}

function fraction(x: number, field: string): void {
  if (!Number.isFinite(x) || x < 0 || x > 1) throw new ValidationError(field, `${x} must be in [0, 1]`);
}

/** Model ref of a plan slot: empty = `<model>@production`, bare name = `name@production`. */
export function effectiveRef(ref: string, model: string): string {
  if (ref === "") return `${model}@production`;
  return ref.includes("@") ? ref : `${ref}@production`;
}

/** Validates a spec and returns a normalised copy (status and serving_plan cleared). */
export function normaliseEndpoint(input: Endpoint | undefined, field = "endpoint"): { spec: Endpoint; plan: ServingPlan | undefined } {
  if (!input) throw new ValidationError(field, "is required");
  const e = clone(EndpointSchema, input);
  validateEndpointName(e.name, `${field}.name`);
  if (!e.model) throw new ValidationError(`${field}.model`, "is required (a registered model name)");
  if (e.model.includes("@")) throw new ValidationError(`${field}.model`, `${JSON.stringify(e.model)}: give the bare model name; versions belong in serving_plan`);
  if (!MODEL_NAME.test(e.model)) throw new ValidationError(`${field}.model`, `${JSON.stringify(e.model.slice(0, 80))} is not a model name`);
  if (e.entities.length === 0) throw new ValidationError(`${field}.entities`, "at least one entity key is required (e.g. [\"user_id\"])");
  const seen = new Set<string>();
  e.entities.forEach((k, i) => {
    if (!ENTITY.test(k)) throw new ValidationError(`${field}.entities[${i}]`, `${JSON.stringify(k)} is not an entity key name`);
    if (seen.has(k)) throw new ValidationError(`${field}.entities[${i}]`, `${JSON.stringify(k)} is listed twice`);
    seen.add(k);
  });
  const fs = e.features?.source;
  if (fs?.case === "featureRefs") {
    if (fs.value.refs.length === 0) throw new ValidationError(`${field}.features.feature_refs.refs`, "must not be empty (leave features unset to use the model's binding)");
    fs.value.refs.forEach((r, i) => validateFeatureRef(r, `${field}.features.feature_refs.refs[${i}]`));
  } else if (fs?.case === "featureSet" && !/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(fs.value)) {
    throw new ValidationError(`${field}.features.feature_set`, `${JSON.stringify(fs.value)} is not a feature set name`);
  }
  const b = e.latencyBudget;
  if (b) {
    const ms = (d: typeof b.total, f: string) => {
      if (!d) return 0;
      const v = durationMs(d);
      if (!Number.isFinite(v) || v < 0) throw new ValidationError(`${field}.latency_budget.${f}`, "must not be negative");
      return v;
    };
    const total = ms(b.total, "total");
    if (b.total && total <= 0) throw new ValidationError(`${field}.latency_budget.total`, "must be positive");
    const sum = ms(b.candidateSelection, "candidate_selection") + ms(b.featureFetch, "feature_fetch") + ms(b.scoring, "scoring") + ms(b.postProcessing, "post_processing");
    if (b.total && sum > total) throw new ValidationError(`${field}.latency_budget`, `the slices sum to ${sum} ms, more than total ${total} ms`);
  }
  for (const ref of Object.keys(e.fallbacks?.defaultFeatureValues ?? {})) validateFeatureRef(ref, `${field}.fallbacks.default_feature_values["${ref}"]`);
  if (e.fallbacks?.fallbackScore !== undefined && !Number.isFinite(e.fallbacks.fallbackScore)) throw new ValidationError(`${field}.fallbacks.fallback_score`, "must be finite");
  const pp = e.postProcessing;
  if (pp) {
    if (pp.topK < 0) throw new ValidationError(`${field}.post_processing.top_k`, "must not be negative");
    if (pp.threshold !== undefined && !Number.isFinite(pp.threshold)) throw new ValidationError(`${field}.post_processing.threshold`, "must be finite");
    const cal = pp.calibration?.method;
    if (cal?.case === "platt" && (!Number.isFinite(cal.value.a) || !Number.isFinite(cal.value.b))) throw new ValidationError(`${field}.post_processing.calibration.platt`, "a and b must be finite");
    if (cal?.case === "isotonic") {
      const pts = cal.value.points;
      if (pts.length < 2) throw new ValidationError(`${field}.post_processing.calibration.isotonic.points`, "needs at least 2 points");
      for (let i = 1; i < pts.length; i++) {
        if (!(pts[i]!.x > pts[i - 1]!.x)) throw new ValidationError(`${field}.post_processing.calibration.isotonic.points[${i}].x`, "x must be strictly increasing");
        if (pts[i]!.y < pts[i - 1]!.y) throw new ValidationError(`${field}.post_processing.calibration.isotonic.points[${i}].y`, "y must be non-decreasing");
      }
    }
  }
  const cs = e.candidateSelection;
  if (cs) {
    if (cs.maxCandidates < 0) throw new ValidationError(`${field}.candidate_selection.max_candidates`, "must not be negative");
    if (cs.candidateEntity && !ENTITY.test(cs.candidateEntity)) throw new ValidationError(`${field}.candidate_selection.candidate_entity`, "is not an entity key name");
    if (cs.source?.source.case === "featureList") validateFeatureRef(cs.source.source.value.featureRef, `${field}.candidate_selection.source.feature_list.feature_ref`);
    if (cs.rules) validateRuleSet(cs.rules, `${field}.candidate_selection.rules`);
    for (const [name, rs] of Object.entries(cs.ruleSets)) {
      if (!ENTITY.test(name)) throw new ValidationError(`${field}.candidate_selection.rule_sets`, `${JSON.stringify(name)} is not a rule set name`);
      validateRuleSet(rs, `${field}.candidate_selection.rule_sets["${name}"]`);
    }
  }
  const plan = e.servingPlan;
  if (plan) validatePlan(plan, e, `${field}.serving_plan`);
  e.servingPlan = undefined;
  e.status = undefined;
  return { spec: e, plan };
}

function validatePredicate(p: FeaturePredicate, field: string): void {
  if (p.operand.case === "featureRef") validateFeatureRef(p.operand.value, `${field}.feature_ref`);
  else if (p.operand.case !== "contextKey" || !p.operand.value) throw new ValidationError(field, "needs feature_ref or context_key");
  if (p.operator === 0) throw new ValidationError(`${field}.operator`, "is required");
}

function validateRuleSet(rs: RuleSet, field: string): void {
  const names = new Set<string>();
  rs.rules.forEach((r, i) => {
    const f = `${field}.rules[${i}]`;
    if (!r.name) throw new ValidationError(`${f}.name`, "is required");
    if (names.has(r.name)) throw new ValidationError(`${f}.name`, `${JSON.stringify(r.name)} is used twice`);
    names.add(r.name);
    switch (r.rule.case) {
      case "filter":
        r.rule.value.allOf.forEach((p, j) => validatePredicate(p, `${f}.filter.all_of[${j}]`));
        break;
      case "exclusion":
        if (r.rule.value.featureRef) validateFeatureRef(r.rule.value.featureRef, `${f}.exclusion.feature_ref`);
        break;
      case "boost":
        r.rule.value.when.forEach((p, j) => validatePredicate(p, `${f}.boost.when[${j}]`));
        if (r.rule.value.effect.case === undefined) throw new ValidationError(`${f}.boost`, "needs multiply or add");
        break;
      case "categoryCap":
        validateFeatureRef(r.rule.value.categoryFeatureRef, `${f}.category_cap.category_feature_ref`);
        if (r.rule.value.maxPerCategory <= 0 && Object.keys(r.rule.value.perCategory).length === 0) throw new ValidationError(`${f}.category_cap.max_per_category`, "must be positive");
        break;
      default:
        throw new ValidationError(f, "needs one of filter, exclusion, boost, category_cap");
    }
  });
}

/** Checks a plan's shape (not whether its refs resolve). */
export function validatePlan(plan: ServingPlan, endpoint: Endpoint, field = "plan"): void {
  const p = plan.plan;
  switch (p.case) {
    case "single":
      validateModelRef(p.value.modelRef, `${field}.single.model_ref`);
      return;
    case "canary":
      validateModelRef(p.value.productionModelRef, `${field}.canary.production_model_ref`);
      if (!p.value.canaryModelRef) throw new ValidationError(`${field}.canary.canary_model_ref`, "is required");
      validateModelRef(p.value.canaryModelRef, `${field}.canary.canary_model_ref`);
      fraction(p.value.canaryWeight, `${field}.canary.canary_weight`);
      return;
    case "shadow":
      validateModelRef(p.value.productionModelRef, `${field}.shadow.production_model_ref`);
      if (p.value.shadowModelRefs.length === 0) throw new ValidationError(`${field}.shadow.shadow_model_refs`, "at least one shadow is required");
      p.value.shadowModelRefs.forEach((r, i) => validateModelRef(r || "x", `${field}.shadow.shadow_model_refs[${i}]`));
      fraction(p.value.mirrorFraction, `${field}.shadow.mirror_fraction`);
      if (p.value.agreementTolerance !== undefined && !(p.value.agreementTolerance >= 0)) throw new ValidationError(`${field}.shadow.agreement_tolerance`, "must not be negative");
      return;
    case "blueGreen":
      if (!p.value.blueModelRef) throw new ValidationError(`${field}.blue_green.blue_model_ref`, "is required");
      if (!p.value.greenModelRef) throw new ValidationError(`${field}.blue_green.green_model_ref`, "is required");
      validateModelRef(p.value.blueModelRef, `${field}.blue_green.blue_model_ref`);
      validateModelRef(p.value.greenModelRef, `${field}.blue_green.green_model_ref`);
      if (p.value.active === 0) throw new ValidationError(`${field}.blue_green.active`, "is required (BLUE or GREEN)");
      return;
    case "experiment": {
      if (!p.value.experimentKey) throw new ValidationError(`${field}.experiment.experiment_key`, "is required");
      validateModelRef(p.value.defaultModelRef, `${field}.experiment.default_model_ref`);
      for (const [arm, b] of Object.entries(p.value.arms)) {
        validateModelRef(b.modelRef, `${field}.experiment.arms["${arm}"].model_ref`);
        if (b.ruleSet && !endpoint.candidateSelection?.ruleSets[b.ruleSet]) {
          throw new ValidationError(`${field}.experiment.arms["${arm}"].rule_set`, `${JSON.stringify(b.ruleSet)} is not in candidate_selection.rule_sets`);
        }
      }
      return;
    }
    default:
      throw new ValidationError(field, "needs one of single, canary, shadow, blue_green, experiment");
  }
}

/** Every model ref a plan names (effective form), production first. */
export function planRefs(plan: ServingPlan, model: string): string[] {
  const p = plan.plan;
  const out: string[] = [];
  switch (p.case) {
    case "single":
      out.push(effectiveRef(p.value.modelRef, model));
      break;
    case "canary":
      out.push(effectiveRef(p.value.productionModelRef, model), effectiveRef(p.value.canaryModelRef, model));
      break;
    case "shadow":
      out.push(effectiveRef(p.value.productionModelRef, model), ...p.value.shadowModelRefs.map((r) => effectiveRef(r, model)));
      break;
    case "blueGreen":
      out.push(effectiveRef(p.value.blueModelRef, model), effectiveRef(p.value.greenModelRef, model));
      break;
    case "experiment":
      out.push(effectiveRef(p.value.defaultModelRef, model), ...Object.values(p.value.arms).map((a) => effectiveRef(a.modelRef || p.value.defaultModelRef, model)));
      break;
    default:
      out.push(`${model}@production`);
  }
  return [...new Set(out)];
}

export function singlePlan(ref: string): ServingPlan {
  return create(ServingPlanSchema, { plan: { case: "single", value: { modelRef: ref } } });
}
