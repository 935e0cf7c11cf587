// removeObservation must be the exact inverse of addObservation: a late outcome replaces a
// unit's contribution, and the running moments must equal those computed from scratch.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ExperimentSchema, ExposureSchema, OutcomeSchema } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { openSqlite } from "../../lib/db.js";
import { InProcessBus } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import { Outbox } from "../../lib/outbox.js";
import { Ingestor, removeObservation } from "./ingest.js";
import * as schema from "./schema.js";
import { addObservation, statsFromValues, type ArmStats } from "./stats/sufficient-stats.js";
import { ExperimentStore } from "./store.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");

it("removing then re-adding a unit's value gives the moments of the changed data", () => {
  const ys = [3.5, 1, 7.25, 2, 9, 4.5, 6];
  const xs = [1, 2, 3, 5, 8, 13, 21];
  const s = statsFromValues(ys, xs);
  removeObservation(s, ys[2]!, xs[2]!);
  addObservation(s, 10, 4);
  const changed = statsFromValues(ys.map((y, i) => (i === 2 ? 10 : y)), xs.map((x, i) => (i === 2 ? 4 : x)));
  for (const k of ["n", "meanY", "m2Y", "meanX", "m2X", "cXY"] as const) {
    assert.ok(Math.abs(s[k] - changed[k]) <= 1e-12 * Math.max(1, Math.abs(changed[k])), `${k}: ${s[k]} != ${changed[k]}`);
  }
  const single = statsFromValues([5]);
  assert.deepEqual(removeObservation(single, 5), statsFromValues([]));
});

// The ingest path keeps committed unit rows and exposures in read-through caches and writes
// rows in multi-row statements; what it acknowledges must be on disk, so a fresh Ingestor on
// the same file (empty caches) must see the same statistics and keep updating them exactly.
describe("Ingestor over a file", () => {
  const unitSums = new Map<string, number>();
  const arm = (i: number) => (i % 2 ? "treatment" : "control");
  let dir = "";
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-ingest-"));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const open = () => {
    const handle = openSqlite({ dataDir: dir, file: "experiments.db", schema, migrationsFolder: MIGRATIONS });
    const logger = createLogger({ level: "silent" });
    const store = new ExperimentStore(handle.sqlite, new Outbox(handle.sqlite, new InProcessBus(logger), logger, "experiments"), () => 1_700_000_000_000);
    return { handle, store, ingest: new Ingestor(handle.sqlite, store, 100_000, () => 1_700_000_000_000) };
  };
  const outcome = (unit: number, value: number, id: string) =>
    create(OutcomeSchema, { unitId: `u${unit}`, metric: "revenue", value, time: timestampFromMs(1_700_000_000_000), outcomeId: id });
  const expected = (a: string) => {
    const ys = [...unitSums].filter(([u]) => arm(Number(u.slice(1))) === a).map(([, v]) => v);
    return statsFromValues(ys);
  };
  const close = (s: ArmStats, t: ArmStats) => {
    for (const k of ["n", "meanY", "m2Y"] as const) assert.ok(Math.abs(s[k] - t[k]) <= 1e-9 * Math.max(1, Math.abs(t[k])), `${k}: ${s[k]} != ${t[k]}`);
  };

  it("acknowledged outcomes survive a reopen; ids repeated in later batches are duplicates", () => {
    const a = open();
    try {
      a.store.create(create(ExperimentSchema, {
        key: "ing", unitType: 1, mde: 0.5,
        arms: [{ name: "control", weight: 0.5, control: true }, { name: "treatment", weight: 0.5 }],
        metrics: [{ name: "revenue", role: 1, type: 1, direction: 1, baselineMean: 10, baselineSd: 4 }],
      }), { principal: "t", reason: "" });
      a.store.start("ing", 0n, { principal: "t", reason: "" });
      // 150 units: two full 64-row chunks and a remainder of 22 written row by row.
      const exposures = Array.from({ length: 150 }, (_, i) => create(ExposureSchema, { experimentKey: "ing", unitId: `u${i}`, arm: arm(i), time: timestampFromMs(1_699_999_000_000) }));
      assert.equal(a.ingest.logExposures(exposures).accepted, 150);
      for (let i = 0; i < 150; i++) unitSums.set(`u${i}`, 0);
      const first = Array.from({ length: 150 }, (_, i) => outcome(i, i * 0.5, `o${i}`));
      assert.deepEqual(a.ingest.logOutcomes(first), { accepted: 150, duplicates: 0 });
      for (let i = 0; i < 150; i++) unitSums.set(`u${i}`, i * 0.5);
      // A redelivery of o3 and o7 plus two new outcomes (one for a unit already counted, one repeated in-batch).
      const second = [outcome(3, 100, "o3"), outcome(7, 100, "o7"), outcome(3, 2, "p3"), outcome(9, 1, "p9"), outcome(9, 1, "p9")];
      assert.deepEqual(a.ingest.logOutcomes(second), { accepted: 2, duplicates: 3 });
      unitSums.set("u3", unitSums.get("u3")! + 2);
      unitSums.set("u9", unitSums.get("u9")! + 1);
      for (const name of ["control", "treatment"]) close(a.ingest.armStats("ing", "revenue", name).plain, expected(name));
    } finally {
      a.handle.close();
    }
    const b = open();
    try {
      for (const name of ["control", "treatment"]) close(b.ingest.armStats("ing", "revenue", name).plain, expected(name));
      // Unit rows now come from disk, not the cache: a later outcome replaces u5's contribution exactly.
      assert.deepEqual(b.ingest.logOutcomes([outcome(5, 4, "q5"), outcome(140, 1, "o140")]), { accepted: 1, duplicates: 1 });
      unitSums.set("u5", unitSums.get("u5")! + 4);
      for (const name of ["control", "treatment"]) close(b.ingest.armStats("ing", "revenue", name).plain, expected(name));
      // A redelivery of the whole first batch (150 ids: two full 64-id lookups and a
      // remainder) after the reopen: every id is found on disk, nothing counts twice.
      assert.deepEqual(b.ingest.logOutcomes(Array.from({ length: 150 }, (_, i) => outcome(i, 50, `o${i}`))), { accepted: 0, duplicates: 150 });
      for (const name of ["control", "treatment"]) close(b.ingest.armStats("ing", "revenue", name).plain, expected(name));
      // u5 is in treatment on disk: the same arm again is a duplicate, another arm is ignored.
      const again = (a: string) => b.ingest.logExposures([create(ExposureSchema, { experimentKey: "ing", unitId: "u5", arm: a, time: timestampFromMs(1_699_999_000_000) })]);
      assert.deepEqual(again("treatment"), { accepted: 0, duplicates: 1, ignored: 0 });
      assert.deepEqual(again("control"), { accepted: 0, duplicates: 0, ignored: 1 });
    } finally {
      b.handle.close();
    }
  });
});

