// Canary routing over 10k units: the share in the canary is within binomial tolerance of
// the weight, each unit always sees one version, and a unit in at 5% stays in at 10%.
// Plus blue-green, shadow sampling and the other plan kinds.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { BlueGreenColor, ServedBy, ServingPlanSchema } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { AssignmentSchema } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { canaryBucket, route } from "./plan.js";

const canary = (w: number, salt = "") => create(ServingPlanSchema, { plan: { case: "canary", value: { canaryModelRef: "churn@7", canaryWeight: w, salt } } });
const input = (unitId: string, random = 0.5) => ({ endpoint: "churn", model: "churn", unitId, random });

describe("serving plans", () => {
  it("routes a canary weight's share of 10k units to the canary, within 4 binomial sd", () => {
    for (const w of [0.01, 0.05, 0.1, 0.25, 0.5]) {
      const n = 10_000;
      let k = 0;
      for (let i = 0; i < n; i++) if (route(canary(w), input(`user-${i}`)).role === ServedBy.CANARY) k++;
      const sd = Math.sqrt(n * w * (1 - w));
      assert.ok(Math.abs(k - n * w) <= 4 * sd, `weight ${w}: ${k} of ${n} (expected ${n * w} ± ${(4 * sd).toFixed(1)})`);
    }
  });

  it("is sticky: the same unit always gets the same version; units in at 5% stay in at 10%, 25%, 100%", () => {
    const units = Array.from({ length: 10_000 }, (_, i) => `u${i}`);
    const at = (w: number) => new Set(units.filter((u) => route(canary(w), input(u)).role === ServedBy.CANARY));
    const s5 = at(0.05);
    for (const u of [...s5].slice(0, 50)) for (let r = 0; r < 5; r++) assert.equal(route(canary(0.05), input(u, Math.random())).role, ServedBy.CANARY);
    let prev = s5;
    for (const w of [0.1, 0.25, 1]) {
      const next = at(w);
      for (const u of prev) assert.ok(next.has(u), `${u} left the canary when the weight grew to ${w}`);
      prev = next;
    }
    assert.equal(prev.size, units.length, "100% is everyone");
    assert.equal(at(0).size, 0, "0% is no one");
  });

  it("uses the GrowthBook v2 bucket of salt + unit (endpoint name when no salt), so endpoints split independently", () => {
    // Reference: the experiments library's documented hash (fnv1a32 twice, mod 10000).
    const b = canaryBucket("churn", "user-1");
    assert.ok(b >= 0 && b < 1);
    assert.equal(route(canary(b + 0.0001), input("user-1")).role, ServedBy.CANARY);
    assert.equal(route(canary(b), input("user-1")).role, ServedBy.PRODUCTION);
    const other = create(ServingPlanSchema, { plan: { case: "canary", value: { canaryModelRef: "churn@7", canaryWeight: 0.5, salt: "other" } } });
    let differ = 0;
    for (let i = 0; i < 1000; i++) if (route(canary(0.5), input(`u${i}`)).role !== route(other, input(`u${i}`)).role) differ++;
    assert.ok(differ > 400 && differ < 600, `${differ} of 1000 units differ between salts`);
  });

  it("serves the active blue-green colour and falls back to nothing", () => {
    const bg = (active: BlueGreenColor) => create(ServingPlanSchema, { plan: { case: "blueGreen", value: { blueModelRef: "churn@1", greenModelRef: "churn@2", active } } });
    const g = route(bg(BlueGreenColor.GREEN), input("u"));
    assert.deepEqual([g.ref, g.role, g.fallbackRef], ["churn@2", ServedBy.GREEN, undefined]);
    const b = route(bg(BlueGreenColor.BLUE), input("u"));
    assert.deepEqual([b.ref, b.role], ["churn@1", ServedBy.BLUE]);
  });

  it("answers a plan-only decision once per plan and model, and a new plan object anew", () => {
    const single = create(ServingPlanSchema, { plan: { case: "single", value: { modelRef: "churn@3" } } });
    const first = route(single, input("u1"));
    assert.equal(route(single, input("u2", 0.1)), first, "the same decision for every unit");
    assert.equal(first.ref, "churn@3");
    assert.equal(route(single, { ...input("u1"), model: "other" }).ref, "churn@3");
    assert.equal(route(create(ServingPlanSchema, {}), { ...input("u1"), model: "other" }).ref, "other@production");
    const changed = create(ServingPlanSchema, { plan: { case: "single", value: { modelRef: "churn@4" } } });
    assert.equal(route(changed, input("u1")).ref, "churn@4");
  });

  it("mirrors a shadow plan's fraction and canary falls back to production", () => {
    const sh = create(ServingPlanSchema, { plan: { case: "shadow", value: { shadowModelRefs: ["churn@2", "churn@3"], mirrorFraction: 0.25 } } });
    assert.deepEqual(route(sh, input("u", 0.2)).shadows, ["churn@2", "churn@3"]);
    assert.deepEqual(route(sh, input("u", 0.3)).shadows, []);
    assert.equal(route(sh, input("u", 0.2)).ref, "churn@production");
    const c = route(canary(1), input("u"));
    assert.deepEqual([c.ref, c.fallbackRef], ["churn@7", "churn@production"]);
  });

  it("maps experiment arms to versions and rule sets, units outside to the default", () => {
    const plan = create(ServingPlanSchema, {
      plan: { case: "experiment", value: { experimentKey: "exp", defaultModelRef: "churn@1", arms: { control: { modelRef: "" }, treatment: { modelRef: "churn@2", ruleSet: "diverse" } } } },
    });
    const assign = (arm: string, inExperiment = true) => () => create(AssignmentSchema, { experimentKey: "exp", unitId: "u", arm, inExperiment });
    const t = route(plan, { ...input("u"), assign: assign("treatment") });
    assert.deepEqual([t.ref, t.role, t.arm, t.ruleSet, t.fallbackRef], ["churn@2", ServedBy.EXPERIMENT_ARM, "treatment", "diverse", "churn@1"]);
    const c = route(plan, { ...input("u"), assign: assign("control") });
    assert.deepEqual([c.ref, c.role, c.arm, c.fallbackRef], ["churn@1", ServedBy.EXPERIMENT_ARM, "control", undefined]);
    const out = route(plan, { ...input("u"), assign: assign("control", false) });
    assert.deepEqual([out.ref, out.role, out.exposure], ["churn@1", ServedBy.PRODUCTION, undefined]);
  });
});
