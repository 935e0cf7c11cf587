// The SQLite online store with its read cache answers exactly what the same store without
// one answers over the reader connection (the reference: the uncached code path), through
// every kind of write: the store's own, any SQL on the writer connection, transactions
// committed or rolled back while reads go on (a sliced upload), deletes, and writes by
// another connection to the file. A real SQLite file in WAL mode, as the service opens it.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, afterEach, beforeEach, describe, it } from "node:test";
import Database from "better-sqlite3";
import { openSqlite } from "../../lib/db.js";
import { SqliteOnlineStore, type OnlineRecord } from "./online-store.js";
import * as schema from "./schema.js";
import type { CheckedRow } from "./types.js";

const MIGRATIONS = new URL("./migrations", import.meta.url).pathname;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const row = (entityKey: string, eventTime: number, values: unknown[]): CheckedRow => ({ entityKey, eventTime, valuesJson: JSON.stringify(values) });
const plain = (r: OnlineRecord | undefined) => (r ? { eventTime: r.eventTime, valuesJson: r.valuesJson } : undefined);

/** The service's layout: a writer, a read-only reader, and the cached store over both. */
function openFile(cacheBytes = 1 << 20) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-online-cache-"));
  dirs.push(dir);
  const handle = openSqlite({ dataDir: dir, file: "features.db", schema, migrationsFolder: MIGRATIONS });
  const reader = new Database(handle.path, { readonly: true, fileMustExist: true });
  const cached = new SqliteOnlineStore(handle.sqlite, reader, { cacheBytes });
  const reference = new SqliteOnlineStore(handle.sqlite, reader);
  return {
    writer: handle.sqlite,
    path: handle.path,
    cached,
    reference,
    /** Read through both stores; the cached answer must equal the reference. */
    async read(view: string, keys: string[]) {
      const got = (await cached.readMany(view, keys)).map(plain);
      assert.deepEqual(got, (await reference.readMany(view, keys)).map(plain));
      return got;
    },
    async close() {
      await cached.close();
      reader.close();
      handle.close();
    },
  };
}

type Fixture = ReturnType<typeof openFile>;

