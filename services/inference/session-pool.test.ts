import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { DomainError } from "../../lib/errors.js";
import { REPO_ROOT } from "../../test/support/mlmesh-process.js";
import { SessionPool, type BatchPolicy } from "./session-pool.js";

const MODEL = path.join(REPO_ROOT, "test/fixtures/models/lr_v1.onnx");
const sigmoid = (x: number[]) => 1 / (1 + Math.exp(-(0.5 * x[0]! - 1.25 * x[1]! + 2 * x[2]! + 0.1)));
const feeds = (x: number[]) => ({ x: { type: "float32" as const, dims: [1, 3], data: Float32Array.from(x) } });

async function openPool(policy: BatchPolicy) {
  const batches: number[] = [];
  let expired = 0;
  let inline = 0;
  const pool = await SessionPool.open({
    path: MODEL,
    workers: 1,
    intraOpThreads: 1,
    policy: () => policy,
    observer: { onBatch: (rows) => batches.push(rows), onExpired: () => expired++, onInline: () => inline++ },
  });
  return { pool, batches, expired: () => expired, inline: () => inline };
}

describe("SessionPool: dynamic batching on worker threads", () => {
  it("runs queued requests as one batch and hands each its own rows", async () => {
    const { pool, batches } = await openPool({ enabled: true, maxBatchSize: 8, maxQueueDelayUs: 20_000, inlineMaxUs: 0 });
    try {
      const xs = Array.from({ length: 10 }, (_, i) => [i / 10, 1 - i / 10, i % 3]);
      const results = await Promise.all(xs.map((x) => pool.run(feeds(x), 1, Date.now() + 5_000)));
      results.forEach((r, i) => assert.ok(Math.abs(Number(r.outputs.score!.data[0]) - sigmoid(xs[i]!)) < 1e-6));
      assert.deepEqual(batches, [8, 2]);
      assert.equal(results[0]!.batchRows, 8);
    } finally {
      await pool.close();
    }
  });

  it("replaces a worker that dies: its batch fails UNAVAILABLE, later requests are served", async () => {
    const { pool } = await openPool({ enabled: false, maxBatchSize: 8, maxQueueDelayUs: 0, inlineMaxUs: 0 });
    try {
      // The only worker dies while a request is on it (what a native crash in ONNX Runtime
      // does: its "exit" event). Terminating it from here instead would abort this process:
      // ONNX Runtime throws from native code when its thread is stopped inside run().
      const n = 500_000;
      const running = pool.run({ x: { type: "float32", dims: [n, 3], data: new Float32Array(n * 3) } }, n, Date.now() + 5_000);
      const slot = (pool as unknown as { slots: Array<{ worker: import("node:worker_threads").Worker }> }).slots[0]!;
      slot.worker.emit("exit", 134);
      await assert.rejects(running, (e: unknown) => e instanceof DomainError && e.code === Code.Unavailable);
      const after = await pool.run(feeds([0.5, 0.25, 1]), 1, Date.now() + 10_000);
      assert.ok(Math.abs(Number(after.outputs.score!.data[0]) - sigmoid([0.5, 0.25, 1])) < 1e-6);
    } finally {
      await pool.close();
    }
  });

  it("runs every request alone when batching is off", async () => {
    const { pool, batches } = await openPool({ enabled: false, maxBatchSize: 8, maxQueueDelayUs: 20_000, inlineMaxUs: 0 });
    try {
      await Promise.all([1, 2, 3].map((i) => pool.run(feeds([i, 0, 0]), 1, Date.now() + 5_000)));
      assert.deepEqual(batches, [1, 1, 1]);
    } finally {
      await pool.close();
    }
  });

  it("fails a request whose deadline passes while queued, without running it", async () => {
    const { pool, batches, expired } = await openPool({ enabled: true, maxBatchSize: 8, maxQueueDelayUs: 2_000_000, inlineMaxUs: 0 });
    try {
      const started = Date.now();
      await assert.rejects(pool.run(feeds([1, 2, 3]), 1, Date.now() + 50), (e: unknown) => e instanceof DomainError && e.code === Code.DeadlineExceeded);
      assert.ok(Date.now() - started < 1_000);
      assert.equal(expired(), 1);
      assert.deepEqual(batches, []);
    } finally {
      await pool.close();
    }
  });

  it("with workers busy, gathers everything queued into one batch even with no queue delay", async () => {
    const { pool, batches } = await openPool({ enabled: true, maxBatchSize: 64, maxQueueDelayUs: 0, inlineMaxUs: 0 });
    try {
      // Arriving in the same event-loop turn (as requests read from one socket do): one run.
      const xs = Array.from({ length: 12 }, (_, i) => [i, -i, i / 2]);
      const results = await Promise.all(xs.map((x) => pool.run(feeds(x), 1, Date.now() + 5_000)));
      results.forEach((r, i) => assert.ok(Math.abs(Number(r.outputs.score!.data[0]) - sigmoid(xs[i]!)) < 1e-6));
      assert.deepEqual(batches, [12]);
    } finally {
      await pool.close();
    }
  });

  it("lends a large request's buffers to the worker and gives them back intact", async () => {
    const { pool } = await openPool({ enabled: false, maxBatchSize: 8, maxQueueDelayUs: 0, inlineMaxUs: 0 });
    try {
      const n = 8000; // 96 KB of float32: above the lending threshold
      const data = Float32Array.from({ length: n * 3 }, (_, i) => ((i * 37) % 101) / 50 - 1);
      const copy = data.slice();
      const big = { x: { type: "float32" as const, dims: [n, 3], data } };
      const r = await pool.run(big, n, Date.now() + 10_000);
      assert.equal(data.length, 0, "the caller's original array was moved, not copied");
      assert.deepEqual(big.x.data, copy, "the feeds hold the same values again");
      for (const row of [0, 1234, n - 1]) {
        assert.ok(Math.abs(Number(r.outputs.score!.data[row]) - sigmoid(Array.from(copy.subarray(row * 3, row * 3 + 3)))) < 1e-6);
      }
    } finally {
      await pool.close();
    }
  });

  it("runs a small model on the calling thread once calibrated there, with the same answers", async () => {
    const { pool, inline } = await openPool({ enabled: true, maxBatchSize: 8, maxQueueDelayUs: 0, inlineMaxUs: 10_000 });
    try {
      const before = await pool.run(feeds([1, 2, 3]), 1, Date.now() + 5_000);
      assert.equal(before.inline, false, "on the workers until calibrated");
      await pool.calibrateInline(feeds([0, 0, 0]));
      assert.ok(pool.inlineUs !== undefined && pool.inlineUs > 0 && pool.inlineUs <= 10_000, `calibrated: ${pool.inlineUs} µs`);
      for (let i = 0; i < 50; i++) {
        const x = [i / 7, 1 - i / 9, i % 5];
        const r = await pool.run(feeds(x), 1, Date.now() + 5_000);
        assert.equal(r.inline, true);
        assert.ok(Math.abs(Number(r.outputs.score!.data[0]) - sigmoid(x)) < 1e-6, `answer ${i}`);
      }
      assert.equal(inline(), 50);
      // A busy thread hands runs back to the workers (they run on other cores), an idle one takes them again.
      const spinUntil = performance.now() + 400;
      while (performance.now() < spinUntil) {
        const end = performance.now() + 40;
        while (performance.now() < end);
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal((await pool.run(feeds([1, 1, 1]), 1, Date.now() + 5_000)).inline, false, "busy: workers");
      await new Promise((resolve) => setTimeout(resolve, 350));
      assert.equal((await pool.run(feeds([1, 1, 1]), 1, Date.now() + 5_000)).inline, true, "idle again: inline");
      // Larger requests still go to the workers.
      const n = 17;
      const big = { x: { type: "float32" as const, dims: [n, 3], data: Float32Array.from({ length: n * 3 }, (_, i) => (i % 7) / 7) } };
      const r = await pool.run(big, n, Date.now() + 5_000);
      assert.equal(r.inline, false);
      assert.ok(Math.abs(Number(r.outputs.score!.data[n - 1]) - sigmoid(Array.from(big.x.data.subarray((n - 1) * 3)))) < 1e-6);
      // A request already past its deadline does not run.
      await assert.rejects(pool.run(feeds([1, 2, 3]), 1, Date.now() - 1), (e: unknown) => e instanceof DomainError && e.code === Code.DeadlineExceeded);
      assert.equal(pool.pending, 0);
    } finally {
      await pool.close();
    }
  });

  it("keeps a model slower than the limit, or every model with the limit at 0, on the workers", async () => {
    for (const inlineMaxUs of [0, 0.001]) {
      const { pool, inline } = await openPool({ enabled: false, maxBatchSize: 8, maxQueueDelayUs: 0, inlineMaxUs });
      try {
        await pool.calibrateInline(feeds([0, 0, 0]));
        assert.equal(pool.inlineUs, undefined);
        for (let i = 0; i < 20; i++) assert.equal((await pool.run(feeds([i, 0, 1]), 1, Date.now() + 5_000)).inline, false);
        assert.equal(inline(), 0);
      } finally {
        await pool.close();
      }
    }
  });
});
