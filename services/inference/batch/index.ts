// Server-side batch scoring jobs inside the inference service: StartBatchJob, GetBatchJob,
// ListBatchJobs, CancelBatchJob. A job reads a CSV or Parquet file under the data dir,
// scores it with the service's own loaded model versions (the same session workers as online
// traffic, one job at a time so online latency keeps a worker) through the loop shared with
// `mlmesh score-batch` (lib/batch-scoring), and writes a CSV or Parquet file under the data dir or a new
// table in `<data dir>/inference/batch-results.db`. Jobs and their progress are kept in
// SQLite, so a restart still lists them (a job that was running is marked FAILED).

import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { clone, create, fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { Counter, type Registry } from "prom-client";
import { BatchJobSchema, BatchJobState, FileFormat, type BatchJob } from "../../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import type { InferenceService } from "../../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { historicalFeatures } from "../../../lib/batch-scoring/model.js";
import { BadRowError, scoreBatch, type BatchModel } from "../../../lib/batch-scoring/score.js";
import { ParquetSink } from "../../../lib/batch-scoring/parquet-writer.js";
import { CsvSink, SqliteTableSink, type RowSink } from "../../../lib/batch-scoring/sink.js";
import { openSource, type FileKind } from "../../../lib/batch-scoring/source.js";
import { openSqlite } from "../../../lib/db.js";
import { NotFoundError, PreconditionError, ValidationError } from "../../../lib/errors.js";
import type { Logger } from "../../../lib/logger.js";
import { createMeshClients } from "../../../lib/mesh-clients.js";
import { decodePageToken, encodePageToken, pageSize } from "../../../lib/paging.js";
import type { Runtime } from "../../../lib/runtime.js";
import type { InferenceEngine } from "../engine.js";
import { parseRef, type ModelLoader } from "../loader.js";
import * as schema from "./schema.js";

export interface BatchJobsDeps {
  readonly rt: Runtime;
  readonly logger: Logger;
  readonly metricsRegistry: Registry;
  readonly loader: ModelLoader;
  readonly engine: InferenceEngine;
}

export interface BatchJobs {
  /** StartBatchJob, GetBatchJob, ListBatchJobs, CancelBatchJob. */
  readonly handlers: Partial<ServiceImpl<typeof InferenceService>>;
  close(): Promise<void>;
}

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");
/** Rows per chunk handed to a session worker. */
const BATCH_ROWS = 4096;
/** How often a running job's progress is written to SQLite (GetBatchJob reads memory). */
const PERSIST_EVERY_MS = 1000;
const TABLE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const ENDED = new Set([BatchJobState.SUCCEEDED, BatchJobState.FAILED, BatchJobState.CANCELLED]);

/** A path inside the data dir, or a ValidationError naming `field`. */
function underDataDir(dataDir: string, rel: string, field: string): string {
  if (rel.trim() === "") throw new ValidationError(field, "is required");
  if (path.isAbsolute(rel) || rel.includes("\0")) throw new ValidationError(field, `must be relative to the service's data dir, got ${JSON.stringify(rel)}`);
  const root = path.resolve(dataDir);
  const full = path.resolve(root, rel);
  if (!full.startsWith(root + path.sep)) throw new ValidationError(field, `${JSON.stringify(rel)} leaves the data dir`);
  return full;
}

function formatOf(f: FileFormat, p: string, field: string): FileKind | undefined {
  if (f === FileFormat.CSV) return "csv";
  if (f === FileFormat.PARQUET) return "parquet";
  if (/\.csv$/i.test(p)) return "csv";
  if (/\.parquet$/i.test(p)) return "parquet";
  if (field === "job.input_format") throw new ValidationError(field, `is unset and ${JSON.stringify(p)} ends in neither .csv nor .parquet`);
  return undefined;
}

export async function startBatchJobs(deps: BatchJobsDeps): Promise<BatchJobs> {
  const { rt, loader } = deps;
  const logger = deps.logger.child({ component: "batch-jobs" });
  const dataDir = rt.config.dataDir;
  const handle = openSqlite({ dataDir: path.join(dataDir, "inference"), file: "batch-jobs.db", schema, migrationsFolder: MIGRATIONS });
  const results = new Database(path.join(dataDir, "inference", "batch-results.db"));
  results.pragma("journal_mode = WAL");
  results.pragma("synchronous = NORMAL");
  const clients = createMeshClients(rt.config);
  const rowsCounter = new Counter({
    name: "mlmesh_inference_batch_rows_total",
    help: "Rows handled by batch scoring jobs, by model and outcome (scored, rejected).",
    labelNames: ["model", "outcome"],
    registers: [deps.metricsRegistry],
  });

  const jobs = new Map<string, BatchJob>();
  const controllers = new Map<string, AbortController>();
  const upsert = handle.sqlite.prepare(
    "INSERT INTO batch_jobs (job_id, create_ms, state, job_json) VALUES (?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET state = excluded.state, job_json = excluded.job_json",
  );
  const persist = (j: BatchJob) => upsert.run(j.jobId, createMs(j), j.state, toJsonString(BatchJobSchema, j));
  const createMs = (j: BatchJob) => Number(j.createTime?.seconds ?? 0n) * 1000 + Math.floor((j.createTime?.nanos ?? 0) / 1e6);

  for (const row of handle.sqlite.prepare("SELECT job_json FROM batch_jobs").all() as Array<{ job_json: string }>) {
    const j = fromJsonString(BatchJobSchema, row.job_json);
    if (!ENDED.has(j.state)) {
      j.state = BatchJobState.FAILED;
      j.error = "the inference service stopped while the job was queued or running; start it again";
      j.endTime = timestampFromMs(Date.now());
      persist(j);
    }
    jobs.set(j.jobId, j);
  }

  // One job at a time: the chain is the queue.
  let chain: Promise<void> = Promise.resolve();
  let closing = false;

  const execute = async (job: BatchJob, signal: AbortSignal): Promise<void> => {
    if (signal.aborted) return;
    job.state = BatchJobState.RUNNING;
    job.startTime = timestampFromMs(Date.now());
    persist(job);
    let sink: RowSink | undefined;
    let reject: RowSink | undefined;
    try {
      const input = underDataDir(dataDir, job.inputPath, "job.input_path");
      const v = await loader.acquire(job.modelRef);
      job.modelName = v.name;
      job.version = BigInt(v.version);
      const model: BatchModel = {
        name: v.name,
        version: v.version,
        inputs: v.inputs,
        outputs: v.outputs,
        binding: v.binding,
        run: async (feeds, rows) => (await v.pool.run(feeds, rows, Date.now() + 10 * 60_000)).outputs,
      };
      const source = await openSource(input, formatOf(job.inputFormat, job.inputPath, "job.input_format")!);
      job.rowsTotal = BigInt(source.rowsTotal ?? 0);
      const outKind = formatOf(job.outputFormat, job.outputPath, "job.output_format");
      const outFile = outKind ? underDataDir(dataDir, job.outputPath, "job.output_path") : "";
      sink = outKind === "parquet" ? new ParquetSink(outFile, true) : outKind === "csv" ? new CsvSink(outFile, true) : new SqliteTableSink(results, job.outputPath);
      if (job.skipBadRows) {
        job.rejectPath = path.join("inference", "batch-rejects", `${job.jobId}.csv`);
        fs.mkdirSync(path.join(dataDir, "inference", "batch-rejects"), { recursive: true });
        reject = new CsvSink(path.join(dataDir, job.rejectPath), true);
      }
      let persisted = 0;
      let scored = 0;
      let rejected = 0;
      const done = await scoreBatch({
        source,
        model,
        sink,
        reject,
        skipBadRows: job.skipBadRows,
        batchRows: BATCH_ROWS,
        concurrency: 2,
        signal,
        pointInTime: job.entityColumn ? { entityColumn: job.entityColumn, asOfColumn: job.asOfColumn, features: historicalFeatures(clients.features, model, job.entityColumn) } : undefined,
        onProgress: (p) => {
          job.rowsRead = BigInt(p.rowsRead);
          job.rowsScored = BigInt(p.rowsScored);
          job.rowsRejected = BigInt(p.rowsRejected);
          job.rowsPerSecond = p.rowsPerSecond;
          rowsCounter.inc({ model: v.name, outcome: "scored" }, p.rowsScored - scored);
          rowsCounter.inc({ model: v.name, outcome: "rejected" }, p.rowsRejected - rejected);
          scored = p.rowsScored;
          rejected = p.rowsRejected;
          if (Date.now() - persisted >= PERSIST_EVERY_MS) {
            persisted = Date.now();
            persist(job);
          }
        },
      });
      job.rowsRead = BigInt(done.rowsRead);
      job.rowsScored = BigInt(done.rowsScored);
      job.rowsRejected = BigInt(done.rowsRejected);
      job.rowsPerSecond = done.rowsPerSecond;
      if (done.rowsRejected === 0) job.rejectPath = "";
      job.state = BatchJobState.SUCCEEDED;
    } catch (err) {
      if (signal.aborted) {
        job.state = BatchJobState.CANCELLED;
      } else {
        job.state = BatchJobState.FAILED;
        job.error = err instanceof Error ? err.message : String(err);
        if (err instanceof BadRowError) job.errorLine = BigInt(err.line);
        logger.warn({ job: job.jobId, err: job.error }, "batch job failed");
      }
    } finally {
      job.endTime = timestampFromMs(Date.now());
      persist(job);
      controllers.delete(job.jobId);
    }
  };

  const get = (id: string): BatchJob => {
    if (id === "") throw new ValidationError("job_id", "is required");
    const j = jobs.get(id);
    if (!j) throw new NotFoundError("batch job", id, "list batch jobs to see the ids");
    return j;
  };

  const handlers: Partial<ServiceImpl<typeof InferenceService>> = {
    startBatchJob(req) {
      if (closing) throw new PreconditionError("the inference service is shutting down");
      const input = req.job;
      if (!input) throw new ValidationError("job", "is required");
      if (input.modelRef === "") throw new ValidationError("job.model_ref", "is required");
      parseRef(input.modelRef);
      const inPath = underDataDir(dataDir, input.inputPath, "job.input_path");
      formatOf(input.inputFormat, input.inputPath, "job.input_format");
      if (!fs.existsSync(inPath)) throw new ValidationError("job.input_path", `${JSON.stringify(input.inputPath)} does not exist under the data dir`);
      if (input.outputPath === "") throw new ValidationError("job.output_path", "is required: a .csv or .parquet path under the data dir, or a table name");
      const outKind = formatOf(input.outputFormat, input.outputPath, "job.output_format");
      if (outKind) {
        const out = underDataDir(dataDir, input.outputPath, "job.output_path");
        if (fs.existsSync(out)) throw new ValidationError("job.output_path", `${JSON.stringify(input.outputPath)} already exists; pick a new path`);
        fs.mkdirSync(path.dirname(out), { recursive: true });
      } else {
        if (!TABLE.test(input.outputPath)) throw new ValidationError("job.output_path", `${JSON.stringify(input.outputPath)} is neither a .csv or .parquet path nor a table name ([A-Za-z_][A-Za-z0-9_]*)`);
        const taken =
          results.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE").get(input.outputPath) !== undefined ||
          [...jobs.values()].some((j) => !ENDED.has(j.state) && j.outputPath.toLowerCase() === input.outputPath.toLowerCase());
        if (taken) throw new ValidationError("job.output_path", `table ${input.outputPath} already exists; pick a new name`);
      }
      if ((input.entityColumn === "") !== (input.asOfColumn === "")) throw new ValidationError(input.entityColumn === "" ? "job.entity_column" : "job.as_of_column", "entity_column and as_of_column go together");
      const now = Date.now();
      const job = create(BatchJobSchema, {
        jobId: randomUUID(),
        modelRef: input.modelRef,
        inputPath: input.inputPath,
        inputFormat: input.inputFormat,
        outputPath: input.outputPath,
        outputFormat: input.outputFormat,
        entityColumn: input.entityColumn,
        asOfColumn: input.asOfColumn,
        skipBadRows: input.skipBadRows,
        state: BatchJobState.QUEUED,
        createTime: timestampFromMs(now),
      });
      jobs.set(job.jobId, job);
      persist(job);
      const ac = new AbortController();
      controllers.set(job.jobId, ac);
      chain = chain.then(() => execute(job, ac.signal)).catch((err: unknown) => logger.error({ err, job: job.jobId }, "batch job crashed"));
      return { job: clone(BatchJobSchema, job) };
    },
    getBatchJob(req) {
      return { job: clone(BatchJobSchema, get(req.jobId)) };
    },
    listBatchJobs(req) {
      const size = pageSize(req.pageSize, "page_size");
      const after = decodePageToken(req.pageToken, "page_token");
      const key = (j: BatchJob) => `${String(createMs(j)).padStart(15, "0")}|${j.jobId}`;
      const all = [...jobs.values()].sort((a, b) => (key(a) < key(b) ? 1 : -1)).filter((j) => after === undefined || key(j) < String(after));
      const page = all.slice(0, size);
      return { jobs: page.map((j) => clone(BatchJobSchema, j)), nextPageToken: all.length > size ? encodePageToken(key(page[page.length - 1]!)) : "" };
    },
    async cancelBatchJob(req) {
      const job = get(req.jobId);
      if (ENDED.has(job.state)) throw new PreconditionError(`batch job ${job.jobId} already ended (${BatchJobState[job.state]})`);
      const ac = controllers.get(job.jobId);
      ac?.abort();
      if (job.state === BatchJobState.QUEUED) {
        job.state = BatchJobState.CANCELLED;
        job.endTime = timestampFromMs(Date.now());
        persist(job);
        controllers.delete(job.jobId);
      } else {
        // The running chunk finishes (a worker cannot be interrupted mid-run); wait for the loop to notice.
        const deadline = Date.now() + 30_000;
        while (!ENDED.has(job.state) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      }
      return { job: clone(BatchJobSchema, job) };
    },
  };

  return {
    handlers,
    async close() {
      closing = true;
      for (const ac of controllers.values()) ac.abort();
      await chain.catch(() => {});
      results.close();
      handle.close();
    },
  };
}
