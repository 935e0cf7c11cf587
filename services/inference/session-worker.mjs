// One ONNX Runtime session on a worker thread: `run()` blocks its thread for the whole
// inference, so it must not be the gRPC loop's. Plain JS so workers need no TS loader.

import { parentPort, workerData } from "node:worker_threads";
import ort from "onnxruntime-node";

const session = await ort.InferenceSession.create(workerData.path, {
  intraOpNumThreads: workerData.intraOpThreads,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
});
parentPort.postMessage({ type: "ready", inputNames: session.inputNames, outputNames: session.outputNames });

parentPort.on("message", async (msg) => {
  if (msg.type === "close") {
    await session.release().catch(() => {});
    parentPort.close();
    return;
  }
  const started = process.hrtime.bigint();
  try {
    const feeds = {};
    for (const [name, t] of Object.entries(msg.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    const result = await session.run(feeds, msg.outputNames);
    const outputs = {};
    const transfer = [];
    // Lent input buffers go back to the main thread (moved, not copied).
    let inputs;
    if (msg.lend) {
      inputs = {};
      for (const [name, t] of Object.entries(msg.feeds)) {
        inputs[name] = t.data;
        transfer.push(t.data.buffer);
      }
    }
    for (const [name, t] of Object.entries(result)) {
      const data = t.data;
      outputs[name] = { type: t.type, dims: t.dims.map(Number), data };
      if (data && data.buffer instanceof ArrayBuffer && ArrayBuffer.isView(data)) transfer.push(data.buffer);
      t.dispose?.();
    }
    const computeUs = Number(process.hrtime.bigint() - started) / 1000;
    // A buffer listed twice (an output aliasing an input or another output) would fail the post.
    parentPort.postMessage({ type: "result", id: msg.id, outputs, inputs, computeUs }, [...new Set(transfer)]);
  } catch (err) {
    parentPort.postMessage({ type: "error", id: msg.id, message: err instanceof Error ? err.message : String(err) });
  }
});
