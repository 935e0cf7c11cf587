// Keeps OnlineReadCache equal to what the store's reader connection would answer: after a
// committed change to online_rows the changed keys are forgotten before the next read,
// and an uncommitted change is never cached. Works for every writer of the table:
//  - this process's writer connection (ingest, uploads, materialization, deletes, any SQL):
//    TEMP triggers on that connection report each changed (view, key) as it is written;
//    they are per-connection and never stored in the file. The keys wait in `dirty` until
//    a commit makes them visible to the reader, which its `PRAGMA data_version` shows
//    (it moves on every commit made by another connection, and the reader never writes);
//  - any other connection to the file (another process, a CLI): it moves the writer's
//    own data_version, which this connection's commits leave alone; as nothing says what
//    it changed, the whole cache goes.
// Cost: one `PRAGMA data_version` per read (~1 µs), a second only after a commit; and the
// triggers, ~1 µs per online row written (a 10,000-row upload slice merged online in 41 ms
// instead of 31; bench/features-online-cache.ts measures it). MLMESH_FEATURES_ONLINE_CACHE_MB=0
// installs none of this.

import type Database from "better-sqlite3";
import type { OnlineReadCache } from "./online-cache.js";

/** Keys remembered per view before its whole cache is dropped instead (a large upload). */
const MAX_DIRTY_KEYS_PER_VIEW = 4096;
/** `dirty` mark for a view whose keys were too many to list. */
const EVERY_KEY = "every key" as const;

let instances = 0;

export class OnlineCacheSync {
  /** Changed but perhaps not yet visible to the reader: forgotten again at each commit until none is in progress. */
  private readonly dirty = new Map<string, Set<string> | typeof EVERY_KEY>();
  private readonly readerVersion: Database.Statement;
  private readonly writerVersion: Database.Statement;
  private readerSeen: unknown;
  private writerSeen: unknown;
  private readonly triggers: string[];

  constructor(
    private readonly writer: Database.Database,
    private readonly reader: Database.Database,
    private readonly cache: OnlineReadCache,
  ) {
    // Names unique per instance: two stores on one connection (tests) each get their own.
    const id = ++instances;
    const fn = `mlmesh_online_changed_${id}`;
    writer.function(fn, { deterministic: false }, (view: string, key: string) => {
      this.changed(view, key);
      return null;
    });
    // The UPDATE OF trigger fires only when a statement sets the key columns (never in
    // the store's upserts), so the common update pays for one trigger, not two.
    const create: Array<[string, string]> = [
      [`mlmesh_online_cache_${id}_ins`, `AFTER INSERT ON main.online_rows BEGIN SELECT ${fn}(NEW.view, NEW.entity_key); END`],
      [`mlmesh_online_cache_${id}_upd`, `AFTER UPDATE ON main.online_rows BEGIN SELECT ${fn}(NEW.view, NEW.entity_key); END`],
      [`mlmesh_online_cache_${id}_rekey`, `AFTER UPDATE OF view, entity_key ON main.online_rows BEGIN SELECT ${fn}(OLD.view, OLD.entity_key); END`],
      [`mlmesh_online_cache_${id}_del`, `AFTER DELETE ON main.online_rows BEGIN SELECT ${fn}(OLD.view, OLD.entity_key); END`],
    ];
    for (const [name, body] of create) writer.exec(`CREATE TEMP TRIGGER ${name} ${body}`);
    this.triggers = create.map(([name]) => name);
    this.readerVersion = reader.prepare("PRAGMA data_version").pluck();
    this.writerVersion = writer.prepare("PRAGMA data_version").pluck();
    this.readerSeen = this.readerVersion.get();
    this.writerSeen = this.writerVersion.get();
  }

  /** Mark every key of `view` changed (before a statement that deletes the view's rows). */
  changedView(view: string): void {
    this.dirty.set(view, EVERY_KEY);
  }

  /**
   * Bring the cache up to what the reader sees now; run right before using it, in the same
   * synchronous stretch as the lookups. False: read around the cache this time (the reader
   * is the writer and a transaction is open, so the reader sees uncommitted rows).
   */
  sync(): boolean {
    if (this.reader === this.writer) return this.syncShared();
    const v = this.readerVersion.get();
    if (v === this.readerSeen) return true;
    this.readerSeen = v;
    this.checkOtherWriters();
    // Keys written inside a transaction still open may become visible with a later commit:
    // forgotten now (an earlier commit may hold some of them), kept for that commit.
    this.forgetDirty(!this.writer.inTransaction);
    return true;
  }

  /** Drop the triggers; the cache is no longer used. */
  close(): void {
    if (!this.writer.open) return;
    for (const name of this.triggers) this.writer.exec(`DROP TRIGGER IF EXISTS temp.${name}`);
  }

  /** One connection reads and writes: it sees its own writes at once, committed or not. */
  private syncShared(): boolean {
    this.checkOtherWriters();
    const open = this.writer.inTransaction;
    if (this.dirty.size > 0) this.forgetDirty(!open);
    // Inside a transaction a read may see rows a rollback will take back: cache none.
    return !open;
  }

  private checkOtherWriters(): void {
    const w = this.writerVersion.get();
    if (w === this.writerSeen) return;
    this.writerSeen = w;
    this.cache.clear();
    this.cache.flushes++;
  }

  private forgetDirty(done: boolean): void {
    for (const [view, keys] of this.dirty) {
      if (keys === EVERY_KEY) this.cache.forgetView(view);
      else if (this.cache.holdsView(view)) for (const key of keys) this.cache.forget(view, key);
    }
    if (done) this.dirty.clear();
  }

  /** From the triggers, for each row written (insert, update, delete) on the writer connection. */
  private changed(view: string, key: string): void {
    let keys = this.dirty.get(view);
    if (keys === EVERY_KEY) return;
    if (keys === undefined) {
      keys = new Set();
      this.dirty.set(view, keys);
    }
    keys.add(key);
    if (keys.size > MAX_DIRTY_KEYS_PER_VIEW) this.dirty.set(view, EVERY_KEY);
  }
}
