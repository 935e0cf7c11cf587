// A bounded in-memory map of online records by view and entity key (also "no row"), kept
// by SqliteOnlineStore in front of its lookups. It only stores and forgets: when an entry
// must go because the table changed is decided by online-cache-sync.ts.
//
// Memory is bounded by an estimate of the bytes an entry holds. Eviction is CLOCK: a hit
// only sets a flag (no reordering on the read path); the hand sweeps the ring and evicts
// the first entry not used since its last pass. Entries of a view live in that view's own
// map, so a lookup needs no composite key string.

import type { OnlineRecord } from "./online-store.js";

interface Entry {
  readonly key: string;
  readonly map: Map<string, Entry>;
  /** undefined: the store has no row for this key. */
  readonly record: OnlineRecord | undefined;
  readonly bytes: number;
  used: boolean;
  prev: Entry;
  next: Entry;
}

/** What `lookup` answers for a key the cache does not hold. */
export const NOT_CACHED: unique symbol = Symbol("not cached");

/**
 * Rough heap cost of an entry: the record, its values JSON, the values decoded from it
 * (memoized on the record by the reader, see reads.ts), key and map slot.
 */
export function entryBytes(key: string, record: OnlineRecord | undefined): number {
  return 160 + 2 * key.length + (record ? 3 * record.valuesJson.length : 0);
}

export interface OnlineCacheStats {
  readonly hits: number;
  readonly misses: number;
  readonly entries: number;
  readonly bytes: number;
  /** Times the whole cache was dropped because another connection wrote the file. */
  readonly flushes: number;
}

export class OnlineReadCache implements OnlineCacheStats {
  private views = new Map<string, Map<string, Entry>>();
  /** The next entry the CLOCK hand looks at; new entries go just behind it. */
  private hand: Entry | undefined;
  hits = 0;
  misses = 0;
  entries = 0;
  bytes = 0;
  flushes = 0;

  /** `maxBytes`: the estimated size the entries may reach (entryBytes). */
  constructor(readonly maxBytes: number) {}

  /** The cached record (undefined: known to have no row), or NOT_CACHED; counts hit or miss. */
  lookup(view: string, key: string): OnlineRecord | undefined | typeof NOT_CACHED {
    const e = this.views.get(view)?.get(key);
    if (e === undefined) {
      this.misses++;
      return NOT_CACHED;
    }
    this.hits++;
    e.used = true;
    return e.record;
  }

  /** Remember what the store answered for `key`, evicting as needed to stay in budget. */
  put(view: string, key: string, record: OnlineRecord | undefined): void {
    const bytes = entryBytes(key, record);
    // One huge row (a long vector) must not empty the cache for itself.
    if (bytes > this.maxBytes / 8) return;
    let map = this.views.get(view);
    if (map === undefined) {
      map = new Map();
      this.views.set(view, map);
    } else {
      const old = map.get(key);
      if (old !== undefined) this.unlink(old);
    }
    while (this.bytes + bytes > this.maxBytes && this.hand !== undefined) {
      const h = this.hand;
      if (h.used) {
        h.used = false;
        this.hand = h.next;
      } else {
        this.unlink(h);
      }
    }
    const e = { key, map, record, bytes, used: false } as Entry;
    const h = this.hand;
    if (h === undefined) {
      e.prev = e;
      e.next = e;
      this.hand = e;
    } else {
      e.prev = h.prev;
      e.next = h;
      h.prev.next = e;
      h.prev = e;
    }
    map.set(key, e);
    this.entries++;
    this.bytes += bytes;
  }

  /** Forget one key of a view. */
  forget(view: string, key: string): void {
    const e = this.views.get(view)?.get(key);
    if (e !== undefined) this.unlink(e);
  }

  /** Forget every key of a view. */
  forgetView(view: string): void {
    const map = this.views.get(view);
    if (map === undefined) return;
    for (const e of map.values()) this.unlink(e);
    this.views.delete(view);
  }

  /** Whether any key of `view` is held (invalidation can skip views with none). */
  holdsView(view: string): boolean {
    return (this.views.get(view)?.size ?? 0) > 0;
  }

  clear(): void {
    this.views = new Map();
    this.hand = undefined;
    this.entries = 0;
    this.bytes = 0;
  }

  private unlink(e: Entry): void {
    e.map.delete(e.key);
    this.entries--;
    this.bytes -= e.bytes;
    if (e.next === e) {
      this.hand = undefined;
      return;
    }
    e.prev.next = e.next;
    e.next.prev = e.prev;
    if (this.hand === e) this.hand = e.next;
  }
}
