// IngestFeatures and `mlmesh features ingest` against the real feature service process:
// out-of-order and late rows end up newest-wins online and all offline; a bad line, a
// cancelled stream or a truncated upload leave nothing behind (online, offline, staging);
// a request id makes a re-upload a no-op.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ChunkEncoder, ingestPlan, runFeatures } from "../../cli/features-command.js";
import { FeatureStatus, FeatureViewSchema, type FeatureValue } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { FeatureService, IngestFeaturesRequestSchema } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { loadConfig, type Config } from "../../lib/config.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const i64 = (value: number) => ({ kind: { case: "int64Value" as const, value: BigInt(value) } });
const f64 = (value: number) => ({ kind: { case: "doubleValue" as const, value } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run the command in-process, capturing stdout and stderr. */
async function run(config: Config, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  // Only strings: the test runner reports through the same streams in binary.
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) =>
    typeof chunk === "string" ? ((out += chunk), true) : (write as (...a: unknown[]) => boolean)(chunk, ...rest)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) =>
    typeof chunk === "string" ? ((err += chunk), true) : (writeErr as (...a: unknown[]) => boolean)(chunk, ...rest)) as typeof process.stderr.write;
  try {
    return { code: await runFeatures(config, argv), out, err };
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
}

function plain(v: FeatureValue) {
  const k = v.value?.kind;
  return k?.case ? k.value : FeatureStatus[v.status];
}

describe("ChunkEncoder (the CLI's hand-written IngestChunk encoding)", () => {
  it("decodes with the generated code to the same rows", () => {
    const enc = new ChunkEncoder();
    const rows: Array<Parameters<ChunkEncoder["row"]>[0]> = [
      {
        entityKey: { keys: { user_id: i64(-42), region: { kind: { case: "stringValue" as const, value: "zürich ✓" } } } },
        eventTime: { seconds: 1767268800n, nanos: 123_000_000 },
        values: [
          f64(-1.5),
          { kind: { case: "floatValue" as const, value: 0.25 } },
          { kind: { case: "int64Value" as const, value: -(2n ** 63n) } },
          { kind: { case: "boolValue" as const, value: false } },
          { kind: { case: "floatVectorValue" as const, value: { values: [1, -2.5, 3] } } },
          { kind: { case: "floatVectorValue" as const, value: { values: [] } } },
          {},
          { kind: { case: "stringValue" as const, value: "x".repeat(300) } },
        ],
      },
      { entityKey: { keys: { user_id: i64(7) } }, eventTime: { seconds: 0n, nanos: 0 }, values: [i64(2 ** 40)] },
    ];
    rows.forEach((r, i) => enc.row(r, 1000 + i));
    const decoded = fromBinary(IngestFeaturesRequestSchema, toBinary(IngestFeaturesRequestSchema, enc.take(true)));
    assert.equal(decoded.payload.case, "chunk");
    assert.equal((decoded.payload.value as { last: boolean }).last, true);
    const notLast = fromBinary(IngestFeaturesRequestSchema, toBinary(IngestFeaturesRequestSchema, (enc.row(rows[1]!, 5), enc.take())));
    assert.equal((notLast.payload.value as { last: boolean }).last, false);
    const chunk = decoded.payload.value as { rows: Array<{ entityKey?: { keys: Record<string, { kind: { value: unknown } }> }; eventTime?: { seconds: bigint; nanos: number }; values: Array<{ kind: { case?: string; value?: unknown } }> }>; sourceLines: bigint[] };
    assert.deepEqual(chunk.sourceLines, [1000n, 1001n]);
    assert.equal(chunk.rows.length, 2);
    assert.deepEqual(Object.fromEntries(Object.entries(chunk.rows[0]!.entityKey!.keys).map(([k, v]) => [k, v.kind.value])), { user_id: -42n, region: "zürich ✓" });
    assert.equal(chunk.rows[0]!.eventTime!.seconds, 1767268800n);
    assert.equal(chunk.rows[0]!.eventTime!.nanos, 123_000_000);
    const vals = chunk.rows[0]!.values.map((v) => (v.kind.case === "floatVectorValue" ? [...(v.kind.value as { values: number[] }).values] : v.kind.case === undefined ? null : v.kind.value));
    assert.deepEqual(vals, [-1.5, 0.25, -(2n ** 63n), false, [1, -2.5, 3], [], null, "x".repeat(300)]);
    assert.deepEqual(chunk.rows[1]!.values.map((v) => v.kind.value), [2n ** 40n]);
  });
});

