// PredictionLog against a bus whose store can be switched off: batches spool while it does
// not ack, replay in order with their msg ids when it does, and a spool left at shutdown is
// replayed by the next open before anything new. PII columns are hashed.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { Registry } from "prom-client";
import { PredictionLogBatchSchema } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import type { EventBus, PublishAck } from "../../lib/events.js";
import { createLogger } from "../../lib/logger.js";
import { createPredictionLogMetrics, PredictionLog } from "./prediction-log.js";

/** Stores by msg id (dedup); while down, publishes wait (as JetStreamBus retries) until up. */
class FlakyBus {
  readonly kind = "nats" as const;
  up = true;
  readonly stored: Array<{ subject: string; msgId: string; data: Uint8Array }> = [];
  /** Every msg id a publish was attempted with, acked or not. */
  readonly attempts: string[] = [];
  /** When set, the store goes down after acking this many more publishes. */
  ackBudget: number | undefined;
  private waiting: Array<() => void> = [];
  setUp(up: boolean): void {
    this.up = up;
    if (up) for (const w of this.waiting.splice(0)) w();
  }
  async publishEncoded(subject: string, data: Uint8Array, opts: { msgId: string }): Promise<PublishAck> {
    this.attempts.push(opts.msgId);
    if (this.ackBudget !== undefined && this.ackBudget-- <= 0) this.up = false;
    while (!this.up) await new Promise<void>((r) => this.waiting.push(r));
    const dup = this.stored.some((s) => s.msgId === opts.msgId);
    if (!dup) this.stored.push({ subject, msgId: opts.msgId, data });
    return { stream: "MLMESH_INFERENCE", seq: this.stored.length, duplicate: dup };
  }
  records(): Array<{ requestId: string; rowIndex: number; inputs: Record<string, unknown> }> {
    return this.stored.flatMap((s) => fromBinary(PredictionLogBatchSchema, s.data).records.map((r) => ({ requestId: r.requestId, rowIndex: r.rowIndex, inputs: r.inputs })));
  }
}

const logger = createLogger({ level: (process.env.PLOG_LEVEL ?? "silent") as never, service: "test" });
const waitFor = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), `not met in time: ${cond.toString()}`);
};

function call(requestId: string, n: number) {
  return {
    requestId,
    modelName: "m",
    version: 1,
    latencyUs: 10,
    timeMs: Date.now(),
    rowCount: n,
    feeds: { x: { type: "float32" as const, dims: [n, 2], data: Float32Array.from({ length: 2 * n }, (_, i) => i) } },
    outputs: Array.from({ length: n }, (_, i) => ({ score: i / n })),
  };
}

async function openLog(bus: FlakyBus, dataDir: string, extra: Record<string, unknown> = {}) {
  return PredictionLog.open({
    bus: bus as unknown as EventBus,
    dataDir,
    metrics: createPredictionLogMetrics(new Registry()),
    logger,
    options: { maxBatchRecords: 7, flushIntervalMs: 10, publishTimeoutMs: 100, retryIntervalMs: 50, ...extra },
  });
}

