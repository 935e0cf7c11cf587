// The worker threads holding one model version's ONNX Runtime sessions (one session per
// worker), and the per-model dynamic batcher feeding them, as Triton's `dynamic_batching`.

import { stat } from "node:fs/promises";
import { Worker } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { DeadlineExceededError, UnavailableError } from "../../lib/errors.js";
import { allocate, product, type DenseTensor, type DType } from "./tensors.js";

const WORKER_FILE = new URL("./session-worker.mjs", import.meta.url);

export interface BatchPolicy {
  readonly enabled: boolean;
  readonly maxBatchSize: number;
  readonly maxQueueDelayUs: number;
  /**
   * A version whose runs take at most this long (µs, timed on the calling thread at load)
   * runs requests of up to INLINE_MAX_ROWS rows there, with no worker round trip, while that
   * thread is under INLINE_MAX_LOOP_BUSY and unless batching waits (maxQueueDelayUs > 0);
   * 0 = always on the workers.
   */
  readonly inlineMaxUs: number;
}

export interface RunResult {
  readonly outputs: Record<string, DenseTensor>;
  readonly queueUs: number;
  readonly computeUs: number;
  readonly batchRows: number;
  /** Ran on the calling thread (see BatchPolicy.inlineMaxUs). */
  readonly inline: boolean;
}

/** Largest request run inline: beyond it the workers (and batching) do better. */
export const INLINE_MAX_ROWS = 16;
/** Largest model file given a second session on the calling thread (memory is spent twice). */
export const INLINE_MAX_MODEL_BYTES = 16 * 1024 * 1024;
/** Warm-up runs timed on the calling thread to decide whether a version runs inline. */
const INLINE_CALIBRATION_RUNS = 25;
/**
 * Inline only while this thread has time to spare (event-loop utilisation over the last
 * sample): then a run here is pure latency saved. A busy thread is the whole service's
 * bottleneck, and the workers run models on the other cores in parallel with it.
 */
const INLINE_MAX_LOOP_BUSY = 0.75;
const LOOP_SAMPLE_MS = 100;

/** This thread's event-loop utilisation over the last LOOP_SAMPLE_MS, sampled while any pool runs inline. */
const loopBusy = {
  value: 0,
  last: performance.eventLoopUtilization(),
  users: 0,
  timer: undefined as NodeJS.Timeout | undefined,
  hold(): void {
    if (this.users++ > 0) return;
    this.last = performance.eventLoopUtilization();
    this.timer = setInterval(() => {
      const now = performance.eventLoopUtilization();
      this.value = performance.eventLoopUtilization(now, this.last).utilization;
      this.last = now;
    }, LOOP_SAMPLE_MS).unref();
  },
  release(): void {
    if (--this.users > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.value = 0;
  },
};

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
  worker: Worker;
  busy: boolean;
  /** The id of the batch the worker is running. */
  current: number | undefined;
  restarts: number;
  /** false from the worker's death until its replacement is ready. */
  alive: boolean;
}

/** A batch whose every deadline passed this long ago with no answer: the worker is stuck. */
const STUCK_GRACE_MS = 2000;

interface RawOutput {
  type: DType;
  dims: number[];
  data: DenseTensor["data"];
}

interface WorkerResult {
  outputs: Record<string, RawOutput>;
  computeUs: number;
  /** Lent input buffers, moved back. */
  inputs?: Record<string, DenseTensor["data"]>;
}

/** Below this many input bytes a copy costs less than moving the buffers there and back. */
const LEND_MIN_BYTES = 64 * 1024;

/** Every input owns its whole (non-shared) buffer, and together they are worth moving. */
function lendable(feeds: Record<string, DenseTensor>): boolean {
  let bytes = 0;
  const seen = new Set<ArrayBufferLike>();
  for (const n in feeds) {
    const d = feeds[n]!.data;
    if (!(d.buffer instanceof ArrayBuffer) || d.byteOffset !== 0 || d.byteLength !== d.buffer.byteLength || seen.has(d.buffer)) return false;
    seen.add(d.buffer);
    bytes += d.byteLength;
  }
  return bytes >= LEND_MIN_BYTES;
}

export interface PoolObserver {
  onBatch(rows: number, requests: number): void;
  onExpired(): void;
  /** A request ran on the calling thread. */
  onInline?(): void;
}