describe("ingestPlan.encode (CSV cells straight to bytes)", () => {
  it("writes the same bytes as the RowInit path, and nothing for a bad row", () => {
    const view = create(FeatureViewSchema, {
      name: "v",
      entities: [{ name: "user_id", type: ValueType.INT64 }, { name: "region", type: ValueType.STRING }],
      features: [
        { name: "d", type: ValueType.FLOAT64 },
        { name: "f", type: ValueType.FLOAT32 },
        { name: "i", type: ValueType.INT64 },
        { name: "b", type: ValueType.BOOL },
        { name: "s", type: ValueType.STRING },
        { name: "vec", type: ValueType.FLOAT_VECTOR },
      ],
    });
    const header = ["region", "event_ts", "d", "user_id", "f", "i", "b", "s", "vec"];
    const plan = ingestPlan(view, header, "x.csv");
    const lines = [
      ["zürich", "1767268800123", "-1.5", "-42", "0.25", "-9223372036854775808", "true", "x", "[1, -2.5]"],
      ["a", "2026-01-01T00:00:00.5Z", "", "7", "", "", "", "", ""],
      ["a", "-1500", "nan", "9007199254740993", "-inf", "1", "0", "", "[]"],
      ["a", "0", " 1e3 ", "0", "3", "2", "1", "s", "2"],
    ];
    const viaRows = new ChunkEncoder();
    const direct = new ChunkEncoder();
    lines.forEach((f, i) => {
      viaRows.row(plan.row(f, i + 2), i + 2);
      plan.encode(f, i + 2, direct);
    });
    // A bad cell after good ones: the half-written row is taken back.
    assert.throws(() => plan.encode(["a", "0", "1", "5", "1", "1", "maybe", "", ""], 99, direct), /x.csv:99: b: expected bool/);
    assert.equal(direct.rows, lines.length);
    const a = toBinary(IngestFeaturesRequestSchema, viaRows.take(true));
    const b = toBinary(IngestFeaturesRequestSchema, direct.take(true));
    assert.deepEqual(Buffer.from(b).toString("hex"), Buffer.from(a).toString("hex"));
  });
});

