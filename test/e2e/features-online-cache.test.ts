// The SQLite online store's read cache (on by default) through the real `mlmesh serve
// features` process and gRPC: every read after a write answers what the write left,
// whichever path wrote (WriteFeatures, IngestFeatures small and sliced, materialization,
// DeleteFeatureView, another process writing the file), a read during a sliced upload
// sees all of it or none, TTL is judged at read time, and /metrics counts the hits.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { ingestFile } from "../../cli/features-command.js";
import { FeatureStatus, MaterializationState, type FeatureValue } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { ConfigError } from "../../lib/config-read.js";
import { loadConfig } from "../../lib/config.js";
import { readFeaturesConfig } from "../../lib/config-features.js";
import { createMeshClients } from "../../lib/mesh-clients.js";
import { sampleValue } from "../support/metrics-scrape.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const ts = timestampFromMs;
const i64 = (value: number) => ({ kind: { case: "int64Value" as const, value: BigInt(value) } });
const f64 = (value: number) => ({ kind: { case: "doubleValue" as const, value } });
const str = (value: string) => ({ kind: { case: "stringValue" as const, value } });
const user = (id: number) => ({ keys: { user_id: i64(id) } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SECOND = 1000;

function plain(v: FeatureValue) {
  const k = v.value?.kind;
  return k?.case ? k.value : FeatureStatus[v.status];
}

const view = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  entities: [{ name: "user_id", type: ValueType.INT64 }],
  features: [
    { name: "score", type: ValueType.FLOAT64 },
    { name: "tag", type: ValueType.STRING },
  ],
  ...extra,
});

