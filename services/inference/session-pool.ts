// The worker threads holding one model version's ONNX Runtime sessions (one session per
// worker), and the per-model dynamic batcher feeding them, as Triton's `dynamic_batching`.

import { Worker } from "node:worker_threads";
import { DeadlineExceededError, UnavailableError } from "../../lib/errors.js";
import { allocate, product, type DenseTensor, type DType } from "./tensors.js";

const WORKER_FILE = new URL("./session-worker.mjs", import.meta.url);

export interface BatchPolicy {
  readonly enabled: boolean;
  readonly maxBatchSize: number;
  readonly maxQueueDelayUs: number;
}

export interface RunResult {
  readonly outputs: Record<string, DenseTensor>;
  readonly queueUs: number;
  readonly computeUs: number;
  readonly batchRows: number;
}

interface Pending {
  readonly feeds: Record<string, DenseTensor>;
  readonly rows: number;
  /** Compatible requests share trailing dims of every input. */
  readonly key: string;
  readonly outputNames: readonly string[] | undefined;
  readonly enqueuedNs: bigint;
  readonly deadline: number;
  /** false for warm-up runs, which stay out of the metrics. */
  readonly tracked: boolean;
  readonly resolve: (r: RunResult) => void;
  readonly reject: (e: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  busy: boolean;
}

interface RawOutput {
  type: DType;
  dims: number[];
  data: DenseTensor["data"];
}

export interface PoolObserver {
  onBatch(rows: number, requests: number): void;
  onExpired(): void;
}

export class SessionPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private queuedRows = 0;
  private timer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (m: { outputs: Record<string, RawOutput>; computeUs: number }) => void; reject: (e: Error) => void }>();
  private inFlight = 0;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  private constructor(
    private readonly policy: () => BatchPolicy,
    private readonly observer: PoolObserver,
  ) {}

  static async open(opts: { path: string; workers: number; intraOpThreads: number; policy: () => BatchPolicy; observer: PoolObserver }): Promise<SessionPool> {
    const pool = new SessionPool(opts.policy, opts.observer);
    try {
      await Promise.all(
        Array.from({ length: Math.max(1, opts.workers) }, async () => {
          const worker = new Worker(WORKER_FILE, { workerData: { path: opts.path, intraOpThreads: opts.intraOpThreads } });
          const slot: Slot = { worker, busy: false };
          pool.slots.push(slot);
          await new Promise<void>((resolve, reject) => {
            worker.once("error", reject);
            worker.once("exit", (code) => reject(new Error(`session worker exited with ${code} while loading`)));
            worker.once("message", (m: { type: string }) => (m.type === "ready" ? resolve() : reject(new Error("unexpected worker message"))));
          });
          worker.removeAllListeners("error").removeAllListeners("exit");
          worker.on("message", (m: { type: string; id: number; outputs?: Record<string, RawOutput>; computeUs?: number; message?: string }) => {
            const w = pool.waiting.get(m.id);
            if (!w) return;
            pool.waiting.delete(m.id);
            if (m.type === "result") w.resolve({ outputs: m.outputs!, computeUs: m.computeUs! });
            else w.reject(new Error(m.message));
          });
          worker.on("error", (err) => {
            for (const [, w] of pool.waiting) w.reject(new UnavailableError(`session worker failed: ${err.message}`));
            pool.waiting.clear();
          });
        }),
      );
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Queues a request; resolves with its slice of the batch outputs. */
  run(feeds: Record<string, DenseTensor>, rows: number, deadline: number, outputNames?: readonly string[], tracked = true): Promise<RunResult> {
    if (this.closed) return Promise.reject(new UnavailableError("model version is unloading; retry"));
    const key = Object.entries(feeds)
      .map(([n, t]) => `${n}:${t.type}:${t.dims.slice(1).join("x")}`)
      .sort()
      .join("|") + `|${outputNames?.join(",") ?? "*"}`;
    return new Promise((resolve, reject) => {
      this.queue.push({ feeds, rows, key, outputNames, enqueuedNs: process.hrtime.bigint(), deadline, tracked, resolve, reject });
      this.queuedRows += rows;
      this.inFlight++;
      this.pump();
    });
  }

  /** Requests queued or running. */
  get pending(): number {
    return this.inFlight;
  }

  private pump(): void {
    for (;;) {
      if (this.queue.length === 0) return;
      const slot = this.slots.find((s) => !s.busy);
      if (!slot) return;
      const p = this.policy();
      if (p.enabled && this.queuedRows < p.maxBatchSize) {
        const waitedUs = Number(process.hrtime.bigint() - this.queue[0]!.enqueuedNs) / 1000;
        const leftUs = p.maxQueueDelayUs - waitedUs;
        if (leftUs > 0) {
          // Wake for whichever comes first: the delay, or a queued request's deadline.
          const earliestDeadlineUs = Math.min(...this.queue.map((q) => q.deadline)) * 1000 - Date.now() * 1000;
          if (earliestDeadlineUs <= 0) {
            this.expire();
            continue;
          }
          if (this.timer) clearTimeout(this.timer);
          this.timer = setTimeout(() => {
            this.timer = undefined;
            this.pump();
          }, Math.max(0, Math.min(leftUs, earliestDeadlineUs + 1000) / 1000));
          return;
        }
      }
      const batch = this.take(p);
      if (batch.length === 0) continue;
      void this.dispatch(slot, batch);
    }
  }

  /** Fails the queued requests whose deadline has passed; they never run. */
  private expire(): void {
    const now = Date.now();
    for (let i = 0; i < this.queue.length; ) {
      const q = this.queue[i]!;
      if (q.deadline > now) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      this.queuedRows -= q.rows;
      this.inFlight--;
      this.observer.onExpired();
      q.reject(new DeadlineExceededError("deadline exceeded while queued for the model; the request did not run"));
    }
    this.settleIdle();
  }

  private take(p: BatchPolicy): Pending[] {
    this.expire();
    const batch: Pending[] = [];
    let rows = 0;
    for (let i = 0; i < this.queue.length; ) {
      const q = this.queue[i]!;
      const fits = batch.length === 0 || (p.enabled && q.key === batch[0]!.key && rows + q.rows <= p.maxBatchSize);
      if (fits) {
        batch.push(q);
        rows += q.rows;
        this.queue.splice(i, 1);
        this.queuedRows -= q.rows;
        if (!p.enabled) break;
      } else i++;
    }
    return batch;
  }

  private async dispatch(slot: Slot, batch: Pending[]): Promise<void> {
    slot.busy = true;
    const startNs = process.hrtime.bigint();
    const totalRows = batch.reduce((n, q) => n + q.rows, 0);
    if (batch.some((q) => q.tracked)) this.observer.onBatch(totalRows, batch.length);
    try {
      const feeds = batch.length === 1 ? batch[0]!.feeds : concatFeeds(batch, totalRows);
      const transfer = batch.length === 1 ? [] : Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer);
      const id = this.nextId++;
      const result = await new Promise<{ outputs: Record<string, RawOutput>; computeUs: number }>((resolve, reject) => {
        this.waiting.set(id, { resolve, reject });
        slot.worker.postMessage({ type: "run", id, feeds, outputNames: batch[0]!.outputNames }, transfer);
      });
      let offset = 0;
      for (const q of batch) {
        const outputs: Record<string, DenseTensor> = {};
        for (const [name, o] of Object.entries(result.outputs)) {
          if (batch.length === 1 || o.dims[0] !== totalRows) outputs[name] = o;
          else {
            const per = product(o.dims.slice(1));
            outputs[name] = { type: o.type, dims: [q.rows, ...o.dims.slice(1)], data: o.data.subarray(offset * per, (offset + q.rows) * per) };
          }
        }
        offset += q.rows;
        q.resolve({ outputs, queueUs: Number(startNs - q.enqueuedNs) / 1000, computeUs: result.computeUs, batchRows: totalRows });
      }
    } catch (err) {
      for (const q of batch) q.reject(err instanceof Error ? err : new Error(String(err)));
    } finally {
      slot.busy = false;
      this.inFlight -= batch.length;
      this.settleIdle();
      this.pump();
    }
  }

  private settleIdle(): void {
    if (this.inFlight === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  /** Resolves once nothing is queued or running (the requests already accepted finish). */
  drained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops accepting, lets accepted requests finish, then ends the workers. */
  async close(): Promise<void> {
    this.closed = true;
    await this.drained();
    if (this.timer) clearTimeout(this.timer);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

function concatFeeds(batch: Pending[], totalRows: number): Record<string, DenseTensor> {
  const out: Record<string, DenseTensor> = {};
  for (const name of Object.keys(batch[0]!.feeds)) {
    const first = batch[0]!.feeds[name]!;
    const per = product(first.dims.slice(1));
    const data = allocate(first.type, totalRows * per);
    let offset = 0;
    for (const q of batch) {
      const t = q.feeds[name]!;
      (data as Float32Array).set(t.data as Float32Array, offset);
      offset += t.data.length;
    }
    out[name] = { type: first.type, dims: [totalRows, ...first.dims.slice(1)], data };
  }
  return out;
}
