// `mlmesh score-batch MODEL_REF --in FILE.csv|FILE.parquet --out FILE.csv|FILE.parquet [--entity-col COL
// --as-of-col TS] [--skip-bad-rows] [--reject FILE] [--batch-rows N] [--workers N] [--json]`:
// scores a file with a registry model on this machine, streaming it in chunks through ONNX
// Runtime session workers (CSV to CSV: scoring workers that also parse and format, see
// lib/batch-scoring/parallel.ts). Progress (rows/s) on stderr; the summary on stdout.

import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { openSource, kindOf } from "../lib/batch-scoring/source.js";
import { ParquetSink } from "../lib/batch-scoring/parquet-writer.js";
import { CsvSink } from "../lib/batch-scoring/sink.js";
import { historicalFeatures, openModel } from "../lib/batch-scoring/model.js";
import { BadRowError, scoreBatch, type Progress } from "../lib/batch-scoring/score.js";
import type { Config } from "../lib/config.js";
import { DomainError, UnavailableError, ValidationError } from "../lib/errors.js";
import { createLogger } from "../lib/logger.js";
import { createMeshClients } from "../lib/mesh-clients.js";
import { closeAllClients } from "../lib/clients.js";
import { EXIT, printError, printJson, UsageError } from "./output.js";

const HELP = `usage: mlmesh score-batch MODEL_REF --in FILE.csv|FILE.parquet --out FILE.csv|FILE.parquet
         [--entity-col COL --as-of-col TS] [--skip-bad-rows] [--reject FILE]
         [--batch-rows N] [--workers N] [--json]

Scores every row of the input with the model version MODEL_REF names (name, name@alias,
name@stage, name@N), fetched from the registry and verified by sha256. The output has the
input's columns, then model_name, model_version and one column per model output.
Features come from the file (columns named like the model's bound feature refs, with or
without the view prefix, or like its inputs) or, with --entity-col and --as-of-col,
point-in-time from the feature service.
A bad row stops the run, naming its line; with --skip-bad-rows it goes to the reject file
(default OUT.rejects.csv) instead. Output rows keep the input's order.
--workers N threads score in parallel (default: one per core); CSV to CSV, each parses,
scores and formats whole chunks of --batch-rows rows (default 4096).`;

/** A live progress line: rewritten in place on a terminal, one line a second otherwise. */
function progressLine(): { update(p: Progress): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let shown = false;
  const render = (p: Progress) => {
    const rate = `${Math.round(p.rowsPerSecond).toLocaleString("en")} rows/s`;
    const counts = `${p.rowsScored.toLocaleString("en")} scored, ${p.rowsRejected.toLocaleString("en")} rejected`;
    if (p.rowsTotal) {
      const f = Math.min(1, p.rowsRead / p.rowsTotal);
      const bar = `${"#".repeat(Math.round(f * 30))}${".".repeat(30 - Math.round(f * 30))}`;
      return `[${bar}] ${(f * 100).toFixed(0).padStart(3)}% ${counts}, ${rate}`;
    }
    return `${p.rowsRead.toLocaleString("en")} rows read, ${counts}, ${rate}`;
  };
  return {
    update(p) {
      const now = Date.now();
      if (now - last < (tty ? 100 : 1000)) return;
      last = now;
      shown = true;
      process.stderr.write(tty ? `\r${render(p)}\x1b[K` : `score-batch: ${render(p)}\n`);
    },
    done() {
      if (shown && tty) process.stderr.write("\n");
    },
  };
}

