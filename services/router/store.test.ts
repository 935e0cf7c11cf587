// The router store on a real (in-memory) SQLite with its committed migrations: a no-op apply
// writes nothing, plan revisions only grow, every change leaves an audit record and its
// events in the outbox in the same transaction, and a replica applies only newer plans.

import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ServingPlanChangeCause } from "../../gen/mlmesh/events/v1/router_events_pb.js";
import { EndpointSchema } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { openSqlite } from "../../lib/db.js";
import { InProcessBus } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import { Outbox } from "../../lib/outbox.js";
import * as schema from "./schema.js";
import { singlePlan } from "./spec.js";
import { RouterStore } from "./store.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");

function open() {
  const h = openSqlite({ dataDir: "", file: ":memory:", schema, migrationsFolder: MIGRATIONS });
  // The relay is never started here: events stay in the outbox table, where we count them.
  const outbox = new Outbox(h.sqlite, new InProcessBus(createLogger({ level: "silent" })), createLogger({ level: "silent" }), "router");
  const store = new RouterStore(h.sqlite, outbox);
  const subjects = () => (h.sqlite.prepare("SELECT subject FROM outbox ORDER BY seq").all() as Array<{ subject: string }>).map((r) => r.subject);
  return { h, store, subjects };
}

const spec = (description = "") => create(EndpointSchema, { name: "churn", model: "churn", entities: ["user_id"], description });

describe("router store", () => {
  it("applies idempotently, versions the spec and the plan separately, audits and records events", () => {
    const { h, store, subjects } = open();
    const a = store.apply({ spec: spec(), plan: undefined, initialPlan: singlePlan("churn@production"), principal: "alice", reason: "new" });
    assert.deepEqual([a.created, a.changed, a.record.generation, a.record.planRevision], [true, true, 1, 1]);
    const again = store.apply({ spec: spec(), plan: undefined, initialPlan: singlePlan("churn@production"), principal: "alice", reason: "" });
    assert.deepEqual([again.created, again.changed], [false, false]);
    const desc = store.apply({ spec: spec("v2"), plan: undefined, initialPlan: singlePlan("x@1"), principal: "bob", reason: "doc" });
    assert.deepEqual([desc.record.generation, desc.record.planRevision], [2, 1], "a spec change keeps the live plan");
    const p = store.tx(() => store.setPlanInTx({ endpoint: "churn", plan: singlePlan("churn@2"), cause: ServingPlanChangeCause.SET, principal: "bob", reason: "pin", auditAction: "plan.set" }));
    assert.equal(p.record.planRevision, 2);
    assert.throws(() => store.tx(() => store.setPlanInTx({ endpoint: "churn", plan: singlePlan("churn@3"), cause: ServingPlanChangeCause.SET, principal: "bob", reason: "", expectedRevision: 1 })), /revision of churn is 2, not 1/);
    assert.deepEqual(subjects(), [
      "mlmesh.router.endpoint_applied.churn",
      "mlmesh.router.serving_plan_changed.churn",
      "mlmesh.router.endpoint_applied.churn",
      "mlmesh.router.serving_plan_changed.churn",
    ]);
    const audit = store.audit.list({ newestFirst: false });
    assert.deepEqual(audit.records.map((r) => [r.action, r.principal]), [["endpoint.apply", "alice"], ["endpoint.apply", "bob"], ["plan.set", "bob"]]);
    h.close();
  });

  it("a replica applies only plans newer than its own", () => {
    const { h, store } = open();
    store.apply({ spec: spec(), plan: undefined, initialPlan: singlePlan("churn@production"), principal: "a", reason: "" });
    assert.equal(store.applyReplicatedPlan("churn", singlePlan("churn@9"), 1, ""), false, "same revision: ours");
    assert.equal(store.applyReplicatedPlan("churn", singlePlan("churn@9"), 5, ""), true);
    assert.equal(store.get("churn")!.planRevision, 5);
    assert.equal(store.applyReplicatedPlan("churn", singlePlan("churn@8"), 4, ""), false, "older: ignored");
    assert.equal(store.applyReplicatedPlan("nope", singlePlan("churn@8"), 9, ""), false, "unknown endpoint");
    const d = store.delete("churn", { principal: "a", reason: "bye" });
    assert.equal(d.spec.name, "churn");
    assert.equal(store.get("churn"), undefined);
    h.close();
  });
});
