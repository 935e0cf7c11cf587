// OnlineReadCache on its own: lookups, "no row" entries, forgetting, the byte bound and
// CLOCK's second chance for entries read since the hand last passed.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { entryBytes, NOT_CACHED, OnlineReadCache } from "./online-cache.js";
import type { OnlineRecord } from "./online-store.js";

const rec = (eventTime: number, json = "[1]"): OnlineRecord => ({ eventTime, valuesJson: json });

describe("OnlineReadCache", () => {
  it("answers NOT_CACHED, a record, or undefined for a key known to have no row; counts hits and misses", () => {
    const c = new OnlineReadCache(1 << 20);
    assert.equal(c.lookup("v", "1"), NOT_CACHED);
    const r = rec(5);
    c.put("v", "1", r);
    c.put("v", "2", undefined);
    assert.equal(c.lookup("v", "1"), r, "the same record object, so its decoded values are shared");
    assert.equal(c.lookup("v", "2"), undefined);
    assert.equal(c.lookup("w", "1"), NOT_CACHED, "views are apart");
    assert.deepEqual([c.hits, c.misses, c.entries], [2, 2, 2]);
    assert.equal(c.bytes, entryBytes("1", r) + entryBytes("2", undefined));
  });

  it("replaces an entry put again, forgets keys, views and everything", () => {
    const c = new OnlineReadCache(1 << 20);
    c.put("v", "1", rec(1));
    c.put("v", "1", rec(2, "[22]"));
    assert.equal(c.entries, 1);
    assert.equal(c.bytes, entryBytes("1", rec(2, "[22]")));
    assert.deepEqual(c.lookup("v", "1"), rec(2, "[22]"));
    c.put("v", "2", rec(3));
    c.put("w", "1", rec(4));
    c.forget("v", "1");
    c.forget("v", "nope");
    assert.equal(c.lookup("v", "1"), NOT_CACHED);
    assert.ok(c.holdsView("v"));
    c.forgetView("v");
    assert.equal(c.holdsView("v"), false);
    assert.equal(c.lookup("v", "2"), NOT_CACHED);
    assert.deepEqual(c.lookup("w", "1"), rec(4));
    assert.equal(c.entries, 1);
    c.clear();
    assert.deepEqual([c.entries, c.bytes, c.lookup("w", "1")], [0, 0, NOT_CACHED]);
    // Still usable after emptying.
    c.put("w", "1", rec(5));
    assert.deepEqual(c.lookup("w", "1"), rec(5));
  });

  it("stays within its byte budget, evicting first what was not read since the hand passed", () => {
    const size = entryBytes("k00", rec(1));
    const c = new OnlineReadCache(size * 10);
    for (let i = 0; i < 10; i++) c.put("v", `k${String(i).padStart(2, "0")}`, rec(i));
    assert.equal(c.entries, 10);
    // k00..k04 are read: they get a second chance; k05.. are evicted first.
    for (let i = 0; i < 5; i++) c.lookup("v", `k0${i}`);
    for (let i = 10; i < 15; i++) c.put("v", `k${i}`, rec(i));
    assert.equal(c.entries, 10);
    assert.ok(c.bytes <= size * 10);
    const held = (i: number) => c.lookup("v", `k${String(i).padStart(2, "0")}`) !== NOT_CACHED;
    assert.deepEqual(
      Array.from({ length: 15 }, (_, i) => held(i)),
      [true, true, true, true, true, false, false, false, false, false, true, true, true, true, true],
    );
  });

  it("keeps evicting correctly through many puts, forgets and re-puts (ring integrity)", () => {
    const c = new OnlineReadCache(entryBytes("key-000", rec(1)) * 50);
    const model = new Map<string, number>();
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let step = 0; step < 20_000; step++) {
      const key = `key-${String(rnd(200)).padStart(3, "0")}`;
      const op = rnd(10);
      if (op < 6) {
        c.put("v", key, rec(step));
        model.set(key, step);
      } else if (op < 8) {
        c.forget("v", key);
        model.delete(key);
      } else if (op < 9) {
        const got = c.lookup("v", key);
        // Anything held is what was put last; eviction may have dropped it.
        if (got !== NOT_CACHED) assert.equal(got?.eventTime, model.get(key));
      } else if (rnd(50) === 0) {
        c.forgetView("v");
        model.clear();
      }
      assert.ok(c.entries <= 50 && c.bytes <= entryBytes("key-000", rec(1)) * 50);
    }
    let counted = 0;
    for (const key of model.keys()) if (c.lookup("v", key) !== NOT_CACHED) counted++;
    assert.equal(counted, c.entries, "every held entry is reachable and counted once");
  });

  it("does not cache a row larger than an eighth of the budget", () => {
    const c = new OnlineReadCache(4096);
    c.put("v", "big", rec(1, `[${"1,".repeat(400)}1]`));
    assert.equal(c.lookup("v", "big"), NOT_CACHED);
    assert.equal(c.entries, 0);
  });
});
