// Moves a service database's WAL checkpoints to a worker thread (wal-checkpoint-worker.mjs),
// so a large COMMIT never pays for copying the log into the database file on the RPC thread.
// Used by the feature store (uploads of hundreds of MB) and the experiment service (ingest).

import { Worker } from "node:worker_threads";
import type Database from "better-sqlite3";
import type { Logger } from "./logger.js";

const WORKER_FILE = new URL("./wal-checkpoint-worker.mjs", import.meta.url);
/** SQLite's default automatic checkpoint threshold (pages), restored if the worker goes away. */
const AUTO_CHECKPOINT_PAGES = 1000;

export interface CheckpointWorker {
  stop(): Promise<void>;
}

/**
 * Starts the worker and turns automatic checkpoints off on `sqlite`. If the worker cannot
 * start or dies, automatic checkpoints come back on, so the WAL never grows unbounded.
 * An in-memory database has no WAL: nothing to do.
 */
export async function startCheckpointWorker(sqlite: Database.Database, logger: Logger, intervalMs = 1000): Promise<CheckpointWorker> {
  const db = sqlite.name;
  if (sqlite.memory) return { stop: async () => {} };
  const worker = new Worker(WORKER_FILE, { workerData: { path: sqlite.name, intervalMs } });
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once("message", () => resolve());
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`exited with ${code}`)));
    });
  } catch (err) {
    logger.warn({ db, err }, "WAL checkpoint worker did not start; SQLite checkpoints inline");
    await worker.terminate();
    return { stop: async () => {} };
  }
  sqlite.pragma("wal_autocheckpoint = 0");
  worker.on("message", (m: { error?: string }) => {
    if (m.error) logger.warn({ db, error: m.error }, "WAL checkpoint failed; will retry");
  });
  worker.on("error", (err) => logger.error({ db, err }, "WAL checkpoint worker failed"));
  worker.once("exit", () => {
    if (sqlite.open) sqlite.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
  });
  return {
    async stop() {
      const exited = new Promise((r) => worker.once("exit", r));
      worker.postMessage("stop");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())]);
      await worker.terminate();
    },
  };
}
