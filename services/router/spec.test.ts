// Endpoint spec and rollout spec validation: every problem is INVALID_ARGUMENT naming the
// field; defaults are filled in; plans list the refs they serve.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { EndpointSchema, RolloutSpecSchema, ServingPlanSchema, type Endpoint } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { normaliseRolloutSpec } from "./rollout.js";
import { effectiveRef, normaliseEndpoint, planRefs } from "./spec.js";

const ep = (extra: Partial<Parameters<typeof create<typeof EndpointSchema>>[1]> = {}): Endpoint =>
  create(EndpointSchema, { name: "churn", model: "churn", entities: ["user_id"], ...extra } as never);

function field(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err.field;
  }
  assert.fail("expected a ValidationError");
}

describe("endpoint specs", () => {
  it("accepts the minimal endpoint and clears status and plan from the stored spec", () => {
    const { spec, plan } = normaliseEndpoint(ep({ servingPlan: { plan: { case: "single", value: { modelRef: "churn@3" } } }, status: { generation: 7n } } as never));
    assert.equal(spec.status, undefined);
    assert.equal(spec.servingPlan, undefined);
    assert.equal(plan?.plan.case, "single");
  });

  it("names the offending field", () => {
    assert.equal(field(() => normaliseEndpoint(ep({ name: "Churn.v2" }))), "endpoint.name");
    assert.equal(field(() => normaliseEndpoint(ep({ model: "churn@3" }))), "endpoint.model");
    assert.equal(field(() => normaliseEndpoint(ep({ entities: [] }))), "endpoint.entities");
    assert.equal(field(() => normaliseEndpoint(ep({ entities: ["user_id", "user_id"] }))), "endpoint.entities[1]");
    assert.equal(field(() => normaliseEndpoint(ep({ features: { source: { case: "featureRefs", value: { refs: ["nocolon"] } } } } as never))), "endpoint.features.feature_refs.refs[0]");
    assert.equal(field(() => normaliseEndpoint(ep({ latencyBudget: { total: durationFromMs(10), featureFetch: durationFromMs(8), scoring: durationFromMs(8) } } as never))), "endpoint.latency_budget");
    assert.equal(field(() => normaliseEndpoint(ep({ servingPlan: { plan: { case: "canary", value: { canaryModelRef: "churn@2", canaryWeight: 1.5 } } } } as never))), "endpoint.serving_plan.canary.canary_weight");
    assert.equal(field(() => normaliseEndpoint(ep({ servingPlan: { plan: { case: "shadow", value: { mirrorFraction: 0.1 } } } } as never))), "endpoint.serving_plan.shadow.shadow_model_refs");
    assert.equal(
      field(() => normaliseEndpoint(ep({ servingPlan: { plan: { case: "experiment", value: { experimentKey: "e", arms: { a: { ruleSet: "nope" } } } } } } as never))),
      'endpoint.serving_plan.experiment.arms["a"].rule_set',
    );
    assert.equal(
      field(() => normaliseEndpoint(ep({ postProcessing: { calibration: { method: { case: "isotonic", value: { points: [{ x: 0, y: 0 }, { x: 0, y: 1 }] } } } } } as never))),
      "endpoint.post_processing.calibration.isotonic.points[1].x",
    );
    assert.equal(
      field(() => normaliseEndpoint(ep({ candidateSelection: { rules: { rules: [{ name: "a", rule: { case: "exclusion", value: {} } }, { name: "a", rule: { case: "exclusion", value: {} } }] } } } as never))),
      "endpoint.candidate_selection.rules.rules[1].name",
    );
  });

  it("lists the refs a plan serves, in their effective form", () => {
    assert.equal(effectiveRef("", "churn"), "churn@production");
    assert.equal(effectiveRef("other", "churn"), "other@production");
    const p = create(ServingPlanSchema, { plan: { case: "canary", value: { canaryModelRef: "churn@4", canaryWeight: 0.1 } } });
    assert.deepEqual(planRefs(p, "churn"), ["churn@production", "churn@4"]);
  });
});

describe("rollout specs", () => {
  it("fills in the defaults", () => {
    const s = normaliseRolloutSpec(undefined, 1000);
    assert.deepEqual(s.steps, [0.01, 0.05, 0.1, 0.25, 0.5, 1]);
    assert.equal(durationMs(s.interval!), 60_000);
    assert.equal(s.minRequests, 200n);
    assert.equal(durationMs(s.unloadGracePeriod!), 300_000);
  });
  it("refuses steps that do not increase within (0, 1], short intervals and negative thresholds", () => {
    assert.equal(field(() => normaliseRolloutSpec(create(RolloutSpecSchema, { steps: [0.1, 0.1] }), 1000)), "spec.steps[1]");
    assert.equal(field(() => normaliseRolloutSpec(create(RolloutSpecSchema, { steps: [0.5, 1.5] }), 1000)), "spec.steps[1]");
    assert.equal(field(() => normaliseRolloutSpec(create(RolloutSpecSchema, { interval: durationFromMs(500) }), 1000)), "spec.interval");
    assert.equal(field(() => normaliseRolloutSpec(create(RolloutSpecSchema, { maxP99Ms: -1 }), 1000)), "spec.max_p99_ms");
    assert.equal(field(() => normaliseRolloutSpec(create(RolloutSpecSchema, { maxErrorRate: 2 }), 1000)), "spec.max_error_rate");
  });
});
