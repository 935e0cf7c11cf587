// Benchmark (not a test): the in-process cost of one-entity online reads on the SQLite
// online store, the features step of every router Predict, with and without the store's
// read cache: readMany of 1 key cycling over 1,000 distinct entities (20 float64 features,
// as in bench:mesh), the same through OnlineReader.read (lookup + decode + evaluate), a
// 100-key readMany, and what the cache's change tracking adds to each online row written.
// On a file database with the service's two connections (writer + read-only reader).
// Run: node --import tsx bench/features-online-cache.ts [--reps N]

import Database from "better-sqlite3";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { openSqlite } from "../lib/db.js";
import { createFeatureMetrics } from "../services/features/metrics.js";
import { SqliteOnlineStore } from "../services/features/online-store.js";
import { OnlineReader, ReadPlanner } from "../services/features/reads.js";
import * as schema from "../services/features/schema.js";
import type { DefinitionStore } from "../services/features/store.js";
import { TransformRegistry } from "../services/features/transforms.js";
import type { CheckedRow, StoredView } from "../services/features/types.js";

const ENTITIES = 1000;
const FEATURES = 20;
const READS = 200_000;
const WRITE_ROWS = 20_000;
const repsAt = process.argv.indexOf("--reps");
const REPS = repsAt > 0 ? Number(process.argv[repsAt + 1]) : 5;
const VIEW = "bench_users";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-bench-online-cache-"));
const handle = openSqlite({ dataDir: dir, file: "features.db", schema, migrationsFolder: new URL("../services/features/migrations", import.meta.url).pathname });
const reader = new Database(handle.path, { readonly: true, fileMustExist: true });

const now = Date.now();
const valuesOf = (i: number) => JSON.stringify(Array.from({ length: FEATURES }, (_, j) => i + j / 7 + 0.123456789));
const rows: CheckedRow[] = Array.from({ length: ENTITIES }, (_, i) => ({ entityKey: `u${i}`, eventTime: now - 1000, valuesJson: valuesOf(i) }));
const keys = rows.map((r) => r.entityKey);

// A store per variant over the same two connections; the uncached one is the baseline.
const uncached = new SqliteOnlineStore(handle.sqlite, reader, { cacheBytes: 0 });
const cached = new SqliteOnlineStore(handle.sqlite, reader, { cacheBytes: 64 << 20 });
await uncached.writeLatest(VIEW, rows, now);

const view: StoredView = {
  name: VIEW,
  entities: [{ name: "user_id", type: "string", description: "" }],
  features: Array.from({ length: FEATURES }, (_, j) => ({ name: `f${j}`, type: "float64" as const, vectorDimension: 0, pii: false, description: "", labels: {} })),
  ttlMs: 3650 * 86_400_000,
  description: "",
  owner: "",
  labels: {},
  onDemand: [],
  requestFields: [],
  version: 1,
  createTime: now,
  updateTime: now,
};
const defs = { view: (n: string) => (n === VIEW ? view : undefined), onChange: () => {} } as unknown as DefinitionStore;
const plan = new ReadPlanner(defs, new TransformRegistry()).plan(view.features.map((f) => `${VIEW}:${f.name}`), "");
const limits = { maxEntitiesPerRead: 10_000, maxHistoricalRows: 1_000_000 };
const readerOf = (store: SqliteOnlineStore) => new OnlineReader(store, createFeatureMetrics(new Registry(), Date.now), limits);
const entities = keys.map((k) => ({ keys: { user_id: k }, request: undefined }));
const batches = Array.from({ length: 10 }, (_, b) => keys.slice(b * 100, b * 100 + 100));

/** ns per operation of `n` calls of `op(i)`. */
async function nsPer(n: number, op: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await op(i);
  return Number(process.hrtime.bigint() - t0) / n;
}

type Variant = { name: string; store: SqliteOnlineStore; online: OnlineReader };
const variants: Variant[] = [
  { name: "uncached", store: uncached, online: readerOf(uncached) },
  { name: "cached", store: cached, online: readerOf(cached) },
];
const results = new Map<string, number[]>();
const note = (k: string, ns: number) => results.set(k, [...(results.get(k) ?? []), ns]);
const empty = {};

for (let rep = 0; rep < REPS; rep++) {
  // Variants interleaved, so a change of the machine's load hits both alike.
  for (const v of variants) {
    note(`${v.name}  readMany 1 key`, await nsPer(READS, (i) => v.store.readMany(VIEW, [keys[i % ENTITIES]!])));
    note(`${v.name}  OnlineReader.read 1 entity`, await nsPer(READS, (i) => v.online.read(plan, [entities[i % ENTITIES]!], empty, now)));
    note(`${v.name}  readMany 100 keys`, await nsPer(READS / 100, (i) => v.store.readMany(VIEW, batches[i % batches.length]!)));
  }
}

// Writes: every online row written fires the cache's change tracking while a cached store
// is open on the connection; the uncached store alone installs none.
const writes = Array.from({ length: WRITE_ROWS }, (_, i) => ({ entityKey: `w${i}`, eventTime: now, valuesJson: valuesOf(i) }));
const writeNs = async (store: SqliteOnlineStore) => {
  await store.deleteView("bench_writes");
  const t0 = process.hrtime.bigint();
  await store.writeLatest("bench_writes", writes, now);
  return Number(process.hrtime.bigint() - t0) / WRITE_ROWS;
};
const tracked: number[] = [];
for (let rep = 0; rep < REPS; rep++) tracked.push(await writeNs(cached));
await cached.close();
const untracked: number[] = [];
for (let rep = 0; rep < REPS; rep++) untracked.push(await writeNs(uncached));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (xs: number[]) => `median ${Math.round(median(xs))} ns  (min ${Math.round(Math.min(...xs))}, ${xs.length} runs)`;
console.log(`online read cache bench: ${ENTITIES} entities x ${FEATURES} float64 features, ${READS} reads per run, load ${os.loadavg()[0]!.toFixed(2)} on ${os.cpus().length} cores`);
for (const [k, xs] of results) console.log(`  ${k.padEnd(40)} ${fmt(xs)}`);
console.log(`  ${"writeLatest per row, no cache open".padEnd(40)} ${fmt(untracked)}`);
console.log(`  ${"writeLatest per row, cache tracking".padEnd(40)} ${fmt(tracked)}`);

await uncached.close();
reader.close();
handle.close();
fs.rmSync(dir, { recursive: true, force: true });
