// WAL checkpoints of a service's SQLite database off the event loop (lib/wal-checkpoint.ts).
// A large commit (a feature upload, an ingest batch) fills the write-ahead log; SQLite's
// automatic checkpoint would copy it into the database file (and fsync it) inside the COMMIT
// of whichever transaction crosses the threshold, on the thread that serves RPCs. The service
// turns automatic checkpoints off on its connection and this worker runs PASSIVE checkpoints
// (they never block the writer or readers) on its own connection.
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