describe("SqliteOnlineStore read cache", () => {
  let f: Fixture;
  beforeEach(() => {
    f = openFile();
  });
  afterEach(async () => f.close());

  it("serves repeated reads from the cache and sees every newer write; a late row does not win", async () => {
    await f.cached.writeLatest("v", [row("1", 2000, [1])], 1);
    assert.deepEqual(await f.read("v", ["1"]), [{ eventTime: 2000, valuesJson: "[1]" }]);
    assert.deepEqual(await f.read("v", ["1"]), [{ eventTime: 2000, valuesJson: "[1]" }]);
    assert.equal(f.cached.cacheStats!.hits, 1);
    await f.cached.writeLatest("v", [row("1", 3000, [2])], 2);
    assert.deepEqual(await f.read("v", ["1"]), [{ eventTime: 3000, valuesJson: "[2]" }]);
    assert.equal(await f.cached.writeLatest("v", [row("1", 1000, [0])], 3), 0);
    assert.deepEqual(await f.read("v", ["1"]), [{ eventTime: 3000, valuesJson: "[2]" }]);
    // An equal event time replaces the row, as without the cache.
    await f.cached.writeLatest("v", [row("1", 3000, [3])], 4);
    assert.deepEqual(await f.read("v", ["1"]), [{ eventTime: 3000, valuesJson: "[3]" }]);
  });

  it("remembers that an entity has no row until one is written", async () => {
    assert.deepEqual(await f.read("v", ["9"]), [undefined]);
    assert.deepEqual(await f.read("v", ["9"]), [undefined]);
    assert.equal(f.cached.cacheStats!.hits, 1);
    await f.cached.writeLatest("v", [row("9", 1, ["x"])], 1);
    assert.deepEqual(await f.read("v", ["9"]), [{ eventTime: 1, valuesJson: '["x"]' }]);
  });

  it("sees writes by any SQL on the writer connection, not only the store's own", async () => {
    await f.cached.writeLatest("v", [row("1", 1, [1]), row("2", 1, [2]), row("3", 1, [3])], 1);
    await f.read("v", ["1", "2", "3"]);
    f.writer.prepare("UPDATE online_rows SET values_json = '[10]', event_time = 5 WHERE view = 'v' AND entity_key = '1'").run();
    f.writer.prepare("DELETE FROM online_rows WHERE view = 'v' AND entity_key = '2'").run();
    f.writer.prepare("UPDATE online_rows SET entity_key = '4' WHERE view = 'v' AND entity_key = '3'").run();
    f.writer.prepare("INSERT OR REPLACE INTO online_rows VALUES ('v', '4', 9, 9, '[40]')").run();
    assert.deepEqual(await f.read("v", ["1", "2", "3", "4"]), [{ eventTime: 5, valuesJson: "[10]" }, undefined, undefined, { eventTime: 9, valuesJson: "[40]" }]);
  });

  it("never shows a write of a transaction still open; shows it once committed (a sliced upload)", async () => {
    await f.cached.writeLatest("v", [row("1", 1, ["old"]), row("2", 1, ["old"])], 1);
    await f.read("v", ["1", "2"]);
    // As BulkIngestor.commit: one transaction on the writer, merged from staging by SQL,
    // with reads served between its slices.
    f.writer.exec("BEGIN IMMEDIATE");
    f.writer.prepare("INSERT INTO online_rows VALUES ('v', '1', 2, 2, '[\"new\"]') ON CONFLICT (view, entity_key) DO UPDATE SET values_json = excluded.values_json, event_time = excluded.event_time").run();
    assert.deepEqual(await f.read("v", ["1"]), [{ eventTime: 1, valuesJson: '["old"]' }]);
    assert.deepEqual(await f.read("v", ["1", "2", "3"]), [{ eventTime: 1, valuesJson: '["old"]' }, { eventTime: 1, valuesJson: '["old"]' }, undefined]);
    f.writer.prepare("INSERT INTO online_rows VALUES ('v', '3', 2, 2, '[\"new\"]')").run();
    assert.deepEqual(await f.read("v", ["3"]), [undefined]);
    f.writer.exec("COMMIT");
    assert.deepEqual(await f.read("v", ["1", "2", "3"]), [{ eventTime: 2, valuesJson: '["new"]' }, { eventTime: 1, valuesJson: '["old"]' }, { eventTime: 2, valuesJson: '["new"]' }]);
  });

  it("keeps the committed value when a transaction rolls back", async () => {
    await f.cached.writeLatest("v", [row("1", 1, ["old"])], 1);
    await f.read("v", ["1"]);
    f.writer.exec("BEGIN IMMEDIATE");
    f.writer.prepare("UPDATE online_rows SET values_json = '[\"gone\"]' WHERE entity_key = '1'").run();
    await f.read("v", ["1"]);
    f.writer.exec("ROLLBACK");
    assert.deepEqual(await f.read("v", ["1"]), [{ eventTime: 1, valuesJson: '["old"]' }]);
  });

  it("sees a commit made just before another transaction opens, with no read between", async () => {
    await f.cached.writeLatest("v", [row("1", 1, ["a"])], 1);
    await f.read("v", ["1"]);
    await f.cached.writeLatest("v", [row("1", 2, ["b"])], 2);
    f.writer.exec("BEGIN IMMEDIATE");
    f.writer.prepare("INSERT INTO online_rows VALUES ('v', '2', 1, 1, '[1]')").run();
    assert.deepEqual(await f.read("v", ["1"]), [{ eventTime: 2, valuesJson: '["b"]' }]);
    // Key 2 is written in the open transaction: cached as "no row" now, forgotten at COMMIT.
    assert.deepEqual(await f.read("v", ["2"]), [undefined]);
    f.writer.exec("COMMIT");
    assert.deepEqual(await f.read("v", ["1", "2"]), [{ eventTime: 2, valuesJson: '["b"]' }, { eventTime: 1, valuesJson: "[1]" }]);
  });

  it("forgets a deleted view, also one too large to list key by key", async () => {
    const many = Array.from({ length: 6000 }, (_, i) => row(String(i), 1, [i]));
    await f.cached.writeLatest("big", many, 1);
    await f.cached.writeLatest("small", [row("1", 1, [1])], 1);
    await f.read("big", ["0", "5999"]);
    await f.read("small", ["1"]);
    await f.cached.deleteView("big");
    assert.deepEqual(await f.read("big", ["0", "5999"]), [undefined, undefined]);
    assert.deepEqual(await f.read("small", ["1"]), [{ eventTime: 1, valuesJson: "[1]" }]);
    // More changed keys than are listed: the view is dropped whole, and still exact.
    await f.read("big", ["1", "2"]);
    await f.cached.writeLatest("big", many.map((r) => ({ ...r, eventTime: 2 })), 2);
    assert.deepEqual(await f.read("big", ["1", "2"]), [{ eventTime: 2, valuesJson: "[1]" }, { eventTime: 2, valuesJson: "[2]" }]);
  });

  it("is emptied when another connection writes the file (another process)", async () => {
    await f.cached.writeLatest("v", [row("1", 1, ["mine"])], 1);
    await f.read("v", ["1", "2"]);
    const other = new Database(f.path);
    try {
      other.prepare("UPDATE online_rows SET values_json = '[\"theirs\"]' WHERE entity_key = '1'").run();
      other.prepare("INSERT INTO online_rows VALUES ('v', '2', 1, 1, '[2]')").run();
      assert.deepEqual(await f.read("v", ["1", "2"]), [{ eventTime: 1, valuesJson: '["theirs"]' }, { eventTime: 1, valuesJson: "[2]" }]);
      assert.equal(f.cached.cacheStats!.flushes, 1);
      // A write of its own to another table still empties it: nothing says what changed.
      other.exec("CREATE TABLE IF NOT EXISTS scratch (x); INSERT INTO scratch VALUES (1)");
      await f.read("v", ["1"]);
      assert.equal(f.cached.cacheStats!.flushes, 2);
    } finally {
      other.close();
    }
  });

  it("answers batches with hits, misses, repeats and unknown keys in key order", async () => {
    await f.cached.writeLatest("v", [row("7", 100, [7]), row('["7"]', 200, ["json"]), row("007", 300, ["zeros"])], 1);
    await f.read("v", ["7"]);
    await f.read("v", ["nope"]);
    const got = await f.read("v", ["nope", "7", "007", "7", '["7"]', "nope", "x"]);
    assert.deepEqual(got.map((r) => r?.valuesJson), [undefined, "[7]", '["zeros"]', "[7]", '["json"]', undefined, undefined]);
    assert.deepEqual(await f.read("v", ["007", "x"]), [{ eventTime: 300, valuesJson: '["zeros"]' }, undefined]);
  });

  it("drops its triggers when closed", async () => {
    const triggers = () => f.writer.prepare("SELECT count(*) FROM sqlite_temp_master WHERE type = 'trigger'").pluck().get();
    assert.equal(triggers(), 4);
    await f.cached.close();
    assert.equal(triggers(), 0);
  });
});

