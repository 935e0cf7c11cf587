// WAL checkpoints of features.db off the event loop. A large upload commits hundreds of MB
// into the write-ahead log; SQLite's automatic checkpoint would then copy them into the
// database file synchronously inside COMMIT, stalling the service for seconds. The
// service turns automatic checkpoints off on its connection and this worker runs PASSIVE
// checkpoints (they never block readers or the writer) on its own connection instead.
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
