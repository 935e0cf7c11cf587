// The feature service through its public surface: the real `mlmesh serve features`
// process, a real NATS, gRPC clients. Definitions (idempotent apply, breaking changes),
// writes and online reads with every status, the point-in-time join against the pandas
// reference fixture, on-demand transforms equal on both paths, bad input, audit, events,
// metrics.

import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { FeatureViewAppliedSchema, type FeatureViewApplied } from "../../gen/mlmesh/events/v1/features_events_pb.js";
import { ApplyOutcome, FeatureStatus, type FeatureValue } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { JetStreamBus } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const HOUR = 3_600_000;
const ts = timestampFromMs;
const f64 = (value: number) => ({ kind: { case: "doubleValue" as const, value } });
const i64 = (value: number | bigint) => ({ kind: { case: "int64Value" as const, value: BigInt(value) } });
const str = (value: string) => ({ kind: { case: "stringValue" as const, value } });
const user = (id: number | string) => ({ keys: { user_id: typeof id === "number" ? i64(id) : str(id) } });
const ttl = (ms: number) => ({ seconds: BigInt(ms / 1000), nanos: 0 });

function rejectsWith(code: Code, pattern: RegExp) {
  return (e: unknown) => {
    const ce = ConnectError.from(e);
    assert.equal(Code[ce.code], Code[code], ce.rawMessage);
    assert.match(ce.rawMessage, pattern);
    return true;
  };
}

const userStats = (extra: Record<string, unknown> = {}) => ({
  name: "user_stats",
  entities: [{ name: "user_id", type: ValueType.INT64 }],
  features: [
    { name: "views_7d", type: ValueType.INT64 },
    { name: "spend_7d", type: ValueType.FLOAT64, pii: false },
  ],
  ttl: ttl(24 * HOUR),
  owner: "team-growth",
  ...extra,
});

function plain(v: FeatureValue) {
  const k = v.value?.kind;
  return { status: FeatureStatus[v.status], value: k?.case ? (typeof k.value === "object" ? k.value.values : k.value) : undefined };
}