describe("prediction log", () => {
  it("spools while the bus does not ack and replays in order, once each", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plog-"));
    const bus = new FlakyBus();
    const log = await openLog(bus, dir);
    log.log(call("a", 10));
    await waitFor(() => bus.records().length === 10);
    bus.setUp(false);
    log.log(call("b", 10));
    log.log(call("c", 5));
    const spool = path.join(dir, "inference", "prediction-log.spool");
    await waitFor(() => fs.existsSync(spool) && fs.statSync(spool).size > 0);
    await new Promise((r) => setTimeout(r, 300));
    bus.setUp(true);
    await waitFor(() => bus.records().length === 25 && fs.statSync(spool).size === 0);
    const recs = bus.records().map((r) => `${r.requestId}${r.rowIndex}`);
    const want = [...Array.from({ length: 10 }, (_, i) => `a${i}`), ...Array.from({ length: 10 }, (_, i) => `b${i}`), ...Array.from({ length: 5 }, (_, i) => `c${i}`)];
    assert.deepEqual(recs, want);
    await log.close();
  });

  it("leaves unacked batches spooled at shutdown; the next open replays them first", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plog-"));
    const bus = new FlakyBus();
    bus.setUp(false);
    const log = await openLog(bus, dir);
    log.log(call("x", 9));
    await log.close(200);
    const spool = path.join(dir, "inference", "prediction-log.spool");
    assert.ok(fs.statSync(spool).size > 0);

    const bus2 = new FlakyBus();
    const log2 = await openLog(bus2, dir);
    log2.log(call("y", 3));
    await waitFor(() => bus2.records().length === 12 && fs.statSync(spool).size === 0);
    assert.deepEqual(bus2.records().map((r) => r.requestId), [...Array(9).fill("x"), ...Array(3).fill("y")]);
    await log2.close();
  });

  it("replays whole entries of a spool with a torn tail (a crash mid-write) and drops the tail", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plog-"));
    const down = new FlakyBus();
    down.setUp(false);
    const log = await openLog(down, dir);
    log.log(call("t", 4));
    await log.close(150);
    const spool = path.join(dir, "inference", "prediction-log.spool");
    fs.appendFileSync(spool, Buffer.from([0, 0, 1, 0, 1, 2]));
    const bus = new FlakyBus();
    const log2 = await openLog(bus, dir);
    await waitFor(() => bus.records().length === 4 && fs.statSync(spool).size === 0);
    await log2.close();
  });

  it("a restart in the middle of a replay goes on from the persisted offset: nothing acked is sent again", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plog-"));
    const down = new FlakyBus();
    down.setUp(false);
    const log = await openLog(down, dir);
    log.log(call("r", 30)); // 5 batches of at most 7
    await log.close(200);
    const spool = path.join(dir, "inference", "prediction-log.spool");
    assert.ok(fs.statSync(spool).size > 0);

    // The next run acks two batches of the replay, then NATS stops answering and it shuts down.
    const partial = new FlakyBus();
    partial.ackBudget = 2;
    const log2 = await openLog(partial, dir);
    await waitFor(() => partial.stored.length === 2 && partial.attempts.length === 3);
    await log2.close(150);
    assert.ok(fs.statSync(spool).size > 0, "the rest stays spooled");
    assert.equal(fs.readFileSync(`${spool}.offset`).length, 8);

    // The one after sends only the rest, in order.
    const bus = new FlakyBus();
    const log3 = await openLog(bus, dir);
    await waitFor(() => bus.records().length === 30 - 14 && fs.statSync(spool).size === 0);
    const acked = new Set(partial.stored.map((p) => p.msgId));
    assert.deepEqual(bus.attempts.filter((id) => acked.has(id)), [], "no acked batch is sent again");
    const all = [...partial.records(), ...bus.records()].map((r) => `${r.requestId}${r.rowIndex}`);
    assert.deepEqual(all, Array.from({ length: 30 }, (_, i) => `r${i}`));
    assert.equal(fs.readFileSync(`${spool}.offset`).readBigUInt64BE(0), 0n, "offset reset once the spool is empty");
    await log3.close();
  });

  it("hashes PII columns with a salted HMAC-SHA256", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plog-"));
    const bus = new FlakyBus();
    const log = await openLog(bus, dir, { piiColumns: new Set(["x"]), piiSalt: "pepper" });
    log.log(call("p", 1));
    await waitFor(() => bus.records().length === 1);
    const v = bus.records()[0]!.inputs["x"] as { kind: { case: string; value: string } };
    assert.equal(v.kind.case, "stringValue");
    assert.equal(v.kind.value, createHmac("sha256", "pepper").update("0,1").digest("hex"));
    await log.close();
  });
});