// Unit rows are changed in place in the cache during a batch, with an undo list: a batch that
// fails half-way must leave the statistics and every cached unit row as they were, so the
// same batch sent again counts exactly once.
describe("a batch that fails half-way", () => {
  it("leaves memory as it was, and the retried batch counts once", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-ingest-undo-"));
    const handle = openSqlite({ dataDir: dir, file: "experiments.db", schema, migrationsFolder: MIGRATIONS });
    try {
      const logger = createLogger({ level: "silent" });
      const store = new ExperimentStore(handle.sqlite, new Outbox(handle.sqlite, new InProcessBus(logger), logger, "experiments"), () => 1_700_000_000_000);
      let failAfter = Infinity;
      const flaky = Object.create(store) as ExperimentStore;
      flaky.find = (key: string) => {
        if (--failAfter < 0) throw new Error("injected failure");
        return store.find(key);
      };
      const ingest = new Ingestor(handle.sqlite, flaky, 100_000, () => 1_700_000_000_000);
      store.create(create(ExperimentSchema, {
        key: "undo", unitType: 1, mde: 0.5,
        arms: [{ name: "control", weight: 0.5, control: true }, { name: "treatment", weight: 0.5 }],
        metrics: [{ name: "revenue", role: 1, type: 1, direction: 1, baselineMean: 10, baselineSd: 4 }],
      }), { principal: "t", reason: "" });
      store.start("undo", 0n, { principal: "t", reason: "" });
      const arm = (i: number) => (i % 2 ? "treatment" : "control");
      ingest.logExposures(Array.from({ length: 40 }, (_, i) => create(ExposureSchema, { experimentKey: "undo", unitId: `u${i}`, arm: arm(i), time: timestampFromMs(1_699_999_000_000) })));
      const outcome = (i: number, v: number, id: string) => create(OutcomeSchema, { unitId: `u${i}`, metric: "revenue", value: v, time: timestampFromMs(1_700_000_000_000), outcomeId: id });
      ingest.logOutcomes(Array.from({ length: 40 }, (_, i) => outcome(i, i, `a${i}`)));
      const snapshot = () => ["control", "treatment"].map((a) => ingest.armStats("undo", "revenue", a).plain);
      const before = snapshot();
      // Units 0..29 get a second outcome (unit 5 twice); the store fails on the 20th lookup.
      const second = [...Array.from({ length: 30 }, (_, i) => outcome(i, 100 + i, `b${i}`)), outcome(5, 7, "b-extra")];
      failAfter = 20;
      assert.throws(() => ingest.logOutcomes(second), /injected failure/);
      failAfter = Infinity;
      assert.deepEqual(snapshot(), before);
      assert.deepEqual(ingest.logOutcomes(second), { accepted: 31, duplicates: 0 });
      const sums = Array.from({ length: 40 }, (_, i) => i + (i < 30 ? 100 + i : 0) + (i === 5 ? 7 : 0));
      const want = (a: string) => statsFromValues(sums.filter((_, i) => arm(i) === a));
      const after = snapshot();
      ["control", "treatment"].forEach((a, k) => {
        for (const f of ["n", "meanY", "m2Y"] as const) assert.ok(Math.abs(after[k]![f] - want(a)[f]) <= 1e-9 * Math.max(1, Math.abs(want(a)[f])), `${a} ${f}`);
      });
      // What is on disk agrees: a fresh Ingestor (empty caches) sees the same statistics.
      const fresh = new Ingestor(handle.sqlite, store, 100_000, () => 1_700_000_000_000);
      assert.deepEqual(["control", "treatment"].map((a) => fresh.armStats("undo", "revenue", a).plain), after);
    } finally {
      handle.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