export async function runScoreBatch(config: Config, args: readonly string[]): Promise<number> {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: [...args],
      options: {
        in: { type: "string" },
        out: { type: "string" },
        "entity-col": { type: "string" },
        "as-of-col": { type: "string" },
        "skip-bad-rows": { type: "boolean", default: false },
        reject: { type: "string" },
        "batch-rows": { type: "string" },
        workers: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${HELP}`);
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.OK;
  }
  if (positionals.length !== 1) throw new UsageError(`score-batch needs exactly one MODEL_REF\n${HELP}`);
  if (!values.in || !values.out) throw new UsageError(`score-batch needs --in FILE and --out FILE\n${HELP}`);
  if ((values["entity-col"] === undefined) !== (values["as-of-col"] === undefined)) throw new UsageError("--entity-col and --as-of-col go together");
  if (values.reject !== undefined && !values["skip-bad-rows"]) throw new UsageError("--reject only makes sense with --skip-bad-rows");
  const int = (flag: string, raw: string | undefined, dflt: number, max: number) => {
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${flag} must be an integer in [1, ${max}], got ${JSON.stringify(raw)}`);
    return n;
  };
  const batchRows = int("batch-rows", values["batch-rows"], 4096, 1_000_000);
  const workers = int("workers", values.workers, Math.max(1, os.availableParallelism()), 64);
  let inKind;
  let outKind;
  try {
    inKind = kindOf(values.in, "--in");
    outKind = kindOf(values.out, "--out");
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const rejectPath = values["skip-bad-rows"] ? (values.reject ?? `${values.out.replace(/\.(csv|parquet)$/i, "")}.rejects.csv`) : undefined;
  if (rejectPath !== undefined && !/\.csv$/i.test(rejectPath)) throw new UsageError("--reject must be a .csv file");

  const logger = createLogger({ level: config.logLevel === "debug" || config.logLevel === "trace" ? config.logLevel : "warn", service: "score-batch" });
  const clients = createMeshClients(config);
  const bar = progressLine();
  let opened;
  try {
    let source;
    try {
      source = await openSource(values.in, inKind);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new UsageError(`no such file: ${values.in}`);
      throw err;
    }
    // CSV to CSV without point-in-time features: scoring workers parse, score and format
    // whole chunks, each with its own session, so the loader's pool needs only one worker.
    const scoringWorkers = inKind === "csv" && outKind === "csv" && values["entity-col"] === undefined ? workers : 0;
    opened = await openModel({ registry: clients.registry, ref: positionals[0]!, cacheDir: path.join(config.dataDir, "score-batch", "cache"), workers: scoringWorkers > 0 ? 1 : workers, batchRows, logger });
    const model = opened.model;
    const pointInTime =
      values["entity-col"] !== undefined
        ? { entityColumn: values["entity-col"], asOfColumn: values["as-of-col"]!, features: historicalFeatures(clients.features, model, values["entity-col"]) }
        : undefined;
    const result = await scoreBatch({
      source,
      model,
      sink: outKind === "parquet" ? new ParquetSink(values.out) : new CsvSink(values.out),
      reject: rejectPath ? new CsvSink(rejectPath) : undefined,
      skipBadRows: values["skip-bad-rows"],
      batchRows,
      concurrency: workers + 1,
      scoringWorkers,
      pointInTime,
      onProgress: (p) => bar.update(p),
    });
    bar.done();
    const summary = {
      model_name: model.name,
      model_version: model.version,
      rows_read: result.rowsRead,
      rows_scored: result.rowsScored,
      rows_rejected: result.rowsRejected,
      rows_per_second: Math.round(result.rowsPerSecond),
      out: values.out,
      reject: result.rowsRejected > 0 ? rejectPath : undefined,
    };
    if (values.json) printJson(summary);
    else {
      process.stdout.write(
        `scored ${summary.rows_scored} rows with ${model.name}@${model.version} into ${values.out} (${summary.rows_per_second.toLocaleString("en")} rows/s)` +
          (summary.rows_rejected > 0 ? `; ${summary.rows_rejected} bad rows in ${rejectPath}` : "") +
          "\n",
      );
    }
    return EXIT.OK;
  } catch (err) {
    bar.done();
    if (err instanceof UsageError) throw err;
    if (err instanceof BadRowError) {
      printError(`${values.in}: ${err.message}${values["skip-bad-rows"] ? "" : " (--skip-bad-rows writes bad rows to a reject file instead)"}`);
      return EXIT.FAILED;
    }
    if (err instanceof UnavailableError) {
      printError(err.message);
      return EXIT.UNAVAILABLE;
    }
    if (err instanceof ValidationError || err instanceof DomainError) {
      printError(err.message);
      return EXIT.FAILED;
    }
    throw err;
  } finally {
    await opened?.close();
    closeAllClients();
  }
}
