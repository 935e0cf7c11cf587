// One behaviour, two stores: the same suite runs against the SQLite online store and the
// Redis one (a real server: MLMESH_REDIS_URL or redis://127.0.0.1:6379, with a key prefix
// unique to this run).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { openSqlite } from "../../lib/db.js";
import { SqliteOnlineStore, type OnlineStore } from "./online-store.js";
import { RedisOnlineStore } from "./redis-online-store.js";
import * as schema from "./schema.js";
import type { CheckedRow } from "./types.js";

const MIGRATIONS = new URL("./migrations", import.meta.url).pathname;
const REDIS_URL = process.env.MLMESH_REDIS_URL ?? "redis://127.0.0.1:6379";

const row = (entityKey: string, eventTime: number, values: unknown[]): CheckedRow => ({ entityKey, eventTime, valuesJson: JSON.stringify(values) });

function onlineStoreSuite(name: string, open: () => Promise<{ store: OnlineStore; close: () => Promise<void> }>) {
  describe(`online store: ${name}`, () => {
    let store: OnlineStore;
    let close: () => Promise<void>;
    before(async () => ({ store, close } = await open()));
    after(async () => close());

    it("answers undefined for entities it has never seen", async () => {
      assert.deepEqual(await store.readMany("v_empty", ["1", "2"]), [undefined, undefined]);
      assert.deepEqual(await store.readMany("v_empty", []), []);
    });

    it("keeps the newest row per entity: a late older row never overwrites it", async () => {
      assert.equal(await store.writeLatest("v1", [row("42", 2000, [1.5, 10]), row("43", 1000, [2.5, null])], 5000), 2);
      assert.equal(await store.writeLatest("v1", [row("42", 1000, [9.9, 99])], 5001), 0, "late row is not counted as updated");
      const [a, b, c] = await store.readMany("v1", ["42", "43", "44"]);
      assert.deepEqual(a, { eventTime: 2000, valuesJson: "[1.5,10]" });
      assert.deepEqual(b, { eventTime: 1000, valuesJson: "[2.5,null]" });
      assert.equal(c, undefined);
    });

    it("answers a batch in key order, with repeated, missing and look-alike keys", async () => {
      // The SQLite store reads a batch in one statement and maps rows back by position.
      await store.writeLatest("v_batch", [row("7", 100, [7]), row('["7"]', 200, ["json"]), row("007", 300, ["zeros"])], 1000);
      const got = await store.readMany("v_batch", ["nope", "7", "007", "7", '["7"]', "nope"]);
      assert.deepEqual(got.map((r) => r?.valuesJson), [undefined, "[7]", '["zeros"]', "[7]", '["json"]', undefined]);
      assert.equal(got.length, 6);
    });

    it("lets an equal event time replace the row (the later write wins, as offline)", async () => {
      assert.equal(await store.writeLatest("v1", [row("42", 2000, [3, 30])], 6000), 1);
      assert.deepEqual((await store.readMany("v1", ["42"]))[0], { eventTime: 2000, valuesJson: "[3,30]" });
    });

    it("merges several rows of one entity within one write by event time", async () => {
      const n = await store.writeLatest("v2", [row("k", 300, ["c"]), row("k", 100, ["a"]), row("k", 500, ["e"]), row("k", 400, ["d"])], 1);
      assert.equal(n, 2, "300 then 500 became newest; 100 and 400 were late");
      assert.deepEqual((await store.readMany("v2", ["k"]))[0], { eventTime: 500, valuesJson: '["e"]' });
    });

    it("keeps views apart, handles composite and odd keys, counts and deletes per view", async () => {
      const odd = JSON.stringify(["a|b", "c:d*{x}"]);
      await store.writeLatest("v3", [row(odd, 1, [1]), row("1", 1, [2])], 1);
      await store.writeLatest("v4", [row("1", 1, [3])], 1);
      assert.deepEqual((await store.readMany("v3", [odd, "1"])).map((r) => r?.valuesJson), ["[1]", "[2]"]);
      assert.equal(await store.countEntities("v3"), 2);
      await store.deleteView("v3");
      assert.deepEqual(await store.readMany("v3", [odd, "1"]), [undefined, undefined]);
      assert.equal(await store.countEntities("v3"), 0);
      assert.equal((await store.readMany("v4", ["1"]))[0]?.valuesJson, "[3]", "another view is untouched");
    });

    it("reads hundreds of entities in one call, in order", async () => {
      const rows = Array.from({ length: 500 }, (_, i) => row(String(i), 1000 + i, [i]));
      assert.equal(await store.writeLatest("v5", rows, 1), 500);
      const keys = Array.from({ length: 600 }, (_, i) => String(599 - i));
      const got = await store.readMany("v5", keys);
      got.forEach((r, i) => {
        const k = 599 - i;
        if (k >= 500) assert.equal(r, undefined);
        else assert.deepEqual(r, { eventTime: 1000 + k, valuesJson: `[${k}]` });
      });
    });
  });
}

onlineStoreSuite("sqlite", async () => {
  const handle = openSqlite({ dataDir: "", file: ":memory:", schema, migrationsFolder: MIGRATIONS });
  return { store: new SqliteOnlineStore(handle.sqlite), close: async () => handle.close() };
});

onlineStoreSuite("redis", async () => {
  const prefix = `mlmesh-test:${process.pid}:${Date.now()}:`;
  const store = await RedisOnlineStore.connect(REDIS_URL, prefix);
  return {
    store,
    close: async () => {
      for (const v of ["v1", "v2", "v3", "v4", "v5"]) await store.deleteView(v);
      await store.close();
    },
  };
});