describe("SqliteOnlineStore read cache on one connection (reads see its open transaction)", () => {
  it("never caches what a transaction may roll back", async () => {
    const handle = openSqlite({ dataDir: "", file: ":memory:", schema, migrationsFolder: MIGRATIONS });
    const store = new SqliteOnlineStore(handle.sqlite, handle.sqlite, { cacheBytes: 1 << 20 });
    try {
      await store.writeLatest("v", [row("1", 1, ["old"])], 1);
      assert.equal((await store.readMany("v", ["1"]))[0]?.valuesJson, '["old"]');
      handle.sqlite.exec("BEGIN");
      await store.writeLatest("v", [row("1", 2, ["tx"])], 2);
      assert.equal((await store.readMany("v", ["1"]))[0]?.valuesJson, '["tx"]', "the connection sees its own write");
      assert.equal((await store.readMany("v", ["2"]))[0], undefined);
      handle.sqlite.exec("ROLLBACK");
      assert.equal((await store.readMany("v", ["1"]))[0]?.valuesJson, '["old"]');
      await store.writeLatest("v", [row("1", 3, ["new"])], 3);
      assert.equal((await store.readMany("v", ["1"]))[0]?.valuesJson, '["new"]');
      assert.equal((await store.readMany("v", ["1"]))[0]?.valuesJson, '["new"]');
      assert.ok(store.cacheStats!.hits >= 1);
    } finally {
      await store.close();
      handle.close();
    }
  });
});

describe("SqliteOnlineStore read cache, randomized against the uncached store", () => {
  it("answers every read as the uncached store does through mixed writes, transactions and evictions", async () => {
    // A budget of a few dozen entries, so eviction runs all the time.
    const f = openFile(6000);
    const other = new Database(f.path);
    let seed = 42;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const key = () => String(rnd(60));
    const views = ["a", "b"];
    let inTx = false;
    try {
      for (let step = 0; step < 4000; step++) {
        const view = views[rnd(2)]!;
        const op = rnd(100);
        if (op < 45) {
          const keys = Array.from({ length: 1 + (rnd(4) === 0 ? rnd(8) : 0) }, key);
          await f.read(view, keys);
        } else if (op < 70) {
          if (inTx) f.writer.prepare("INSERT INTO online_rows VALUES (?, ?, ?, 0, ?) ON CONFLICT (view, entity_key) DO UPDATE SET event_time = excluded.event_time, values_json = excluded.values_json WHERE excluded.event_time >= online_rows.event_time").run(view, key(), rnd(1000), `[${step}]`);
          else await f.cached.writeLatest(view, [row(key(), rnd(1000), [step])], step);
        } else if (op < 75 && !inTx) {
          f.writer.exec("BEGIN IMMEDIATE");
          inTx = true;
        } else if (op < 80 && inTx) {
          f.writer.exec(rnd(3) === 0 ? "ROLLBACK" : "COMMIT");
          inTx = false;
        } else if (op < 83 && !inTx) {
          other.prepare("INSERT OR REPLACE INTO online_rows VALUES (?, ?, ?, 0, ?)").run(view, key(), rnd(1000), `["other ${step}"]`);
        } else if (op < 85) {
          f.writer.prepare("DELETE FROM online_rows WHERE view = ? AND entity_key = ?").run(view, key());
        } else if (op < 86 && !inTx) {
          await f.cached.deleteView(view);
        }
      }
      if (inTx) f.writer.exec("COMMIT");
      for (const view of views) await f.read(view, Array.from({ length: 60 }, (_, i) => String(i)));
      const stats = f.cached.cacheStats!;
      assert.ok(stats.hits > 100 && stats.bytes <= 6000, `hits ${stats.hits}, bytes ${stats.bytes}`);
    } finally {
      other.close();
      await f.close();
    }
  });
});
