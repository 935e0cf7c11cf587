// PiiTags: a binding's PII columns from the views' tags; fail closed while a view cannot be
// read; a view that does not exist tags nothing; applied views replace older ones only.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { FeatureViewSchema } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { FeatureBindingSchema } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { createLogger } from "../../lib/logger.js";
import { PiiTags } from "./pii.js";

const logger = createLogger({ level: "silent" as never, service: "test" });
const view = (name: string, version: bigint, pii: string[], names = ["age", "calls", "spend"]) =>
  create(FeatureViewSchema, { name, version, features: names.map((n) => ({ name: n, pii: pii.includes(n) })) });
const binding = create(FeatureBindingSchema, { inputs: [{ inputName: "x", features: ["acct:age", "acct:calls", "other:spend"] }] });

describe("PiiTags", () => {
  it("marks the tagged features of the bound views, by full ref and short name, and per dense column", async () => {
    const views: Record<string, ReturnType<typeof view> | undefined> = { acct: view("acct", 1n, ["age"]), other: undefined };
    const tags = new PiiTags({ logger, fetchView: async (n) => views[n] });
    await tags.prefetch(binding);
    const p = tags.policyFor(binding);
    assert.deepEqual([...p.columns].sort(), ["acct:age", "age"]);
    assert.deepEqual(p.dense.get("x"), { refs: ["acct:age", "acct:calls", "other:spend"], pii: [true, false, false] });
    assert.equal(tags.policyFor(binding), p, "memoised while nothing changed");

    tags.viewApplied(view("acct", 2n, ["age", "calls"]));
    assert.deepEqual([...tags.policyFor(binding).columns].sort(), ["acct:age", "acct:calls", "age", "calls"]);
    tags.viewApplied(view("acct", 1n, []));
    assert.deepEqual([...tags.policyFor(binding).columns].sort(), ["acct:age", "acct:calls", "age", "calls"], "an older version never replaces a newer one");
  });

  it("fails closed while a view cannot be read, and opens once it is", async () => {
    let up = false;
    const tags = new PiiTags({ logger, retryMs: 0, fetchView: async (n) => {
      if (!up) throw new Error("features service unreachable");
      return view(n, 1n, []);
    } });
    await tags.prefetch(binding);
    assert.deepEqual(tags.policyFor(binding).dense.get("x")?.pii, [true, true, true]);
    up = true;
    tags.policyFor(binding); // due for a retry: fetched in the background
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(tags.policyFor(binding).columns.size, 0);
  });
});