describe("mlmesh features ingest (IngestFeatures)", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let config: Config;
  let client: Client<typeof FeatureService>;
  let db: Database.Database;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-features-ingest-"));
  const base = Date.UTC(2026, 0, 1, 12, 0, 0);
  const iso = (ms: number) => new Date(ms).toISOString();

  const csv = (name: string, lines: string[]) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, `${lines.join("\n")}\n`);
    return file;
  };
  const online = async (ids: number[]) => {
    const res = await client.getOnlineFeatures({ entities: ids.map((id) => ({ keys: { user_id: i64(id) } })), refs: ["clicks:views", "clicks:spend", "clicks:tag"] });
    return res.rows.map((r) => r.values.map(plain));
  };
  const counts = async () => {
    const { views } = await client.getFreshness({ views: ["clicks"] });
    return { online: Number(views[0]!.onlineEntityCount), offline: Number(views[0]!.offlineRowCount), staged: db.prepare("SELECT count(*) FROM ingest_staging").pluck().get() as number };
  };

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(["serve", "features"], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
    config = loadConfig({ MLMESH_FEATURES_ADDR: proc.endpoint("features").grpc });
    client = createServiceClient(FeatureService, proc.endpoint("features").grpc);
    await client.applyFeatureViews({
      views: [
        {
          name: "clicks",
          entities: [{ name: "user_id", type: ValueType.INT64 }],
          features: [
            { name: "views", type: ValueType.INT64 },
            { name: "spend", type: ValueType.FLOAT64 },
            { name: "tag", type: ValueType.STRING },
          ],
        },
      ],
    });
    db = new Database(path.join(proc.dataDir, "features.db"), { readonly: true, fileMustExist: true });
  });
  after(async () => {
    db?.close();
    await proc.stop();
    await nats.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("ingests out-of-order and late rows: newest wins online, every row offline", async () => {
    const file = csv("clicks.csv", [
      "user_id,event_ts,views,spend,tag",
      `1,${iso(base + 2000)},2,2.5,b`,
      `1,${base + 1000},1,1.5,a`, // late and older: must not win
      `2,${iso(base + 1000)},10,,"x, quoted"`,
      `1,${iso(base + 3000)},3,3.5,c`,
      `2,${base + 500},9,9.5,w`, // late
    ]);
    const res = await run(config, ["ingest", "clicks", file, "--batch", "2", "--json"]);
    assert.equal(res.code, 0, res.err);
    const out = JSON.parse(res.out);
    assert.equal(out.rows_accepted, 5);
    assert.equal(out.online_rows_updated, 3);
    assert.equal(out.min_event_time, iso(base + 500));
    assert.equal(out.max_event_time, iso(base + 3000));
    assert.deepEqual(await online([1, 2, 3]), [
      [3n, 3.5, "c"],
      [10n, "NULL", "x, quoted"],
      ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"],
    ]);
    assert.deepEqual(await counts(), { online: 2, offline: 5, staged: 0 });
    // The late rows are in the offline store: as of base+1500 user 1 had views=1.
    const hist = [];
    for await (const chunk of client.getHistoricalFeatures({
      entityRows: [
        { entityKey: { keys: { user_id: i64(1) } }, eventTime: timestampFromMs(base + 1500) },
        { entityKey: { keys: { user_id: i64(2) } }, eventTime: timestampFromMs(base + 700) },
      ],
      refs: ["clicks:views"],
    })) {
      hist.push(...chunk.rows.map((r) => plain(r.values[0]!)));
    }
    assert.deepEqual(hist, [1n, 9n]);
  });

  it("history writes the point-in-time join of an entity file as CSV", async () => {
    const entities = csv("entities.csv", [
      "user_id,event_ts",
      `1,${iso(base + 1500)}`,
      `2,${base + 700}`,
      `3,${iso(base)}`,
      `1,${iso(base - 1000)}`,
      `2,${iso(base + 1500)}`,
    ]);
    const outFile = path.join(dir, "out.csv");
    const res = await run(config, ["history", "--entities", entities, "--features", "clicks:views,clicks:spend,clicks:tag", "--out", outFile, "--json"]);
    assert.equal(res.code, 0, res.err);
    assert.deepEqual(JSON.parse(res.out), { out: outFile, rows: 5, refs: ["clicks:views", "clicks:spend", "clicks:tag"] });
    assert.equal(
      fs.readFileSync(outFile, "utf8"),
      [
        "user_id,event_ts,clicks:views,clicks:spend,clicks:tag",
        `1,${iso(base + 1500)},1,1.5,a`,
        `2,${base + 700},9,9.5,w`,
        `3,${iso(base)},,,`,
        `1,${iso(base - 1000)},,,`,
        `2,${iso(base + 1500)},10,,"x, quoted"`,
        "",
      ].join("\n"),
    );
  });

  it("a malformed line fails naming the line and writes nothing", async () => {
    const before = await counts();
    const lines = ["user_id,event_ts,views,spend,tag"];
    for (let i = 0; i < 6; i++) lines.push(`${100 + i},${iso(base)},1,1.0,t`);
    lines.push(`200,${iso(base)},1,abc,t`); // line 8
    lines.push(`201,${iso(base)},1,1.0,t`);
    const res = await run(config, ["ingest", "clicks", csv("bad.csv", lines), "--batch", "2"]);
    assert.equal(res.code, 2, res.err);
    assert.match(res.err, /bad\.csv:8: spend: expected float64, got "abc"/);
    await sleep(200);
    assert.deepEqual(await counts(), before);
    assert.deepEqual(await online([100, 200]), [
      ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"],
      ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"],
    ]);

    // Structural CSV errors too.
    const ragged = await run(config, ["ingest", "clicks", csv("ragged.csv", ["user_id,event_ts,views,spend,tag", `5,${iso(base)},1,1.0,t`, `6,${iso(base)},1`]), "--batch", "1"]);
    assert.equal(ragged.code, 2);
    assert.match(ragged.err, /ragged\.csv:3: expected 5 fields/);
  });

  it("a row the server rejects fails naming its line after earlier chunks were staged, and leaves nothing", async () => {
    const before = await counts();
    const lines = ["user_id,event_ts,views,spend,tag"];
    for (let i = 0; i < 6; i++) lines.push(`${300 + i},${iso(base)},1,1.0,t`);
    lines.push(`399,${iso(Date.now() + 3600_000)},1,1.0,t`); // line 8: an hour in the future
    const res = await run(config, ["ingest", "clicks", csv("future.csv", lines), "--batch", "2"]);
    assert.equal(res.code, 1, res.err);
    assert.match(res.err, /INVALID_ARGUMENT: line 8: event_time: .* in the future/);
    assert.deepEqual(await counts(), before);
    assert.deepEqual(await online([300]), [["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"]]);
  });

  it("ingests a Parquet file row group by row group with CSV's semantics and row-numbered errors", async () => {
    // Fixtures written by services/features/fixtures/make_parquet_fixture.py (3 row groups).
    const fixtures = path.join(path.dirname(new URL(import.meta.url).pathname), "../../services/features/fixtures");
    const before = await counts();
    const res = await run(config, ["ingest", "clicks", path.join(fixtures, "clicks.parquet"), "--batch", "2", "--json"]);
    assert.equal(res.code, 0, res.err);
    const out = JSON.parse(res.out);
    // Updated in file order: 3001, 3003, 3002 inserted, 3003 newer again; 3001's late row not.
    assert.deepEqual([out.rows_accepted, out.online_rows_updated, out.min_event_time, out.max_event_time], [5, 4, iso(base + 5_000), iso(base + 60_000)]);
    assert.deepEqual(await online([3001, 3002, 3003]), [
      [10n, 1.5, "new"], // its t+10s row comes last in the file and is older: it loses
      ["NULL", 2.25, "NULL"],
      [30n, -3, "zürich ✓"],
    ]);
    assert.deepEqual(await counts(), { online: before.online + 3, offline: before.offline + 5, staged: 0 });

    // Row 5 (in the third row group) holds "abc" for an int64: named, nothing written.
    const mid = await counts();
    const bad = await run(config, ["ingest", "clicks", path.join(fixtures, "clicks_bad.parquet"), "--batch", "2"]);
    assert.equal(bad.code, 2, bad.err);
    assert.match(bad.err, /clicks_bad\.parquet row 5: views: expected int64, got "abc"; nothing was written/);
    await sleep(200);
    assert.deepEqual(await counts(), mid);

    // Server-side errors name rows too when the header says the numbers are rows.
    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield { payload: { case: "header" as const, value: { view: "clicks", featureNames: ["views"], sourceUnit: "row" } } };
        yield { payload: { case: "chunk" as const, value: { rows: [{ entityKey: { keys: { user_id: i64(1) } }, eventTime: timestampFromMs(base), values: [f64(1.5)] }], sourceLines: [7n], last: true } } };
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /row 7: .*int64/.test(ConnectError.from(e).rawMessage),
    );
    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield { payload: { case: "header" as const, value: { view: "clicks", sourceUnit: "page" } } };
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /header\.source_unit/.test(ConnectError.from(e).rawMessage),
    );
    const notParquet = await run(config, ["ingest", "clicks", csv("fake.parquet", ["user_id,event_ts,views"])]);
    assert.equal(notParquet.code, 2);
    assert.match(notParquet.err, /fake\.parquet: not a readable Parquet file/);
    assert.deepEqual(await counts(), mid);
  });

  it("a cancelled stream or a truncated upload leaves nothing; bad headers are refused", async () => {
    const before = await counts();
    const header = (extra: Record<string, unknown> = {}) => ({ payload: { case: "header" as const, value: { view: "clicks", source: "test", ...extra } } });
    const chunk = (from: number, n: number, last = false) => ({
      payload: {
        case: "chunk" as const,
        value: {
          last,
          rows: Array.from({ length: n }, (_, i) => ({ entityKey: { keys: { user_id: i64(from + i) } }, eventTime: timestampFromMs(base), values: [i64(1), f64(1), { kind: { case: "stringValue" as const, value: "c" } }] })),
        },
      },
    });

    // Cancelled after two chunks were staged.
    const ac = new AbortController();
    let stagedSeen = 0;
    const cancelled = client.ingestFeatures(
      (async function* () {
        yield header();
        yield chunk(500, 100);
        yield chunk(600, 100);
        for (let i = 0; i < 50 && stagedSeen < 200; i++) {
          await sleep(20);
          stagedSeen = (await counts()).staged;
        }
        ac.abort();
        await sleep(50);
      })(),
      { signal: ac.signal },
    );
    await assert.rejects(cancelled, (e: unknown) => ConnectError.from(e).code === Code.Canceled);
    assert.equal(stagedSeen, 200, "the two chunks were staged before the cancel");
    for (let i = 0; i < 50 && (await counts()).staged > 0; i++) await sleep(20);
    assert.deepEqual(await counts(), before);

    // Truncated: announced 300 rows, sent 200.
    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield header({ expectedRows: 300n });
        yield chunk(700, 100);
        yield chunk(800, 100, true);
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /announced 300 rows but sent 200/.test(ConnectError.from(e).rawMessage),
    );
    assert.deepEqual(await counts(), before);

    // A stream that ends normally but without the end marker (as a cancelled client whose
    // half-close reached the server would look): nothing is committed.
    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield header();
        yield chunk(700, 100);
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /chunk\.last.*without a chunk marked last/.test(ConnectError.from(e).rawMessage),
    );
    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield header();
        yield chunk(700, 1, true);
        yield chunk(701, 1, true);
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /messages\[2\].*after the one marked last/.test(ConnectError.from(e).rawMessage),
    );
    assert.deepEqual(await counts(), before);
    // The marker alone (an empty file) commits an empty upload.
    const empty = await client.ingestFeatures((async function* () {
      yield header();
      yield { payload: { case: "chunk" as const, value: { last: true } } };
    })());
    assert.equal(empty.rowsAccepted, 0n);

    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield header({ view: "nope" });
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.NotFound,
    );
    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield chunk(900, 1);
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /first message/.test(ConnectError.from(e).rawMessage),
    );
    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield header();
        yield chunk(900, 1);
        yield header();
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /must be a chunk/.test(ConnectError.from(e).rawMessage),
    );
    await assert.rejects(
      client.ingestFeatures((async function* () {
        yield header({ featureNames: ["views", "clicks"] });
      })()),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /header\.feature_names\[1\]/.test(ConnectError.from(e).rawMessage),
    );
    assert.deepEqual(await counts(), before);
  });

  it("a large upload commits all at once for readers while reads keep being served", async () => {
    // 50,000 rows commit in slices of 10,000 across event-loop ticks, inside one
    // transaction: a read during the commit sees either none or all of them.
    const n = 50_000;
    const lines = ["user_id,event_ts,views,spend,tag"];
    for (let i = 0; i < n; i++) lines.push(`${100_000 + i},${base + i},${i},0.5,z`);
    const file = csv("large.csv", lines);
    const before = await counts();
    let done = false;
    const seen: string[] = [];
    const reads = (async () => {
      while (!done) {
        const [first, last] = await online([100_000, 100_000 + n - 1]);
        seen.push(`${first![0] === "NOT_FOUND" ? "-" : "+"}${last![0] === "NOT_FOUND" ? "-" : "+"}`);
      }
    })();
    const res = await run(config, ["ingest", "clicks", file, "--json"]);
    done = true;
    await reads;
    assert.equal(res.code, 0, res.err);
    assert.equal(JSON.parse(res.out).rows_accepted, n);
    assert.ok(seen.length > 5, `reads were served during the upload (${seen.length})`);
    assert.deepEqual([...new Set(seen)].filter((x) => x === "+-" || x === "-+"), [], "never half an upload");
    assert.deepEqual(await online([100_000 + n - 1]), [[BigInt(n - 1), 0.5, "z"]]);
    assert.deepEqual(await counts(), { online: before.online + n, offline: before.offline + n, staged: 0 });
  });

  it("re-uploading with the same request id does not ingest twice", async () => {
    const file = csv("again.csv", ["user_id,event_ts,views,tag", `1000,${iso(base)},5,first`, `1001,${iso(base + 1)},6,second`]);
    const before = await counts();
    const first = await run(config, ["ingest", "clicks", file, "--request-id", "upload-1", "--json"]);
    assert.equal(first.code, 0, first.err);
    const second = await run(config, ["ingest", "clicks", file, "--request-id", "upload-1", "--json"]);
    assert.equal(second.code, 0, second.err);
    const pick = (o: Record<string, unknown>) => [o.rows_accepted, o.online_rows_updated, o.min_event_time, o.max_event_time];
    assert.deepEqual(pick(JSON.parse(second.out)), pick(JSON.parse(first.out)));
    assert.deepEqual(await counts(), { online: before.online + 2, offline: before.offline + 2, staged: 0 });
    // A feature column subset: the columns not in the file are NULL.
    assert.deepEqual(await online([1000]), [[5n, "NULL", "first"]]);
  });
});

