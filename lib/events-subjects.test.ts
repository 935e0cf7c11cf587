import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { subjectMatches } from "./events.js";

describe("subjectMatches (NATS wildcard semantics)", () => {
  const cases: Array<[string, string, boolean]> = [
    ["mlmesh.registry.>", "mlmesh.registry.alias_moved", true],
    ["mlmesh.registry.>", "mlmesh.registry", false],
    ["mlmesh.features.ingest.*", "mlmesh.features.ingest.user_stats", true],
    ["mlmesh.features.ingest.*", "mlmesh.features.ingest.a.b", false],
    ["mlmesh.*.alias_moved", "mlmesh.registry.alias_moved", true],
    ["a.b", "a.b.c", false],
    ["a.b.c", "a.b", false],
    [">", "anything.at.all", true],
  ];
  for (const [pattern, subject, expected] of cases) {
    it(`${pattern} ${expected ? "matches" : "does not match"} ${subject}`, () => {
      assert.equal(subjectMatches(pattern, subject), expected);
    });
  }
});