describe("features: the online read cache keeps reads exact", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let client: Client<typeof FeatureService>;
  /** `mlmesh features ingest VIEW FILE`: the CLI's upload over IngestFeatures. */
  let ingest: (name: string, file: string) => Promise<unknown>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-online-cache-"));
  const base = Date.now() - 3_600_000;

  const read = async (name: string, ids: number[], features = ["score", "tag"]) => {
    const res = await client.getOnlineFeatures({ entities: ids.map(user), refs: features.map((f) => `${name}:${f}`) });
    return res.rows.map((r) => r.values.map(plain));
  };
  const row = (id: number, t: number, score: number, tag: string) => ({ entityKey: user(id), eventTime: ts(t), values: [f64(score), str(tag)] });
  const csv = (name: string, lines: string[]) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, `${lines.join("\n")}\n`);
    return file;
  };
  const cacheHits = async () => {
    const text = await (await fetch(`${proc.endpoint("features").http}/metrics`)).text();
    return sampleValue(text, "mlmesh_features_online_cache_lookups_total", 'result="hit"') ?? NaN;
  };

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(["serve", "features"], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
    client = createServiceClient(FeatureService, proc.endpoint("features").grpc);
    const features = createMeshClients(loadConfig({ MLMESH_FEATURES_ADDR: proc.endpoint("features").grpc })).features;
    ingest = (name, file) => ingestFile(features, name, file, { batch: 5000, requestId: "", offlineOnly: false, progress: false });
    await client.applyFeatureViews({ views: [view("cache_a")] });
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("serves repeated reads from the cache; a newer write is read at once, a late one never wins", async () => {
    await client.writeFeatures({ view: "cache_a", rows: [row(1, base + 2 * SECOND, 2, "two")] });
    const before = await cacheHits();
    for (let i = 0; i < 5; i++) assert.deepEqual(await read("cache_a", [1]), [[2, "two"]]);
    const after = await cacheHits();
    assert.ok(after - before >= 4, `hits ${before} -> ${after}`);
    await client.writeFeatures({ view: "cache_a", rows: [row(1, base + 3 * SECOND, 3, "three")] });
    assert.deepEqual(await read("cache_a", [1]), [[3, "three"]]);
    const late = await client.writeFeatures({ view: "cache_a", rows: [row(1, base + SECOND, 1, "late")] });
    assert.equal(late.onlineRowsUpdated, 0n);
    assert.deepEqual(await read("cache_a", [1]), [[3, "three"]]);
    // An entity read before it had a row is read again once it has one.
    assert.deepEqual(await read("cache_a", [2]), [["NOT_FOUND", "NOT_FOUND"]]);
    await client.writeFeatures({ view: "cache_a", rows: [row(2, base, 20, "new")] });
    assert.deepEqual(await read("cache_a", [1, 2]), [[3, "three"], [20, "new"]]);
  });

  it("judges TTL at read time: a cached value expires", async () => {
    await client.applyFeatureViews({ views: [view("cache_ttl", { ttl: { seconds: 2n } })] });
    const written = Date.now();
    await client.writeFeatures({ view: "cache_ttl", rows: [row(1, written, 1, "fresh")] });
    assert.deepEqual(await read("cache_ttl", [1]), [[1, "fresh"]]);
    assert.deepEqual(await read("cache_ttl", [1]), [[1, "fresh"]]);
    await sleep(written + 2 * SECOND + 300 - Date.now());
    assert.deepEqual(await read("cache_ttl", [1]), [["EXPIRED", "EXPIRED"]]);
  });

  it("reads a view's new feature after apply, and nothing of a deleted and re-created view", async () => {
    await client.applyFeatureViews({ views: [view("cache_b")] });
    await client.writeFeatures({ view: "cache_b", rows: [row(1, base, 1, "one")] });
    assert.deepEqual(await read("cache_b", [1]), [[1, "one"]]);
    const added = view("cache_b");
    added.features.push({ name: "clicks", type: ValueType.INT64 });
    await client.applyFeatureViews({ views: [added] });
    assert.deepEqual(await read("cache_b", [1], ["score", "tag", "clicks"]), [[1, "one", "NULL"]]);
    await client.writeFeatures({ view: "cache_b", rows: [{ entityKey: user(1), eventTime: ts(base + 1), values: [f64(1), str("one"), i64(7)] }] });
    assert.deepEqual(await read("cache_b", [1], ["score", "tag", "clicks"]), [[1, "one", 7n]]);

    await client.deleteFeatureView({ name: "cache_b", reason: "test" });
    await client.applyFeatureViews({ views: [view("cache_b")] });
    assert.deepEqual(await read("cache_b", [1]), [["NOT_FOUND", "NOT_FOUND"]]);
  });

  it("reads what IngestFeatures committed, a small upload and a sliced one; never half of a sliced one", async () => {
    await client.applyFeatureViews({ views: [view("cache_up")] });
    // Cached old values for the first and last entity of the uploads.
    const n = 25_000;
    const first = 300_000;
    const last = first + n - 1;
    await client.writeFeatures({ view: "cache_up", rows: [row(first, base, 0, "old"), row(last, base, 0, "old")] });
    assert.deepEqual(await read("cache_up", [first, last]), [[0, "old"], [0, "old"]]);

    const small = csv("small.csv", ["user_id,event_ts,score,tag", `${first},${base + 1},1,small`]);
    await ingest("cache_up", small);
    assert.deepEqual(await read("cache_up", [first, last]), [[1, "small"], [0, "old"]]);

    // More rows than one commit slice (10,000): the commit spans event-loop ticks.
    const lines = ["user_id,event_ts,score,tag"];
    for (let i = 0; i < n; i++) lines.push(`${first + i},${base + 10 + i},${i},big`);
    const big = csv("big.csv", lines);
    let done = false;
    let count = 0;
    const seen = new Set<string>();
    const reads = (async () => {
      while (!done) {
        const [a, b] = await read("cache_up", [first, last]);
        seen.add(`${a![1]}/${b![1]}`);
        count++;
      }
    })();
    try {
      await ingest("cache_up", big);
    } finally {
      done = true;
      await reads;
    }
    assert.ok(count > 5, `reads were served during the upload (${count})`);
    assert.deepEqual([...seen].filter((s) => s !== "small/old" && s !== "big/big"), [], `only all-old or all-new reads: ${[...seen].join(", ")}`);
    assert.deepEqual(await read("cache_up", [first, last]), [[0, "big"], [n - 1, "big"]]);
  });

  it("reads what a materialization job copied online", async () => {
    await client.applyFeatureViews({ views: [view("cache_mat")] });
    await client.writeFeatures({ view: "cache_mat", rows: [row(1, base, 1, "online")] });
    assert.deepEqual(await read("cache_mat", [1]), [[1, "online"]]);
    await client.writeFeatures({ view: "cache_mat", offlineOnly: true, rows: [row(1, base + 5 * SECOND, 5, "materialized")] });
    assert.deepEqual(await read("cache_mat", [1]), [[1, "online"]], "offline-only rows are not online yet");
    const { job } = await client.materialize({ views: ["cache_mat"], timeRange: { startTime: ts(base), endTime: ts(base + 60 * SECOND) } });
    for (const deadline = Date.now() + 30_000; ; ) {
      const { job: j } = await client.getMaterializationStatus({ jobId: job!.jobId });
      if (j!.state === MaterializationState.SUCCEEDED) break;
      assert.notEqual(j!.state, MaterializationState.FAILED, j!.error);
      assert.ok(Date.now() < deadline, "materialization did not finish");
      await sleep(50);
    }
    assert.deepEqual(await read("cache_mat", [1]), [[5, "materialized"]]);
  });

  it("reads a row another process wrote to the database file", async () => {
    await client.applyFeatureViews({ views: [view("cache_ext")] });
    await client.writeFeatures({ view: "cache_ext", rows: [row(1, base, 1, "served")] });
    assert.deepEqual(await read("cache_ext", [1]), [[1, "served"]]);
    assert.deepEqual(await read("cache_ext", [1]), [[1, "served"]]);
    const db = new Database(path.join(proc.dataDir, "features.db"));
    try {
      db.pragma("busy_timeout = 5000");
      db.prepare("UPDATE online_rows SET values_json = ?, event_time = ? WHERE view = 'cache_ext' AND entity_key = '1'").run('[9,"external"]', base + 9);
    } finally {
      db.close();
    }
    assert.deepEqual(await read("cache_ext", [1]), [[9, "external"]]);
  });
});

describe("MLMESH_FEATURES_ONLINE_CACHE_MB", () => {
  it("defaults to 64, accepts 0 (off) and refuses what is not a size", () => {
    assert.equal(readFeaturesConfig({}).onlineCacheMb, 64);
    assert.equal(readFeaturesConfig({ MLMESH_FEATURES_ONLINE_CACHE_MB: "0" }).onlineCacheMb, 0);
    assert.equal(readFeaturesConfig({ MLMESH_FEATURES_ONLINE_CACHE_MB: "512" }).onlineCacheMb, 512);
    for (const bad of ["-1", "1.5", "lots", "70000"]) {
      assert.throws(() => readFeaturesConfig({ MLMESH_FEATURES_ONLINE_CACHE_MB: bad }), (e: unknown) => e instanceof ConfigError && /MLMESH_FEATURES_ONLINE_CACHE_MB/.test(e.message));
    }
  });
});
