// The always-valid p-value is the running minimum over looks: a later, larger instantaneous
// p-value must not hide an earlier small one.

import assert from "node:assert/strict";
import path from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { ExperimentReportSchema } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { openSqlite } from "../../lib/db.js";
import { ComparisonHistory } from "./history.js";
import * as schema from "./schema.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");

const report = (diff: number, seqP: number) =>
  create(ExperimentReportSchema, {
    experimentKey: "exp",
    arms: [{ arm: "control", control: true, units: 10n }, { arm: "b", units: 12n }],
    metrics: [{ metric: "m", comparisons: [{ arm: "b", controlArm: "control", diff, pValue: 0.5, sequential: { pValue: seqP } }, { arm: "c", controlArm: "control", unavailableReason: "too few units" }] }],
  });

it("keeps one snapshot per interval and the smallest sequential p-value of earlier looks", () => {
  const db = openSqlite({ dataDir: "", file: ":memory:", schema, migrationsFolder: MIGRATIONS });
  try {
    const h = new ComparisonHistory(db.sqlite, 1000);
    assert.equal(h.priorSequentialP("exp", "m", "b"), undefined);
    h.record(report(1, 0.02), 0);
    h.record(report(2, 0.001), 500); // within the interval: not stored
    h.record(report(3, 0.3), 1000);
    assert.equal(h.priorSequentialP("exp", "m", "b"), 0.02);
    assert.deepEqual(h.list("exp", "m", "b").map((s) => [Number(s.n), s.diff, s.sequentialPValue]), [[22, 1, 0.02], [22, 3, 0.3]]);
    assert.deepEqual(h.list("exp", "m", "c"), [], "unavailable comparisons are not snapshotted");
  } finally {
    db.close();
  }
});
