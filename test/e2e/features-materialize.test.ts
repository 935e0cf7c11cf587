// Materialization (offline -> online) and streaming ingest from NATS JetStream, through the
// real `mlmesh serve features` process, gRPC and a real NATS with subjects of this run only:
// a backfill of a time range never lets an older offline row overwrite a newer online
// value, incremental jobs copy only what is new since the watermark, re-running is
// harmless, a job interrupted by a crash resumes; streamed rows are written like
// WriteFeatures (newest wins, redelivery not written twice), bad messages are dead-lettered
// and do not stop the consumer.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { EventMetaSchema } from "../../gen/mlmesh/events/v1/envelope_pb.js";
import { FeatureRowsIngestedSchema, FeatureRowsRejectedSchema, type FeatureRowsRejected } from "../../gen/mlmesh/events/v1/features_events_pb.js";
import { FeatureStatus, MaterializationState, type FeatureValue, type MaterializationJob } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { runFeatures } from "../../cli/features-command.js";
import { createServiceClient } from "../../lib/clients.js";
import { loadConfig } from "../../lib/config.js";
import { JetStreamBus } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const ts = timestampFromMs;
const i64 = (value: number | bigint) => ({ kind: { case: "int64Value" as const, value: BigInt(value) } });
const f64 = (value: number) => ({ kind: { case: "doubleValue" as const, value } });
const str = (value: string) => ({ kind: { case: "stringValue" as const, value } });
const user = (id: number) => ({ keys: { user_id: i64(id) } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function plain(v: FeatureValue) {
  const k = v.value?.kind;
  return k?.case ? k.value : FeatureStatus[v.status];
}

/** Run the CLI command in-process, capturing stdout and stderr (strings only). */
async function cli(addr: string, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) =>
    typeof chunk === "string" ? ((out += chunk), true) : (write as (...a: unknown[]) => boolean)(chunk, ...rest)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) =>
    typeof chunk === "string" ? ((err += chunk), true) : (writeErr as (...a: unknown[]) => boolean)(chunk, ...rest)) as typeof process.stderr.write;
  try {
    return { code: await runFeatures(loadConfig({ MLMESH_FEATURES_ADDR: addr }), argv), out, err };
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
}

function rejectsWith(code: Code, pattern: RegExp) {
  return (e: unknown) => {
    const ce = ConnectError.from(e);
    assert.equal(Code[ce.code], Code[code], ce.rawMessage);
    assert.match(ce.rawMessage, pattern);
    return true;
  };
}

const view = (name: string) => ({
  name,
  entities: [{ name: "user_id", type: ValueType.INT64 }],
  features: [
    { name: "score", type: ValueType.FLOAT64 },
    { name: "tag", type: ValueType.STRING },
  ],
});

