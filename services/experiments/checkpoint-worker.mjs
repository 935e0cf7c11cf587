// WAL checkpoints of experiments.db off the event loop. Ingest commits a few MB a batch into
// the write-ahead log; SQLite's automatic checkpoint would copy them into the database file
// (and fsync it) inside the COMMIT of whichever batch crosses the threshold, on the thread
// that serves gRPC. The service turns automatic checkpoints off on its connection and this
// worker runs PASSIVE checkpoints (they never block the writer or readers) on its own.
// Plain JavaScript so the worker starts without the TypeScript loader.

import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";

const db = new Database(workerData.path, { fileMustExist: true });
db.pragma("busy_timeout = 1000");
const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message ? err.message : err) });
  }
}, workerData.intervalMs);
parentPort.on("message", (m) => {
  if (m === "stop") {
    clearInterval(timer);
    db.close();
    parentPort.close();
  }
});
parentPort.postMessage({ ready: true });
