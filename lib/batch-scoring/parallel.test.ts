// scoreBatch on scoring workers against its row loop, same file, same model (lr_v1 in real
// ONNX Runtime on both): chunk cuts fall inside quoted multi-line fields and CRLF records,
// yet both give the same rows in the same order, the same scores, the same bad-row lines.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import ort from "onnxruntime-node";
import { readCsvColumns } from "../drift/csv-drift.js";
import { BadRowError, scoreBatch, type BatchModel } from "./score.js";
import { CsvSink } from "./sink.js";
import { openSource } from "./source.js";

const MODEL = path.join(import.meta.dirname, "../../test/fixtures/models/lr_v1.onnx");

describe("scoreBatch on scoring workers", () => {
  let dir: string;
  let session: ort.InferenceSession;
  let model: BatchModel;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-parallel-"));
    session = await ort.InferenceSession.create(MODEL);
    model = {
      name: "lr",
      version: 3,
      inputs: [{ name: session.inputNames[0]!, type: "float32", dims: [-1, 3] }],
      outputs: [{ name: session.outputNames[0]!, type: "float32", dims: [-1, 1] }],
      binding: undefined,
      // The row loop's runner: the same model in this thread's ONNX Runtime.
      async run(feeds, rows) {
        const x = feeds[session.inputNames[0]!]!;
        const res = await session.run({ [session.inputNames[0]!]: new ort.Tensor("float32", x.data as Float32Array, [rows, 3]) });
        const t = res[session.outputNames[0]!]!;
        return { [session.outputNames[0]!]: { type: "float32", dims: t.dims.map(Number), data: t.data as Float32Array } };
      },
      artifactPath: MODEL,
    };
  });
  after(async () => {
    await session?.release();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A file of long quoted multi-line notes (so 16 KiB chunk cuts land inside them), some CRLF, some bad rows. */
  function makeFile(): { file: string; bad: number[] } {
    const file = path.join(dir, "in.csv");
    const parts = ["\ufeffid,note,x_0,x_1,x_2\r\n"];
    const bad: number[] = [];
    let line = 2;
    for (let i = 0; i < 6000; i++) {
      const breaks = i % 3;
      const note = `"${"word, ".repeat(i % 40)}${Array.from({ length: breaks }, (_, k) => `part ""${k}""`).join("\n")}"`;
      const x = [((i * 37) % 100) / 25 - 2, ((i * 11) % 50) / 10 - 2.5, Math.sin(i).toPrecision(17)];
      if (i % 1000 === 999) {
        x[1] = "n/a" as unknown as number;
        bad.push(line);
      }
      parts.push(`r${i},${note},${x.join(",")}${i % 4 === 0 ? "\r\n" : "\n"}`);
      line += 1 + Math.max(0, breaks - 1);
      if (i === 3000) {
        parts.push("\n");
        line++;
      }
    }
    fs.writeFileSync(file, parts.join(""));
    return { file, bad };
  }

  const score = async (file: string, out: string, workers: number, skipBadRows: boolean) =>
    scoreBatch({
      source: await openSource(file, "csv"),
      model,
      sink: new CsvSink(out),
      reject: skipBadRows ? new CsvSink(`${out}.rejects.csv`) : undefined,
      skipBadRows,
      batchRows: 50,
      concurrency: 2,
      scoringWorkers: workers,
    });

  it("gives the row loop's rows, scores and reject lines", async () => {
    const { file, bad } = makeFile();
    const a = await score(file, path.join(dir, "workers.csv"), 2, true);
    const b = await score(file, path.join(dir, "loop.csv"), 0, true);
    assert.equal(a.rowsScored, 6000 - bad.length);
    assert.deepEqual([a.rowsRead, a.rowsScored, a.rowsRejected], [b.rowsRead, b.rowsScored, b.rowsRejected]);
    const wa = await readCsvColumns(path.join(dir, "workers.csv"));
    const wb = await readCsvColumns(path.join(dir, "loop.csv"));
    assert.deepEqual(wa.header, ["id", "note", "x_0", "x_1", "x_2", "model_name", "model_version", "score"]);
    for (const h of wa.header) assert.deepEqual(wa.columns.get(h), wb.columns.get(h), h);
    const ra = await readCsvColumns(path.join(dir, "workers.csv.rejects.csv"));
    const rb = await readCsvColumns(path.join(dir, "loop.csv.rejects.csv"));
    assert.deepEqual(ra.columns.get("line"), bad.map(String));
    for (const h of rb.header) assert.deepEqual(ra.columns.get(h), rb.columns.get(h), h);
  });

  it("stops at the first bad row with its line, leaving no output", async () => {
    const { file, bad } = makeFile();
    const out = path.join(dir, "stop.csv");
    await assert.rejects(score(file, out, 2, false), (e: unknown) => e instanceof BadRowError && e.line === bad[0] && e.column === "x_1" && /"n\/a" is not a number/.test(e.problem));
    assert.equal(fs.existsSync(out), false);
    assert.equal(fs.existsSync(`${out}.partial`), false);
  });

  it("names a malformed record's line, as the row loop does", async () => {
    const file = path.join(dir, "broken.csv");
    fs.writeFileSync(file, `id,note,x_0,x_1,x_2\n${Array.from({ length: 3000 }, (_, i) => `r${i},"n\n${i}",1,2,3`).join("\n")}\nr,x"y,1,2,3\n`);
    for (const workers of [2, 0]) {
      await assert.rejects(score(file, path.join(dir, `broken-${workers}.csv`), workers, true), /broken\.csv:6002:4: quote inside an unquoted field/);
    }
  });
});
