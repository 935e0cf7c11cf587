// The online store on Redis: one string per entity, `<event_time>|<values json>`, under
// `<prefix>{<view>}:<entity key>` (the hash tag keeps a view in one cluster slot, so a
// write's keys can go to one script). A Lua script merges a write atomically.

import { Redis } from "ioredis";
import { UnavailableError } from "../../lib/errors.js";
import type { OnlineRecord, OnlineStore } from "./online-store.js";
import type { CheckedRow } from "./types.js";

// KEYS: entity keys; ARGV: event time and payload per key, in pairs. Redis runs a script
// atomically, so the whole write is visible at once or not at all.
const MERGE_SCRIPT = `
local updated = 0
for i, key in ipairs(KEYS) do
  local t = tonumber(ARGV[2 * i - 1])
  local cur = redis.call('GET', key)
  local newer = true
  if cur then
    local sep = string.find(cur, '|', 1, true)
    if tonumber(string.sub(cur, 1, sep - 1)) > t then newer = false end
  end
  if newer then
    redis.call('SET', key, ARGV[2 * i - 1] .. '|' .. ARGV[2 * i])
    updated = updated + 1
  end
end
return updated
`;

type MergeRedis = Redis & { mlmeshMerge(numKeys: number, ...args: string[]): Promise<number> };

export class RedisOnlineStore implements OnlineStore {
  readonly kind = "redis" as const;
  private readonly redis: MergeRedis;

  private constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    redis.defineCommand("mlmeshMerge", { lua: MERGE_SCRIPT });
    this.redis = redis as MergeRedis;
  }

  /** Connect and check the server answers; UNAVAILABLE naming the URL otherwise. */
  static async connect(url: string, prefix: string): Promise<RedisOnlineStore> {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2, enableOfflineQueue: true, connectTimeout: 3000 });
    try {
      await redis.connect();
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      throw new UnavailableError(`cannot reach Redis at ${url} (${(err as Error).message}); start it or fix MLMESH_REDIS_URL`);
    }
    return new RedisOnlineStore(redis, prefix);
  }

  private viewPrefix(view: string): string {
    return `${this.prefix}{${view}}:`;
  }

  async writeLatest(view: string, rows: readonly CheckedRow[], _writeTime: number): Promise<number> {
    if (rows.length === 0) return 0;
    const p = this.viewPrefix(view);
    const args = new Array<string>(rows.length * 3);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      args[i] = p + r.entityKey;
      args[rows.length + 2 * i] = String(r.eventTime);
      args[rows.length + 2 * i + 1] = r.valuesJson;
    }
    return this.call(() => this.redis.mlmeshMerge(rows.length, ...args));
  }

  async readMany(view: string, keys: readonly string[]): Promise<Array<OnlineRecord | undefined>> {
    if (keys.length === 0) return [];
    const p = this.viewPrefix(view);
    const full = new Array<string>(keys.length);
    for (let i = 0; i < keys.length; i++) full[i] = p + keys[i];
    const raw = await this.call(() => this.redis.mget(full));
    const out = new Array<OnlineRecord | undefined>(keys.length);
    for (let i = 0; i < raw.length; i++) {
      const s = raw[i];
      if (s == null) {
        out[i] = undefined;
        continue;
      }
      const sep = s.indexOf("|");
      out[i] = { eventTime: Number(s.slice(0, sep)), valuesJson: s.slice(sep + 1) };
    }
    return out;
  }

  private async *scanView(view: string): AsyncGenerator<string[]> {
    const pattern = `${this.viewPrefix(view).replace(/[*?[\]\\]/g, "\\$&")}*`;
    const stream = this.redis.scanStream({ match: pattern, count: 1000 });
    for await (const keys of stream) yield keys as string[];
  }

  async deleteView(view: string): Promise<void> {
    for await (const keys of this.scanView(view)) if (keys.length) await this.call(() => this.redis.unlink(...keys));
  }

  async countEntities(view: string): Promise<number> {
    let n = 0;
    for await (const keys of this.scanView(view)) n += keys.length;
    return n;
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private async call<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw new UnavailableError(`online store (Redis) failed: ${(err as Error).message}`);
    }
  }
}
