// The point-in-time join maths: edge cases by hand, then the whole pandas merge_asof
// reference fixture (fixtures/make_pit_fixture.py) through the same functions.

import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, it } from "node:test";
import { isExpired, joinAsOf, latestAtOrBefore, sortHistory } from "./pit-join.js";

interface Fixture {
  ttl_ms: number;
  feature_rows: Array<{ user_id: number; event_ts: number; spend: number; visits: number | null }>;
  entity_rows: Array<{ user_id: number; ts: number }>;
  expected: Array<{ status: string; event_ts?: number; spend?: number | null; visits?: number | null }>;
}

export function loadPitFixture(): Fixture {
  return JSON.parse(fs.readFileSync(new URL("./fixtures/pit_fixture.json", import.meta.url), "utf8")) as Fixture;
}

describe("point-in-time join", () => {
  it("takes the last value at or before t, never one after", () => {
    const times = [10, 20, 20, 30];
    assert.equal(latestAtOrBefore(times, 5), -1);
    assert.equal(latestAtOrBefore(times, 10), 0);
    assert.equal(latestAtOrBefore(times, 19), 0);
    assert.equal(latestAtOrBefore(times, 20), 2, "ties: the last written of equal times");
    assert.equal(latestAtOrBefore(times, 29), 2);
    assert.equal(latestAtOrBefore(times, 1e15), 3);
    assert.equal(latestAtOrBefore([], 1), -1);
  });

  it("expires strictly beyond the TTL, and never without one", () => {
    assert.equal(isExpired(0, 100, 100), false, "age == ttl is still within it");
    assert.equal(isExpired(0, 101, 100), true);
    assert.equal(isExpired(0, 1e12, 0), false);
    assert.deepEqual(joinAsOf([0, 50], 151, 100), { status: "expired", index: 1 });
    assert.deepEqual(joinAsOf([0, 50], 150, 100), { status: "present", index: 1 });
    assert.deepEqual(joinAsOf([60], 50, 100), { status: "not_found" });
  });

  it("sorts history by event time, then write order", () => {
    const rows = [
      { eventTime: 30, seq: 1 },
      { eventTime: 10, seq: 2 },
      { eventTime: 30, seq: 0 },
    ];
    assert.deepEqual([...sortHistory(rows)], [10, 30, 30]);
    assert.deepEqual(rows.map((r) => r.seq), [2, 0, 1]);
  });

  it("matches pandas merge_asof on the reference fixture", () => {
    const fx = loadPitFixture();
    const byUser = new Map<number, Array<{ eventTime: number; seq: number; spend: number; visits: number | null }>>();
    fx.feature_rows.forEach((r, seq) => {
      const list = byUser.get(r.user_id) ?? [];
      list.push({ eventTime: r.event_ts, seq, spend: r.spend, visits: r.visits });
      byUser.set(r.user_id, list);
    });
    const times = new Map([...byUser].map(([u, rows]) => [u, sortHistory(rows)]));
    fx.entity_rows.forEach((e, i) => {
      const history = byUser.get(e.user_id) ?? [];
      const j = joinAsOf(times.get(e.user_id) ?? [], e.ts, fx.ttl_ms);
      const exp = fx.expected[i]!;
      assert.equal(j.status, exp.status, `entity row ${i}`);
      if (j.status === "not_found") return;
      const row = history[j.index]!;
      assert.equal(row.eventTime, exp.event_ts, `entity row ${i} event time`);
      if (j.status === "present") {
        assert.equal(row.spend, exp.spend, `entity row ${i} spend`);
        assert.equal(row.visits, exp.visits, `entity row ${i} visits`);
      }
    });
  });
});