describe("feature materialization and streaming ingest", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let env: Record<string, string>;
  let client: Client<typeof FeatureService>;
  const run = randomUUID().replace(/-/g, "").slice(0, 12);
  const prefix = `mlmesh.features.t${run}.ingest`;
  const base = Date.now() - 10 * 3_600_000;
  const H = 3_600_000;

  const start = async () => {
    proc = await startMlmesh(["serve", "features"], env);
    client = createServiceClient(FeatureService, proc.endpoint("features").grpc);
  };
  const read = async (name: string, ids: number[]) => {
    const res = await client.getOnlineFeatures({ entities: ids.map(user), refs: [`${name}:score`, `${name}:tag`] });
    return res.rows.map((r) => r.values.map(plain));
  };
  const waitJob = async (jobId: string, timeoutMs = 30_000): Promise<MaterializationJob> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { job } = await client.getMaterializationStatus({ jobId });
      if (job!.state === MaterializationState.SUCCEEDED || job!.state === MaterializationState.FAILED) return job!;
      if (Date.now() > deadline) throw new Error(`job ${jobId} still ${MaterializationState[job!.state]}`);
      await sleep(50);
    }
  };
  const row = (id: number, t: number, score: number, tag: string) => ({ entityKey: user(id), eventTime: ts(t), values: [f64(score), str(tag)] });

  before(async () => {
    nats = await testNats();
    env = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_FEATURES_INGEST_SUBJECT_PREFIX: prefix });
    await start();
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
  });

  it("backfills a time range newest-wins, never overwriting a newer online value; re-running is harmless", async () => {
    await client.applyFeatureViews({ views: [view("mat_a")] });
    // History offline only: user 1 at t+1h and t+3h (ties at t+3h: the later write wins),
    // user 2 at t+5h (outside the range), user 3 at t+2h.
    await client.writeFeatures({ view: "mat_a", offlineOnly: true, rows: [row(1, base + H, 1, "old"), row(1, base + 3 * H, 3, "first"), row(2, base + 5 * H, 5, "late"), row(3, base + 2 * H, 2, "u3")] });
    await client.writeFeatures({ view: "mat_a", offlineOnly: true, rows: [row(1, base + 3 * H, 33, "second")] });
    // User 3 already has a newer online value.
    await client.writeFeatures({ view: "mat_a", rows: [row(3, base + 4 * H, 4, "newer")] });
    assert.deepEqual(await read("mat_a", [1, 2, 3]), [["NOT_FOUND", "NOT_FOUND"], ["NOT_FOUND", "NOT_FOUND"], [4, "newer"]]);

    const { job } = await client.materialize({ views: ["mat_a"], timeRange: { startTime: ts(base), endTime: ts(base + 4 * H) } });
    assert.ok(job!.jobId);
    const done = await waitJob(job!.jobId);
    assert.equal(done.state, MaterializationState.SUCCEEDED, done.error);
    assert.equal(done.progress[0]!.view, "mat_a");
    assert.equal(done.progress[0]!.rowsRead, 4n, "rows of users 1 and 3 inside [start, end): the end is exclusive");
    assert.equal(done.progress[0]!.rowsWritten, 1n, "only user 1 changed; user 3 online is newer");
    assert.deepEqual(await read("mat_a", [1, 2, 3]), [[33, "second"], ["NOT_FOUND", "NOT_FOUND"], [4, "newer"]]);

    const again = await waitJob((await client.materialize({ views: ["mat_a"], timeRange: { startTime: ts(base), endTime: ts(base + 4 * H) } })).job!.jobId);
    assert.equal(again.state, MaterializationState.SUCCEEDED);
    assert.deepEqual(await read("mat_a", [1, 2, 3]), [[33, "second"], ["NOT_FOUND", "NOT_FOUND"], [4, "newer"]]);
  });

  it("incremental jobs copy only what is new since the watermark, including late arrivals", async () => {
    await client.applyFeatureViews({ views: [view("mat_b")] });
    await client.writeFeatures({ view: "mat_b", offlineOnly: true, rows: [row(1, base + H, 1, "a"), row(2, base + 2 * H, 2, "b")] });
    const first = await waitJob((await client.materialize({ views: ["mat_b"], incremental: true })).job!.jobId);
    assert.equal(first.state, MaterializationState.SUCCEEDED, first.error);
    assert.equal(first.progress[0]!.timeRange?.startTime, undefined, "never materialized: from the beginning");
    assert.equal(first.progress[0]!.rowsWritten, 2n);
    const watermark = first.progress[0]!.timeRange!.endTime!;

    // Written after the job, all with event times before its watermark (late arrivals):
    // an incremental job must still copy them.
    await client.writeFeatures({ view: "mat_b", offlineOnly: true, rows: [row(3, base + 6 * H, 3, "c"), row(1, base + 30 * 60_000, 0, "older")] });
    await client.writeFeatures({ view: "mat_b", offlineOnly: true, rows: [row(4, base + 90 * 60_000, 4, "late")] });
    const second = await waitJob((await client.materialize({ views: ["mat_b"], incremental: true })).job!.jobId);
    assert.equal(second.state, MaterializationState.SUCCEEDED, second.error);
    assert.deepEqual(second.progress[0]!.timeRange!.startTime, watermark, "starts at the previous watermark");
    assert.equal(second.progress[0]!.rowsRead, 3n, "only the three rows written since");
    assert.equal(second.progress[0]!.rowsWritten, 2n, "user 1's late older row does not win");
    assert.deepEqual(await read("mat_b", [1, 2, 3, 4]), [[1, "a"], [2, "b"], [3, "c"], [4, "late"]]);

    const third = await waitJob((await client.materialize({ views: ["mat_b"], incremental: true })).job!.jobId);
    assert.equal(third.progress[0]!.rowsRead, 0n, "nothing new");
  });

  it("mlmesh features materialize VIEW --start --end waits for the job and prints its progress", async () => {
    await client.applyFeatureViews({ views: [view("mat_cli")] });
    await client.writeFeatures({ view: "mat_cli", offlineOnly: true, rows: [row(1, base + H, 1, "a"), row(2, base + 3 * H, 2, "b")] });
    const iso = (ms: number) => new Date(ms).toISOString();
    const res = await cli(proc.endpoint("features").grpc, ["materialize", "mat_cli", "--start", iso(base), "--end", String(base + 2 * H), "--json"]);
    assert.equal(res.code, 0, res.err);
    const out = JSON.parse(res.out);
    assert.equal(out.state, "SUCCEEDED");
    assert.deepEqual(out.views.map((v: Record<string, unknown>) => [v.view, v.start, v.end, v.rows_read, v.rows_written]), [["mat_cli", iso(base), iso(base + 2 * H), 1, 1]]);
    assert.deepEqual(await read("mat_cli", [1, 2]), [[1, "a"], ["NOT_FOUND", "NOT_FOUND"]]);
    const inc = await cli(proc.endpoint("features").grpc, ["materialize", "mat_cli", "--incremental", "--json"]);
    assert.equal(inc.code, 0, inc.err);
    // Never materialized incrementally: from the beginning; user 1 is merged again with the
    // same row (equal event time: the later write wins), user 2 is new.
    assert.deepEqual([JSON.parse(inc.out).views[0].start, JSON.parse(inc.out).views[0].rows_read], ["", 2]);
    assert.deepEqual(await read("mat_cli", [1, 2]), [[1, "a"], [2, "b"]]);
    await assert.rejects(cli(proc.endpoint("features").grpc, ["materialize", "mat_cli", "--start", "yesterday"]), /--start: expected RFC 3339/);
  });

  it("a columnar read carries exactly the values, statuses and times of a row read", async () => {
    const refs = ["mat_b:score", "mat_b:tag"];
    const entities = [1, 2, 999, 3].map(user);
    const byRow = await client.getOnlineFeatures({ entities, refs });
    const byCol = await client.getOnlineFeatures({ entities, refs, columnar: true });
    assert.deepEqual(byCol.refs, refs);
    assert.equal(byCol.rows.length, 0);
    assert.deepEqual(byCol.columns[0]!.doubleValues, [1, 2, 0, 3]);
    assert.deepEqual(byCol.columns[1]!.stringValues, ["a", "b", "", "c"]);
    for (let c = 0; c < refs.length; c++) {
      assert.deepEqual(byCol.columns[c]!.statuses, byRow.rows.map((r) => r.values[c]!.status));
      assert.deepEqual(
        byCol.columns[c]!.eventTimesMs,
        byRow.rows.map((r) => (r.values[c]!.eventTime ? Number(r.values[c]!.eventTime!.seconds) * 1000 + r.values[c]!.eventTime!.nanos / 1e6 : 0)),
      );
    }
    assert.equal(byCol.columns[0]!.statuses[2], FeatureStatus.NOT_FOUND);
    // The same answer over Connect JSON (the handler's message answer, not the gRPC port's bytes).
    const connect = createClient(FeatureService, createConnectTransport({ baseUrl: proc.endpoint("features").http, httpVersion: "1.1" }));
    const viaJson = await connect.getOnlineFeatures({ entities, refs, columnar: true });
    assert.deepEqual(viaJson.columns, byCol.columns);
    assert.deepEqual(viaJson.refs, byCol.refs);
  });

  it("refuses bad requests with the field named", async () => {
    await assert.rejects(client.materialize({ views: ["no_such_view"] }), rejectsWith(Code.NotFound, /no_such_view/));
    await assert.rejects(client.materialize({ views: ["mat_a"], timeRange: { startTime: ts(base + H), endTime: ts(base) } }), rejectsWith(Code.InvalidArgument, /end_time/));
    await assert.rejects(client.materialize({ views: ["mat_a"], incremental: true, timeRange: { startTime: ts(base) } }), rejectsWith(Code.InvalidArgument, /start_time/));
    await assert.rejects(client.materialize({ views: ["mat_a", "mat_a"] }), rejectsWith(Code.InvalidArgument, /views\[1\]/));
    await assert.rejects(client.getMaterializationStatus({ jobId: "nope" }), rejectsWith(Code.NotFound, /nope/));
  });

  it("a job interrupted by a crash resumes after the restart", async () => {
    await client.applyFeatureViews({ views: [view("mat_c")] });
    const n = 60_000;
    for (let s = 0; s < n; s += 20_000) {
      await client.writeFeatures({ view: "mat_c", offlineOnly: true, rows: Array.from({ length: 20_000 }, (_, i) => row(s + i, base + H, s + i, "x")) });
    }
    const { job } = await client.materialize({ views: ["mat_c"] });
    // Kill it while it runs (pages of 2,000 entities), or right after it finished.
    for (let i = 0; i < 200; i++) {
      const { job: j } = await client.getMaterializationStatus({ jobId: job!.jobId });
      if (j!.progress[0]!.rowsWritten > 0n) break;
      await sleep(5);
    }
    await proc.stop("SIGKILL");
    await start();
    const done = await waitJob(job!.jobId, 60_000);
    assert.equal(done.state, MaterializationState.SUCCEEDED, done.error);
    const res = await read("mat_c", [0, 29_999, n - 1]);
    assert.deepEqual(res, [[0, "x"], [29_999, "x"], [n - 1, "x"]]);
    const fresh = await client.getFreshness({ views: ["mat_c"] });
    assert.equal(fresh.views[0]!.onlineEntityCount, BigInt(n));
  });

  it("streams rows from NATS JetStream: newest wins, redelivery is not written twice, bad messages are dead-lettered", async () => {
    await client.applyFeatureViews({ views: [view("stream_a")] });
    const bus = await JetStreamBus.connect({ servers: nats.url, name: "features-stream-test", logger: createLogger({ level: "silent" }) });
    const rejected: FeatureRowsRejected[] = [];
    const sub = await bus.subscribe({
      stream: "MLMESH_FEATURES",
      durable: `test_rejected_${run}`,
      filterSubject: "mlmesh.features.ingest_rejected.>",
      schema: FeatureRowsRejectedSchema,
      deliverNewOnly: true,
      handler: async (e) => void rejected.push(e.message),
    });
    try {
      const publish = (eventId: string, rows: ReturnType<typeof row>[], viewName = "stream_a", subjectView = "stream_a") => {
        const msg = create(FeatureRowsIngestedSchema, {
          meta: create(EventMetaSchema, { eventId, occurredAt: ts(Date.now()), producer: "test" }),
          view: viewName,
          rows,
        });
        return bus.publish(`${prefix}.${subjectView}`, FeatureRowsIngestedSchema, msg, { msgId: eventId });
      };
      const now = Date.now();
      await publish(`e1-${run}`, [row(1, now - 1000, 1, "new"), row(2, now - 1000, 2, "b")]);
      // A late, older event for user 1, then a message with a bad value, then a good one.
      await publish(`e2-${run}`, [row(1, now - 60_000, -1, "stale")]);
      await publish(`e3-${run}`, [{ entityKey: user(3), eventTime: ts(now), values: [str("not a number"), str("x")] }]);
      await publish(`e4-${run}`, [row(3, now - 500, 3, "c")], "stream_a", "stream_a");
      await publish(`e5-${run}`, [row(4, now, 4, "d")], "other_view", "stream_a");
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const r = await read("stream_a", [1, 2, 3]);
        if (r[2]![0] === 3 && rejected.length >= 2) break;
        await sleep(50);
      }
      assert.deepEqual(await read("stream_a", [1, 2, 3, 4]), [[1, "new"], [2, "b"], [3, "c"], ["NOT_FOUND", "NOT_FOUND"]]);
      const fresh = await client.getFreshness({ views: ["stream_a"] });
      assert.equal(fresh.views[0]!.offlineRowCount, 4n, "every good row offline, nothing of the bad ones");

      const mine = rejected.filter((r) => r.rejectedEventId.endsWith(run)).sort((a, b) => a.rejectedEventId.localeCompare(b.rejectedEventId));
      assert.deepEqual(mine.map((r) => [r.rejectedEventId, r.field, r.subject]), [
        [`e3-${run}`, "rows[0].values[0]", `${prefix}.stream_a`],
        [`e5-${run}`, "view", `${prefix}.stream_a`],
      ]);
      assert.match(mine[0]!.error, /float64|number|double/i);
      assert.ok(mine[0]!.payload.length > 0, "the rejected bytes are kept for re-publishing");

      // The same event id again past JetStream's dedup (a new msg id): not written twice.
      const again = create(FeatureRowsIngestedSchema, { meta: create(EventMetaSchema, { eventId: `e4-${run}` }), view: "stream_a", rows: [row(3, now - 500, 3, "c")] });
      await bus.publish(`${prefix}.stream_a`, FeatureRowsIngestedSchema, again, { msgId: `retry-${run}` });
      await publish(`e6-${run}`, [row(5, now, 5, "e")]);
      const until = Date.now() + 20_000;
      while (Date.now() < until && (await read("stream_a", [5]))[0]![0] !== 5) await sleep(50);
      const after2 = await client.getFreshness({ views: ["stream_a"] });
      assert.equal(after2.views[0]!.offlineRowCount, 5n, "the redelivered event was dropped by its id");

      const body = await (await fetch(`${proc.endpoint("features").http}/metrics`)).text();
      assert.match(body, /mlmesh_features_stream_messages_total\{outcome="written"\} [4-9]/);
      assert.match(body, /mlmesh_features_stream_messages_total\{outcome="rejected"\} 2/);
      assert.match(body, /mlmesh_features_stream_messages_total\{outcome="duplicate"\} 1/);
      assert.match(body, /mlmesh_features_stream_lag_seconds_count [1-9]/);
      assert.match(body, /mlmesh_features_ingest_rows_total\{view="stream_a",source="stream"\} 5/);
    } finally {
      await sub.stop();
      await bus.close();
    }
  });
});
