// CSV to CSV batch scoring on worker threads that each parse, score (own ONNX Runtime
// session) and format whole chunks: the main thread only reads the file in large blocks,
// cuts them at record boundaries, hands them out and writes results back in input order.
// Line numbers are kept: each worker counts its chunk's lines, the main thread adds them up.

import fs from "node:fs/promises";
import { Worker } from "node:worker_threads";
import { CsvFormatError } from "../drift/csv-drift.js";
import { AbortedError } from "../errors.js";
import { headerEnd, lastRecordEnd, type ChunkBadRow, type ChunkPlan, type OutColumn } from "./csv-chunk.mjs";
import type { RowSink } from "./sink.js";

const WORKER_FILE = new URL("./chunk-worker.mjs", import.meta.url);
/** Bounds of a chunk's byte size (the target is batchRows rows of the file's average width). */
const MIN_CHUNK_BYTES = 16 * 1024;
const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
const SAMPLE_BYTES = 256 * 1024;

export interface WorkerSetup {
  /** The verified ONNX file each worker opens. */
  readonly artifact: string;
  readonly plan: ChunkPlan;
  /** `,model_name,model_version` as CSV text. */
  readonly prefix: string;
  readonly outCols: readonly OutColumn[];
  readonly workers: number;
}

export interface ChunkCounts {
  readonly rowsRead: number;
  readonly rowsScored: number;
  readonly rowsRejected: number;
}

export interface WorkerRun {
  readonly path: string;
  readonly batchRows: number;
  /** Takes CSV rows as bytes, in order. */
  readonly sink: { writeBytes(bytes: Uint8Array): Promise<void> };
  readonly reject?: RowSink;
  readonly signal?: AbortSignal;
  /** After each chunk is written (cumulative counts). */
  readonly onChunk?: (c: ChunkCounts) => void;
  /** A bad row without skipBadRows: the error to throw (1-based line of the file). */
  readonly badRow: (line: number, column: string, problem: string) => Error;
}

type WorkerMessage =
  | { type: "result"; seq: number; lines: number; rows: number; rejects: Array<ChunkBadRow & { cells: string[] }>; bad: ChunkBadRow | undefined; out: Uint8Array | undefined }
  | { type: "format"; seq: number; line: number; column: number | undefined; problem: string }
  | { type: "error"; seq: number; message: string };

interface Slot {
  readonly worker: Worker;
  outstanding: number;
}

/** Worker threads holding the model, ready for one run; close() ends them. */
export class ChunkWorkers {
  private readonly waiting = new Map<number, { slot: Slot; resolve: (m: WorkerMessage) => void; reject: (e: Error) => void }>();
  private nextSeq = 0;

  private constructor(private readonly slots: Slot[]) {}