describe("feature service", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let fs_: Client<typeof FeatureService>;

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(["serve", "features"], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
    fs_ = createServiceClient(FeatureService, proc.endpoint("features").grpc);
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
  });

  it("applies views idempotently, versions compatible changes and refuses breaking ones", async () => {
    const created = await fs_.applyFeatureViews({ views: [userStats()], reason: "first" });
    assert.equal(created.results[0]!.outcome, ApplyOutcome.CREATED);
    assert.equal(created.results[0]!.view!.version, 1n);

    const again = await fs_.applyFeatureViews({ views: [userStats()] });
    assert.equal(again.results[0]!.outcome, ApplyOutcome.UNCHANGED);
    assert.equal(again.results[0]!.view!.version, 1n);

    const added = userStats({ ttl: ttl(48 * HOUR) });
    (added.features as unknown[]).push({ name: "clicks_7d", type: ValueType.INT64 });
    const dry = await fs_.applyFeatureViews({ views: [added], validateOnly: true });
    assert.equal(dry.results[0]!.outcome, ApplyOutcome.UPDATED);
    assert.equal((await fs_.getFeatureView({ name: "user_stats" })).view!.version, 1n, "validate_only writes nothing");
    const updated = await fs_.applyFeatureViews({ views: [added] });
    assert.equal(updated.results[0]!.outcome, ApplyOutcome.UPDATED);
    assert.deepEqual(updated.results[0]!.changes, ["added feature clicks_7d", "ttl 1d -> 2d"]);
    assert.equal(updated.results[0]!.view!.version, 2n);

    const typeChange = userStats({ ttl: ttl(48 * HOUR) });
    (typeChange.features as Array<{ type: ValueType }>)[0]!.type = ValueType.FLOAT64;
    await assert.rejects(
      fs_.applyFeatureViews({ views: [typeChange] }),
      rejectsWith(Code.FailedPrecondition, /user_stats.*views_7d type int64 -> float64.*feature clicks_7d removed/),
    );
    await assert.rejects(
      fs_.applyFeatureViews({ views: [userStats({ entities: [{ name: "account_id", type: ValueType.INT64 }] })] }),
      rejectsWith(Code.FailedPrecondition, /entities \[user_id:int64\] -> \[account_id:int64\]/),
    );
    await assert.rejects(
      fs_.applyFeatureViews({ views: [{ name: "Bad-Name", entities: [{ name: "id" }], features: [] }] }),
      rejectsWith(Code.InvalidArgument, /^views\[0\]\.name: /),
    );
    await assert.rejects(
      fs_.applyFeatureViews({ views: [{ name: "no_type", entities: [{ name: "id" }], features: [{ name: "x" }] }] }),
      rejectsWith(Code.InvalidArgument, /^views\[0\]\.features\[0\]\.type: is required/),
    );

    assert.equal((await fs_.getFeatureView({ name: "user_stats", version: 1n })).view!.features.length, 2);
    assert.equal((await fs_.getFeatureView({ name: "user_stats" })).view!.features.length, 3);
    await assert.rejects(fs_.getFeatureView({ name: "nope" }), rejectsWith(Code.NotFound, /feature view "nope" not found/));
    const list = await fs_.listFeatureViews({ namePrefix: "user_" });
    assert.deepEqual(list.views.map((v) => v.name), ["user_stats"]);
  });

  it("writes rows and reads them online with PRESENT, NOT_FOUND, EXPIRED and NULL", async () => {
    const now = Date.now();
    const w = await fs_.writeFeatures({
      view: "user_stats",
      featureNames: ["views_7d", "spend_7d"],
      rows: [
        { entityKey: user(1), eventTime: ts(now - HOUR), values: [i64(10), f64(12.5)] },
        { entityKey: user(2), eventTime: ts(now - 72 * HOUR), values: [i64(20), f64(1)] },
        { entityKey: user(3), eventTime: ts(now - HOUR), values: [i64(30), {}] },
      ],
    });
    assert.equal(w.rowsWritten, 3n);
    assert.equal(w.onlineRowsUpdated, 3n);
    // A late row, older than the online value: kept offline, never served online.
    const late = await fs_.writeFeatures({ view: "user_stats", featureNames: ["views_7d"], rows: [{ entityKey: user(1), eventTime: ts(now - 2 * HOUR), values: [i64(999)] }] });
    assert.equal(late.rowsWritten, 1n);
    assert.equal(late.onlineRowsUpdated, 0n);

    const res = await fs_.getOnlineFeatures({
      entities: [user(1), user(2), user(3), user(4), user("5")],
      refs: ["user_stats:views_7d", "user_stats:spend_7d", "user_stats:clicks_7d"],
    });
    assert.deepEqual(res.refs, ["user_stats:views_7d", "user_stats:spend_7d", "user_stats:clicks_7d"]);
    const rows = res.rows.map((r) => r.values.map(plain));
    assert.deepEqual(rows[0], [{ status: "PRESENT", value: 10n }, { status: "PRESENT", value: 12.5 }, { status: "NULL", value: undefined }]);
    assert.deepEqual(rows[1]!.map((v) => v.status), ["EXPIRED", "EXPIRED", "EXPIRED"], "72h old with a 48h TTL");
    assert.equal(res.rows[1]!.values[0]!.value, undefined);
    assert.equal(Number(res.rows[1]!.values[0]!.eventTime!.seconds), Math.floor((now - 72 * HOUR) / 1000));
    assert.deepEqual(rows[2], [{ status: "PRESENT", value: 30n }, { status: "NULL", value: undefined }, { status: "NULL", value: undefined }]);
    assert.deepEqual(rows[3]!.map((v) => v.status), ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"]);
    assert.equal(res.rows[3]!.values[0]!.eventTime, undefined);
    assert.deepEqual(rows[4]!.map((v) => v.status), ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"], "a decimal string addresses an int64 key");
  });

  it("refuses bad input with the field named, and writes nothing of a bad call", async () => {
    const now = Date.now();
    const good = { entityKey: user(50), eventTime: ts(now), values: [i64(1), f64(1)] };
    const write = (rows: unknown[], featureNames = ["views_7d", "spend_7d"], view = "user_stats") =>
      fs_.writeFeatures({ view, featureNames, rows: rows as never });
    await assert.rejects(write([good], undefined, "no_such_view"), rejectsWith(Code.NotFound, /feature view "no_such_view" not found/));
    await assert.rejects(write([good], ["views_7d", "nope"]), rejectsWith(Code.InvalidArgument, /^feature_names\[1\]: view user_stats has no feature "nope"/));
    await assert.rejects(
      write([good, { ...good, values: [str("ten"), f64(1)] }]),
      rejectsWith(Code.InvalidArgument, /^rows\[1\]\.values\[0\]: views_7d: expected int64, got string/),
    );
    await assert.rejects(write([good, { ...good, eventTime: undefined }]), rejectsWith(Code.InvalidArgument, /^rows\[1\]\.event_time: is required/));
    await assert.rejects(
      write([good, { ...good, eventTime: { seconds: 1n, nanos: 2_000_000_000 } }]),
      rejectsWith(Code.InvalidArgument, /^rows\[1\]\.event_time: is not a valid timestamp/),
    );
    await assert.rejects(
      write([good, { ...good, eventTime: ts(now + 24 * HOUR) }]),
      rejectsWith(Code.InvalidArgument, /^rows\[1\]\.event_time: .* is more than 300s in the future/),
    );
    await assert.rejects(
      write([good, { ...good, entityKey: { keys: { user_id: i64(1), item_id: i64(2) } } }]),
      rejectsWith(Code.InvalidArgument, /^rows\[1\]\.entity_key\.item_id: is not an entity key of view user_stats/),
    );
    await assert.rejects(write([good, { ...good, values: [i64(1)] }]), rejectsWith(Code.InvalidArgument, /^rows\[1\]\.values: expected 2 values/));
    const read = await fs_.getOnlineFeatures({ entities: [user(50)], refs: ["user_stats:views_7d"] });
    assert.equal(read.rows[0]!.values[0]!.status, FeatureStatus.NOT_FOUND, "the good row of a failed call was not written");

    await assert.rejects(fs_.getOnlineFeatures({ entities: [user(1)], refs: ["user_stats:nope"] }), rejectsWith(Code.NotFound, /feature "user_stats:nope" not found/));
    await assert.rejects(fs_.getOnlineFeatures({ entities: [user(1)], refs: ["nope:x"] }), rejectsWith(Code.NotFound, /feature view "nope"/));
    await assert.rejects(fs_.getOnlineFeatures({ entities: [user(1)], refs: ["bad ref"] }), rejectsWith(Code.InvalidArgument, /^refs\[0\]: /));
    await assert.rejects(fs_.getOnlineFeatures({ entities: [user(1)] }), rejectsWith(Code.InvalidArgument, /exactly one of refs and feature_set/));
    await assert.rejects(
      fs_.getOnlineFeatures({ entities: [{ keys: { item_id: i64(1) } }], refs: ["user_stats:views_7d"] }),
      rejectsWith(Code.InvalidArgument, /^entities\[0\]: missing entity key user_id needed by view user_stats/),
    );
    await assert.rejects(
      fs_.getOnlineFeatures({ entities: [user("abc")], refs: ["user_stats:views_7d"] }),
      rejectsWith(Code.InvalidArgument, /^entities\[0\]\.user_id: expected an int64 key/),
    );
  });

  it("joins point-in-time exactly as pandas merge_asof (ties, late arrivals, TTL, no history)", async () => {
    const fx = JSON.parse(fs.readFileSync(new URL("../../services/features/fixtures/pit_fixture.json", import.meta.url), "utf8")) as {
      ttl_ms: number;
      feature_rows: Array<{ user_id: number; event_ts: number; spend: number; visits: number | null }>;
      entity_rows: Array<{ user_id: number; ts: number }>;
      expected: Array<{ status: string; event_ts?: number; spend?: number | null; visits?: number | null }>;
    };
    await fs_.applyFeatureViews({
      views: [{ name: "pit_stats", entities: [{ name: "user_id", type: ValueType.INT64 }], features: [{ name: "spend", type: ValueType.FLOAT64 }, { name: "visits", type: ValueType.INT64 }], ttl: ttl(fx.ttl_ms) }],
    });
    // Two calls, in the fixture's arrival order, so write order (the tie-breaker) is the same.
    const rows = fx.feature_rows.map((r) => ({ entityKey: user(r.user_id), eventTime: ts(r.event_ts), values: [f64(r.spend), r.visits === null ? {} : i64(r.visits)] }));
    await fs_.writeFeatures({ view: "pit_stats", rows: rows.slice(0, 40) });
    await fs_.writeFeatures({ view: "pit_stats", rows: rows.slice(40) });

    const got: Array<{ index: number; values: FeatureValue[] }> = [];
    let messages = 0;
    for await (const chunk of fs_.getHistoricalFeatures({
      entityRows: fx.entity_rows.map((e) => ({ entityKey: user(e.user_id), eventTime: ts(e.ts) })),
      refs: ["pit_stats:spend", "pit_stats:visits"],
    })) {
      if (messages++ === 0) assert.deepEqual(chunk.refs, ["pit_stats:spend", "pit_stats:visits"]);
      for (const r of chunk.rows) got.push({ index: Number(r.rowIndex), values: r.values });
    }
    assert.equal(got.length, fx.entity_rows.length);
    got.forEach(({ index, values }, i) => {
      assert.equal(index, i);
      const exp = fx.expected[i]!;
      const [spend, visits] = values.map(plain);
      const status = exp.status === "present" ? "PRESENT" : exp.status.toUpperCase();
      assert.equal(spend!.status, status, `row ${i}`);
      if (exp.status !== "not_found") assert.equal(Number(values[0]!.eventTime!.seconds) * 1000 + values[0]!.eventTime!.nanos / 1e6, exp.event_ts, `row ${i} event time`);
      if (exp.status === "present") {
        assert.equal(spend!.value, exp.spend, `row ${i} spend`);
        assert.deepEqual(visits, exp.visits === null ? { status: "NULL", value: undefined } : { status: "PRESENT", value: BigInt(exp.visits!) }, `row ${i} visits`);
      }
    });
  });

  it("computes on-demand features with the same code online and historically", async () => {
    const applied = await fs_.applyFeatureViews({
      views: [
        {
          name: "user_derived",
          requestFields: [{ name: "amount", type: ValueType.FLOAT64, required: true }],
          onDemandFeatures: [
            { name: "spend_per_view", transform: "ratio", inputs: [{ source: { case: "featureRef", value: "user_stats:spend_7d" } }, { source: { case: "featureRef", value: "user_stats:views_7d" } }] },
            { name: "log_spend", transform: "log1p", inputs: [{ source: { case: "featureRef", value: "user_stats:spend_7d" } }] },
            { name: "amount_bucket", transform: "bucketize", inputs: [{ source: { case: "requestField", value: "amount" } }], params: { boundaries: [0, 10, 100] } },
            { name: "amount_share", transform: "ratio", inputs: [{ source: { case: "requestField", value: "amount" } }, { source: { case: "featureRef", value: "user_stats:spend_7d" } }] },
          ],
        },
      ],
    });
    assert.equal(applied.results[0]!.view!.onDemandFeatures[2]!.type, ValueType.INT64);
    await assert.rejects(
      fs_.applyFeatureViews({ views: [{ name: "bad_od", onDemandFeatures: [{ name: "x", transform: "nope", inputs: [] }] }] }),
      rejectsWith(Code.InvalidArgument, /^views\[0\]\.on_demand_features\[0\]\.transform: unknown transform "nope"/),
    );
    const now = Date.now();
    await fs_.writeFeatures({ view: "user_stats", featureNames: ["views_7d", "spend_7d"], rows: [{ entityKey: user(7), eventTime: ts(now - 1000), values: [i64(4), f64(50)] }, { entityKey: user(8), eventTime: ts(now - 1000), values: [i64(0), f64(5)] }] });
    const refs = ["user_derived:spend_per_view", "user_derived:log_spend", "user_derived:amount_bucket", "user_derived:amount_share", "user_stats:spend_7d"];
    const entities = [user(7), user(8), user(404)];
    const amounts = [42, 7, 1000];
    const online = await fs_.getOnlineFeatures({ entities, refs, entityRequestData: amounts.map((a) => ({ fields: { amount: f64(a) } })) });
    const onlineValues = online.rows.map((r) => r.values.map(plain));
    assert.deepEqual(onlineValues[0], [
      { status: "PRESENT", value: 12.5 },
      { status: "PRESENT", value: Math.log1p(50) },
      { status: "PRESENT", value: 2n },
      { status: "PRESENT", value: 42 / 50 },
      { status: "PRESENT", value: 50 },
    ]);
    assert.deepEqual(onlineValues[1]![0], { status: "NULL", value: undefined }, "ratio by zero is NULL");
    assert.deepEqual(onlineValues[2]!.map((v) => v.status), ["NOT_FOUND", "NOT_FOUND", "PRESENT", "NOT_FOUND", "NOT_FOUND"]);
    const readTime = online.readTime!;
    const historical = [];
    for await (const chunk of fs_.getHistoricalFeatures({
      entityRows: entities.map((e, i) => ({ entityKey: e, eventTime: readTime, requestData: { amount: f64(amounts[i]!) } })),
      refs,
    })) historical.push(...chunk.rows.map((r) => r.values.map(plain)));
    assert.deepEqual(historical, onlineValues);
    await assert.rejects(fs_.getOnlineFeatures({ entities, refs: ["user_derived:amount_bucket"] }), rejectsWith(Code.InvalidArgument, /request_data\.amount: is required by user_derived:amount_bucket/));
  });

  it("serves feature sets, refuses changing their refs, and protects views in use", async () => {
    const set = { name: "churn_v1", refs: ["user_stats:views_7d", "user_derived:spend_per_view"] };
    assert.equal((await fs_.applyFeatureSets({ featureSets: [set] })).results[0]!.outcome, ApplyOutcome.CREATED);
    assert.equal((await fs_.applyFeatureSets({ featureSets: [set] })).results[0]!.outcome, ApplyOutcome.UNCHANGED);
    await assert.rejects(fs_.applyFeatureSets({ featureSets: [{ ...set, refs: ["user_stats:views_7d"] }] }), rejectsWith(Code.FailedPrecondition, /refs of feature set "churn_v1" cannot change/));
    await assert.rejects(fs_.applyFeatureSets({ featureSets: [{ name: "x", refs: ["user_stats:ghost"] }] }), rejectsWith(Code.NotFound, /user_stats:ghost/));
    const got = await fs_.getFeatureSet({ name: "churn_v1" });
    assert.deepEqual(got.features.map((f) => [f.ref, ValueType[f.type], f.onDemand]), [["user_stats:views_7d", "INT64", false], ["user_derived:spend_per_view", "FLOAT64", true]]);
    const read = await fs_.getOnlineFeatures({ entities: [user(7)], featureSet: "churn_v1" });
    assert.deepEqual(read.refs, set.refs);
    assert.deepEqual(read.rows[0]!.values.map(plain), [{ status: "PRESENT", value: 4n }, { status: "PRESENT", value: 12.5 }]);
    await assert.rejects(fs_.deleteFeatureView({ name: "user_stats" }), rejectsWith(Code.FailedPrecondition, /still in use.*feature set churn_v1.*on-demand feature user_derived:spend_per_view/));
    await fs_.deleteFeatureSet({ name: "churn_v1", reason: "retired" });
    await assert.rejects(fs_.getFeatureSet({ name: "churn_v1" }), rejectsWith(Code.NotFound, /feature set "churn_v1"/));
  });

  it("deletes a view with its data, audits every mutation and publishes events", async () => {
    await fs_.applyFeatureViews({ views: [{ name: "tmp_view", entities: [{ name: "k" }], features: [{ name: "x", type: ValueType.STRING }] }], reason: "try" });
    await fs_.writeFeatures({ view: "tmp_view", rows: [{ entityKey: { keys: { k: str("a") } }, eventTime: ts(Date.now()), values: [str("hello")] }] });
    const deleted = await fs_.deleteFeatureView({ name: "tmp_view", reason: "done" });
    assert.equal(deleted.view!.name, "tmp_view");
    await fs_.applyFeatureViews({ views: [{ name: "tmp_view", entities: [{ name: "k" }], features: [{ name: "x", type: ValueType.STRING }] }] });
    const read = await fs_.getOnlineFeatures({ entities: [{ keys: { k: str("a") } }], refs: ["tmp_view:x"] });
    assert.equal(read.rows[0]!.values[0]!.status, FeatureStatus.NOT_FOUND, "a re-created view does not see the old data");

    const audit = await fs_.listAuditRecords({ resourcePrefix: "feature_views/tmp_view" });
    assert.deepEqual(audit.records.map((r) => [r.action, r.resource, r.reason]), [
      ["feature_view.create", "feature_views/tmp_view", ""],
      ["feature_view.delete", "feature_views/tmp_view", "done"],
      ["features.write", "feature_views/tmp_view/rows", ""],
      ["feature_view.create", "feature_views/tmp_view", "try"],
    ]);

    const bus = await JetStreamBus.connect({ servers: nats.url, name: "features-events-test", logger: createLogger({ level: "silent" }) });
    const events: FeatureViewApplied[] = [];
    const sub = await bus.subscribe({
      stream: "MLMESH_FEATURES",
      durable: `test_features_${Date.now()}`,
      filterSubject: "mlmesh.features.feature_view_applied.user_stats",
      schema: FeatureViewAppliedSchema,
      deliverNewOnly: false,
      handler: async (e) => void events.push(e.message),
    });
    const deadline = Date.now() + 10_000;
    // The stream is shared with other runs (MLMESH_NATS_URL); look for this run's versions.
    while (Date.now() < deadline && !events.some((e) => e.view?.version === 2n && e.view.features.length === 3)) await new Promise((r) => setTimeout(r, 50));
    await sub.stop();
    await bus.close();
    const v2 = events.find((e) => e.view?.version === 2n && e.view.features.length === 3);
    assert.ok(v2, "FeatureViewApplied for user_stats v2 arrived");
    assert.equal(v2.outcome, ApplyOutcome.UPDATED);
    assert.deepEqual(v2.changes, ["added feature clicks_7d", "ttl 1d -> 2d"]);
    assert.equal(v2.meta?.producer, "features");
  });

  it("exports freshness, ingest and read metrics", async () => {
    const body = await (await fetch(`${proc.endpoint("features").http}/metrics`)).text();
    assert.match(body, /mlmesh_features_freshness_seconds\{view="user_stats"\} \d/);
    assert.match(body, /mlmesh_features_ingest_rows_total\{view="pit_stats",source="write"\} 85/);
    assert.match(body, /mlmesh_features_online_values_total\{view="user_stats",status="expired"\} [1-9]/);
    assert.match(body, /mlmesh_features_online_values_total\{view="user_stats",status="not_found"\} [1-9]/);
    assert.match(body, /mlmesh_features_online_read_duration_seconds_count\{store="sqlite"\} [1-9]/);
    const fresh = await fs_.getFreshness({ views: ["user_stats"] });
    assert.equal(fresh.views[0]!.offlineRowCount, 6n);
    assert.equal(fresh.views[0]!.onlineEntityCount, 5n);
  });
});