export class SessionPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private queuedRows = 0;
  private timer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (m: WorkerResult) => void; reject: (e: Error) => void }>();
  private inFlight = 0;
  private pumpScheduled = false;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  /**
   * Small models run on the calling thread: for a model that computes in microseconds, the
   * worker round trip (a postMessage each way and two thread wake-ups, 200-300 µs on a busy
   * 2-core machine) costs far more than the run. See calibrateInline().
   */
  private inlineSession: ort.InferenceSession | undefined;
  /** Median run time of the warm-up input on the calling thread (µs), once calibrated. */
  private inlineRunUs = Infinity;

  private constructor(
    private readonly policy: () => BatchPolicy,
    private readonly observer: PoolObserver,
  ) {}

  static async open(opts: { path: string; workers: number; intraOpThreads: number; policy: () => BatchPolicy; observer: PoolObserver }): Promise<SessionPool> {
    const pool = new SessionPool(opts.policy, opts.observer);
    pool.workerData = { path: opts.path, intraOpThreads: opts.intraOpThreads };
    try {
      await Promise.all(
        Array.from({ length: Math.max(1, opts.workers) }, async () => {
          const slot: Slot = { worker: undefined as unknown as Worker, busy: true, current: undefined, restarts: 0, alive: false };
          pool.slots.push(slot);
          await pool.startWorker(slot);
        }),
      );
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  private workerData!: { path: string; intraOpThreads: number };
  private readonly restartTimers = new Set<NodeJS.Timeout>();

  /** (Re)starts the slot's worker; the slot takes work once the session is loaded. */
  private async startWorker(slot: Slot): Promise<void> {
    const worker = new Worker(WORKER_FILE, { workerData: this.workerData });
    slot.worker = worker;
    await new Promise<void>((resolve, reject) => {
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`session worker exited with ${code} while loading`)));
      worker.once("message", (m: { type: string }) => (m.type === "ready" ? resolve() : reject(new Error("unexpected worker message"))));
    });
    worker.removeAllListeners("error").removeAllListeners("exit");
    worker.on("message", (m: { type: string; id: number; outputs?: Record<string, RawOutput>; inputs?: Record<string, DenseTensor["data"]>; computeUs?: number; message?: string }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (slot.current === m.id) slot.current = undefined;
      if (m.type === "result") w.resolve({ outputs: m.outputs!, computeUs: m.computeUs!, inputs: m.inputs });
      else w.reject(new Error(m.message));
    });
    // A worker that dies (a native crash, an uncaught error) or is stopped by the watchdog
    // fails only the batch it held, and is replaced: the pool never waits on a dead thread.
    worker.on("error", (err) => this.workerGone(slot, worker, err.message));
    worker.on("exit", (code) => this.workerGone(slot, worker, `exited with code ${code}`));
    slot.alive = true;
    slot.busy = false;
    this.pump();
  }

  private workerGone(slot: Slot, worker: Worker, why: string): void {
    if (slot.worker !== worker || !slot.alive || this.closed) return;
    slot.alive = false;
    slot.busy = true;
    const id = slot.current;
    slot.current = undefined;
    if (id !== undefined) {
      const w = this.waiting.get(id);
      this.waiting.delete(id);
      w?.reject(new UnavailableError(`session worker ${why}; the batch did not complete`));
    }
    worker.removeAllListeners();
    retire(worker);
    slot.restarts++;
    // Back off a little if a worker keeps dying (a model that crashes ONNX Runtime).
    const delay = Math.min(5000, 50 * 2 ** Math.min(slot.restarts - 1, 7));
    const restart = setTimeout(() => {
      this.restartTimers.delete(restart);
      if (this.closed) return;
      this.startWorker(slot).catch(() => {
        // Loading failed: try again later, the same way.
        slot.alive = true;
        this.workerGone(slot, slot.worker, "could not restart");
      });
    }, delay);
    this.restartTimers.add(restart);
  }

  /**
   * Queues a request; resolves with its slice of the batch outputs. Large input buffers
   * (≥ 64 KiB) are moved to the worker and back rather than copied: while the run is
   * pending they are detached, and afterwards `feeds[name].data` is a new array over the
   * same bytes. Keep no other reference to them across the call.
   */
  run(feeds: Record<string, DenseTensor>, rows: number, deadline: number, outputNames?: readonly string[], tracked = true): Promise<RunResult> {
    if (this.closed) return Promise.reject(new UnavailableError("model version is unloading; retry"));
    // Not when the policy asks requests to wait for others to batch with (a queue delay).
    const p = this.inlineSession ? this.policy() : undefined;
    if (p && rows <= INLINE_MAX_ROWS && this.queue.length === 0 && loopBusy.value <= INLINE_MAX_LOOP_BUSY && this.inlineRunUs <= p.inlineMaxUs && (!p.enabled || p.maxQueueDelayUs === 0)) {
      return this.runInline(this.inlineSession!, feeds, rows, deadline, outputNames, tracked);
    }
    const key = batchKey(feeds, outputNames);
    return new Promise((resolve, reject) => {
      this.queue.push({ feeds, rows, key, outputNames, enqueuedNs: process.hrtime.bigint(), deadline, tracked, resolve, reject });
      this.queuedRows += rows;
      this.inFlight++;
      if (this.policy().enabled) this.pumpSoon();
      else this.pump();
    });
  }

  private async runInline(
    session: ort.InferenceSession,
    feeds: Record<string, DenseTensor>,
    rows: number,
    deadline: number,
    outputNames: readonly string[] | undefined,
    tracked: boolean,
  ): Promise<RunResult> {
    if (deadline <= Date.now()) {
      this.observer.onExpired();
      throw new DeadlineExceededError("deadline exceeded before the model ran; the request did not run");
    }
    this.inFlight++;
    const started = process.hrtime.bigint();
    try {
      const input: Record<string, ort.Tensor> = {};
      for (const n in feeds) {
        const t = feeds[n]!;
        input[n] = new ort.Tensor(t.type, t.data as never, t.dims);
      }
      const result = outputNames ? await session.run(input, outputNames as string[]) : await session.run(input);
      const outputs: Record<string, DenseTensor> = {};
      for (const n in result) {
        const t = result[n]!;
        outputs[n] = { type: t.type as DType, dims: t.dims.map(Number), data: t.data as DenseTensor["data"] };
      }
      const computeUs = Number(process.hrtime.bigint() - started) / 1000;
      if (tracked) {
        this.observer.onBatch(rows, 1);
        this.observer.onInline?.();
      }
      return { outputs, queueUs: 0, computeUs, batchRows: rows, inline: true };
    } finally {
      this.inFlight--;
      this.settleIdle();
    }
  }

  /**
   * Decides whether this version runs small requests on the calling thread: with
   * BatchPolicy.inlineMaxUs above 0 and a model file of at most INLINE_MAX_MODEL_BYTES, a
   * session is opened here and `feeds` (the warm-up input) timed through it; the version goes
   * inline when the median run takes at most inlineMaxUs, otherwise the session is released.
   * Timed here, not on the workers: a worker woken from sleep runs several times slower.
   */
  async calibrateInline(feeds: Record<string, DenseTensor>): Promise<void> {
    const limit = this.policy().inlineMaxUs;
    if (limit <= 0 || this.closed || this.inlineSession) return;
    const size = (await stat(this.workerData.path)).size;
    if (size > INLINE_MAX_MODEL_BYTES) return;
    // One thread, the caller's: an inline run must never fan out over the machine's cores.
    const session = await ort.InferenceSession.create(this.workerData.path, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all" });
    try {
      const times: number[] = [];
      for (let i = 0; i < INLINE_CALIBRATION_RUNS; i++) {
        const input: Record<string, ort.Tensor> = {};
        for (const n in feeds) input[n] = new ort.Tensor(feeds[n]!.type, feeds[n]!.data as never, feeds[n]!.dims);
        const t = process.hrtime.bigint();
        await session.run(input);
        times.push(Number(process.hrtime.bigint() - t) / 1000);
      }
      times.sort((x, y) => x - y);
      const median = times[times.length >> 1]!;
      if (median > limit || this.closed) return void (await session.release().catch(() => undefined));
      this.inlineRunUs = median;
      this.inlineSession = session;
      loopBusy.hold();
    } catch (err) {
      await session.release().catch(() => undefined);
      throw err;
    }
  }

  /** The calibrated inline run time (µs), or undefined when this version runs on its workers only. */
  get inlineUs(): number | undefined {
    return this.inlineSession ? this.inlineRunUs : undefined;
  }

  /** Requests queued or running. */
  get pending(): number {
    return this.inFlight;
  }

  /**
   * With batching on, dispatch after the current event-loop turn: requests whose bytes came
   * in the same socket read (many, under load) all reach the queue first and leave as one
   * batch, where dispatching each at once would hand a lone row to whichever worker is idle.
   * Costs one setImmediate (a few µs) per turn, no timer.
   */
  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
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
    const worker0 = slot.worker;
    const startNs = process.hrtime.bigint();
    const totalRows = batch.reduce((n, q) => n + q.rows, 0);
    if (batch.some((q) => q.tracked)) this.observer.onBatch(totalRows, batch.length);
    try {
      const feeds = batch.length === 1 ? batch[0]!.feeds : concatFeeds(batch, totalRows);
      // A concatenated batch is ours: move it. A lone request's large buffers are lent (moved
      // there and back) instead of copied; small ones are cheaper to copy than to detach.
      const lend = batch.length === 1 && lendable(feeds);
      const transfer = batch.length > 1 || lend ? Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer) : [];
      const id = this.nextId++;
      // Watchdog: ONNX Runtime's run() cannot be interrupted, so a worker still silent after
      // every caller's deadline (plus a grace) is terminated and replaced (see workerGone).
      let latest = 0;
      for (const q of batch) if (q.deadline > latest) latest = q.deadline;
      const worker = slot.worker;
      const watchdog = setTimeout(() => this.workerGone(slot, worker, "was stuck past every caller's deadline"), Math.max(0, latest - Date.now()) + STUCK_GRACE_MS);
      watchdog.unref();
      slot.current = id;
      const result = await new Promise<WorkerResult>((resolve, reject) => {
        this.waiting.set(id, { resolve, reject });
        worker.postMessage({ type: "run", id, feeds, outputNames: batch[0]!.outputNames, lend }, transfer);
      }).finally(() => clearTimeout(watchdog));
      // The request (and the prediction log after it) sees its inputs again.
      if (lend && result.inputs) for (const [name, data] of Object.entries(result.inputs)) feeds[name] = { ...feeds[name]!, data };
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
        q.resolve({ outputs, queueUs: Number(startNs - q.enqueuedNs) / 1000, computeUs: result.computeUs, batchRows: totalRows, inline: false });
      }
    } catch (err) {
      for (const q of batch) q.reject(err instanceof Error ? err : new Error(String(err)));
    } finally {
      if (slot.alive && slot.worker === worker0) slot.busy = false;
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
    for (const t of this.restartTimers) clearTimeout(t);
    this.restartTimers.clear();
    // With no live worker left (and none coming back), queued requests can only fail.
    if (!this.slots.some((s) => s.alive)) {
      for (const q of this.queue.splice(0)) {
        this.inFlight--;
        q.reject(new UnavailableError("model version is unloading and its workers are gone; retry"));
      }
      this.queuedRows = 0;
      this.settleIdle();
    }
    await this.drained();
    if (this.timer) clearTimeout(this.timer);
    const inline = this.inlineSession;
    this.inlineSession = undefined;
    if (inline) loopBusy.release();
    await Promise.all([...this.slots.map((s) => s.worker.terminate()), inline?.release().catch(() => undefined)]);
  }
}

/**
 * Ends a worker the pool has given up on, without killing the process: Worker.terminate()
 * while ONNX Runtime is inside run() aborts the whole process (a Napi::Error thrown from the
 * native side), so a worker that may still be running is ended only once it is idle again —
 * when its run answers. One that never answers is left to the process's end (unref'd).
 */
function retire(worker: Worker): void {
  const end = () => void worker.terminate().catch(() => undefined);
  worker.once("message", end);
  worker.once("error", end);
  worker.unref();
  // A worker that already exited (a crash, process.exit) has nothing left to run: end now.
  if (worker.threadId < 0) end();
}

/**
 * Requests may share a batch when every input has the same type and trailing dims and they
 * want the same outputs. Built on every request, so without the sort/join of a generic form:
 * feeds arrive in the model's input order from the request builders.
 */
export function batchKey(feeds: Record<string, DenseTensor>, outputNames: readonly string[] | undefined): string {
  let key = "";
  for (const n in feeds) {
    const t = feeds[n]!;
    key += `${n}:${t.type}`;
    for (let i = 1; i < t.dims.length; i++) key += `x${t.dims[i]}`;
    key += "|";
  }
  if (outputNames) for (const o of outputNames) key += `>${o}`;
  return key;
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
