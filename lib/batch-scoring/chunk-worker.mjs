// A scoring worker: takes a chunk of raw CSV bytes (whole records), parses its model columns
// into input tensors, runs its own ONNX Runtime session and formats the scored rows as CSV
// bytes, so the main thread only reads, hands out and writes bytes. Plain JS: workers run
// without the TS loader.

import { parentPort, workerData } from "node:worker_threads";
import ort from "onnxruntime-node";
import { chunkParser, ChunkFormatError, formatRows } from "./csv-chunk.mjs";

const { artifact, plan, prefix, outCols } = workerData;
const parse = chunkParser(plan);
const session = await ort.InferenceSession.create(artifact, {
  // One thread per worker: the workers themselves are the parallelism.
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
});
parentPort.postMessage({ type: "ready" });

parentPort.on("message", async (msg) => {
  if (msg.type === "close") {
    await session.release().catch(() => {});
    parentPort.close();
    return;
  }
  const { seq } = msg;
  try {
    const bytes = new Uint8Array(msg.buffer, 0, msg.length);
    const parsed = parse(bytes);
    const base = { type: "result", seq, lines: parsed.lines, rejects: parsed.rejects, bad: parsed.bad, rows: parsed.rows };
    if (parsed.bad || parsed.rows === 0) {
      parse.release(parsed);
      parentPort.postMessage({ ...base, out: undefined });
      return;
    }
    const feeds = {};
    plan.inputs.forEach((inp, k) => {
      const width = inp.columns.length;
      // The arrays are reused and longer than this chunk: a view of its rows (no copy).
      const data = parsed.data[k].subarray(0, parsed.rows * width);
      feeds[inp.name] = new ort.Tensor(inp.type, data, inp.matrix ? [parsed.rows, width] : [parsed.rows]);
    });
    const result = await session.run(feeds);
    const outputs = {};
    for (const [name, t] of Object.entries(result)) outputs[name] = { dims: t.dims, data: t.data };
    const out = formatRows(bytes, parsed, prefix, outCols, outputs);
    for (const t of Object.values(result)) t.dispose?.();
    parse.release(parsed);
    parentPort.postMessage({ ...base, out }, [out.buffer]);
  } catch (err) {
    if (err instanceof ChunkFormatError) parentPort.postMessage({ type: "format", seq, line: err.line, column: err.column, problem: err.problem });
    else parentPort.postMessage({ type: "error", seq, message: err instanceof Error ? err.message : String(err) });
  }
});