  static async open(s: WorkerSetup): Promise<ChunkWorkers> {
    const slots: Slot[] = [];
    const pool = new ChunkWorkers(slots);
    try {
      await Promise.all(
        Array.from({ length: Math.max(1, s.workers) }, async () => {
          const worker = new Worker(WORKER_FILE, { workerData: { artifact: s.artifact, plan: s.plan, prefix: s.prefix, outCols: s.outCols } });
          slots.push({ worker, outstanding: 0 });
          await new Promise<void>((resolve, reject) => {
            worker.once("error", reject);
            worker.once("exit", (code) => reject(new Error(`scoring worker exited with ${code} while loading the model`)));
            worker.once("message", () => resolve());
          });
          worker.removeAllListeners("error").removeAllListeners("exit");
          worker.on("message", (m: WorkerMessage) => {
            const w = pool.waiting.get(m.seq);
            if (!w) return;
            pool.waiting.delete(m.seq);
            // Counted down as soon as the worker is done, not when its turn to be written
            // comes, so an idle worker gets the next chunk while an older one is still out.
            w.slot.outstanding--;
            w.resolve(m);
          });
          const fail = (err: Error) => {
            for (const [, w] of pool.waiting) w.reject(err);
            pool.waiting.clear();
          };
          worker.on("error", (err) => fail(new Error(`scoring worker failed: ${err.message}`)));
          worker.on("exit", (code) => fail(new Error(`scoring worker exited with ${code}`)));
        }),
      );
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  private dispatch(buffer: ArrayBuffer, length: number): Promise<WorkerMessage> {
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.outstanding < slot.outstanding) slot = s;
    const seq = this.nextSeq++;
    slot.outstanding++;
    const done = new Promise<WorkerMessage>((resolve, reject) => this.waiting.set(seq, { slot, resolve, reject }));
    slot.worker.postMessage({ type: "chunk", seq, buffer, length }, [buffer]);
    return done;
  }

  /** Scores the CSV body of `path` into the sink; returns the counts. */
  async run(o: WorkerRun): Promise<ChunkCounts> {
    const fh = await fs.open(o.path, "r");
    let rowsRead = 0;
    let rowsScored = 0;
    let rowsRejected = 0;
    /** Chunks handed out, oldest first (results are written in this order). */
    const inFlight: Array<Promise<WorkerMessage>> = [];
    try {
      // The header was read and checked by the source; find where it ends in bytes.
      let sample = new Uint8Array(SAMPLE_BYTES);
      let sampleLength = (await fh.read(sample, 0, sample.length, 0)).bytesRead;
      const bom = sampleLength >= 3 && sample[0] === 0xef && sample[1] === 0xbb && sample[2] === 0xbf ? 3 : 0;
      let head = headerEnd(sample.subarray(0, sampleLength), bom);
      while (!head && sampleLength === sample.length) {
        const bigger = new Uint8Array(sample.length * 2);
        bigger.set(sample);
        sampleLength += (await fh.read(bigger, sampleLength, bigger.length - sampleLength, sampleLength)).bytesRead;
        sample = bigger;
        head = headerEnd(sample.subarray(0, sampleLength), bom);
      }
      // A header alone without a line break: no body.
      const bodyStart = head?.end ?? sampleLength;
      let line = 1 + (head?.lines ?? 1);
      let lineBreaks = 0;
      for (let i = sample.indexOf(10, bodyStart); i >= 0 && i < sampleLength; i = sample.indexOf(10, i + 1)) lineBreaks++;
      const perRow = lineBreaks > 0 ? (sampleLength - bodyStart) / lineBreaks : sampleLength - bodyStart;
      let chunkBytes = Math.min(MAX_CHUNK_BYTES, Math.max(MIN_CHUNK_BYTES, Math.ceil(o.batchRows * perRow)));

      /** Handles the oldest chunk's result: throws its error or writes its rows. */
      const finishOne = async () => {
        const m = await inFlight.shift()!;
        if (m.type === "format") throw new CsvFormatError(o.path, line + m.line, m.column, m.problem);
        if (m.type === "error") throw new Error(m.message);
        if (m.bad) throw o.badRow(line + m.bad.line, m.bad.column, m.bad.problem);
        if (m.rejects.length > 0) {
          await o.reject?.write(m.rejects.map((r) => ({ cells: [line + r.line, `${r.column}: ${r.problem}`, ...r.cells], raw: undefined, tail: [] })));
        }
        if (m.out) await o.sink.writeBytes(m.out);
        line += m.lines;
        rowsRead += m.rows + m.rejects.length;
        rowsScored += m.rows;
        rowsRejected += m.rejects.length;
        o.onChunk?.({ rowsRead, rowsScored, rowsRejected });
      };

      // Bytes read but not yet handed out (the start of a record cut by the block end).
      let carry = sample.slice(bodyStart, sampleLength);
      let position = sampleLength;
      let eof = sampleLength < sample.length;
      // Room for a fast worker to run ahead of a slow one (a core shared with other work)
      // while the oldest chunk is still out; bounds memory to a few chunks a worker (fewer
      // when chunks are large: a big --batch-rows on wide rows).
      const maxInFlight = this.slots.length * (chunkBytes > 8 << 20 ? 2 : 4);
      for (;;) {
        if (o.signal?.aborted) throw new AbortedError("batch scoring was cancelled");
        let block: Uint8Array;
        let length: number;
        if (eof || carry.length >= chunkBytes) {
          block = carry;
          length = carry.length;
        } else {
          block = new Uint8Array(carry.length + chunkBytes);
          block.set(carry);
          const n = (await fh.read(block, carry.length, chunkBytes, position)).bytesRead;
          position += n;
          length = carry.length + n;
          if (n < chunkBytes) eof = true;
        }
        if (length === 0) break;
        // At the end of the file the rest is whole records (the last may lack its line break).
        const cut = eof ? length : lastRecordEnd(block, length);
        if (cut === 0) {
          // One record longer than a chunk: read on with a larger block.
          carry = block.slice(0, length);
          chunkBytes = Math.min(MAX_CHUNK_BYTES * 4, chunkBytes * 2);
          continue;
        }
        const rest = block.slice(cut, length);
        // The chunk owns its buffer outright, so it moves to the worker without a copy.
        const own = block.byteOffset === 0 && block.buffer instanceof ArrayBuffer ? block.buffer : block.slice(0, cut).buffer;
        inFlight.push(this.dispatch(own, cut));
        carry = rest;
        while (inFlight.length >= maxInFlight) await finishOne();
        if (eof && carry.length === 0) break;
      }
      while (inFlight.length > 0) await finishOne();
      return { rowsRead, rowsScored, rowsRejected };
    } catch (err) {
      // Let the chunks already handed out settle before the caller closes the sinks.
      await Promise.allSettled(inFlight);
      throw err;
    } finally {
      await fh.close();
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate().catch(() => undefined)));
  }
}