describe("mlmesh features ingest with the Redis online store", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let config: Config;
  let client: Client<typeof FeatureService>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-features-ingest-redis-"));
  const base = Date.UTC(2026, 0, 1, 12, 0, 0);
  const iso = (ms: number) => new Date(ms).toISOString();

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(
      ["serve", "features"],
      await isolatedEnv({
        MLMESH_NATS_URL: nats.url,
        MLMESH_FEATURES_ONLINE_STORE: "redis",
        MLMESH_REDIS_URL: process.env.MLMESH_REDIS_URL ?? "redis://127.0.0.1:6379",
        MLMESH_FEATURES_REDIS_PREFIX: `mlmesh-ingest-test:${process.pid}:${Date.now()}:`,
      }),
    );
    config = loadConfig({ MLMESH_FEATURES_ADDR: proc.endpoint("features").grpc });
    client = createServiceClient(FeatureService, proc.endpoint("features").grpc);
    await client.applyFeatureViews({ views: [{ name: "rclicks", entities: [{ name: "user_id", type: ValueType.INT64 }], features: [{ name: "views", type: ValueType.INT64 }] }] });
  });
  after(async () => {
    await client.deleteFeatureView({ name: "rclicks" }).catch(() => undefined);
    await proc.stop();
    await nats.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("merges newest-wins into Redis and appends offline; a rejected upload writes nothing", async () => {
    const file = path.join(dir, "r.csv");
    fs.writeFileSync(file, ["user_id,event_ts,views", `1,${iso(base + 2000)},2`, `1,${iso(base + 1000)},1`, `2,${base},7`, `1,${iso(base + 3000)},3`, ""].join("\n"));
    const res = await run(config, ["ingest", "rclicks", file, "--batch", "1", "--json"]);
    assert.equal(res.code, 0, res.err);
    assert.equal(JSON.parse(res.out).online_rows_updated, 3);
    const read = async () => (await client.getOnlineFeatures({ entities: [1, 2, 3].map((id) => ({ keys: { user_id: i64(id) } })), refs: ["rclicks:views"] })).rows.map((r) => plain(r.values[0]!));
    assert.deepEqual(await read(), [3n, 7n, "NOT_FOUND"]);
    const fresh = async () => (await client.getFreshness({ views: ["rclicks"] })).views.map((v) => [Number(v.onlineEntityCount), Number(v.offlineRowCount)]);
    assert.deepEqual(await fresh(), [[2, 4]]);

    fs.writeFileSync(file, ["user_id,event_ts,views", `3,${iso(base)},5`, `4,${iso(base)},5`, `5,${iso(Date.now() + 3600_000)},5`, ""].join("\n"));
    const bad = await run(config, ["ingest", "rclicks", file, "--batch", "1"]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /line 4: event_time: .* in the future/);
    assert.deepEqual(await read(), [3n, 7n, "NOT_FOUND"]);
    assert.deepEqual(await fresh(), [[2, 4]]);
  });
});
