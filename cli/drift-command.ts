// `mlmesh drift --reference REF.csv --current CUR.csv [--json]`: per-column drift between two
// CSV files, offline (no server). Exit 0 when no column drifts, 1 when one does, so a
// pipeline step can gate on it.

import { parseArgs } from "node:util";
import { compareColumns, readCsvColumns } from "../lib/drift/csv-drift.js";
import { ValidationError } from "../lib/errors.js";
import { EXIT, printJson, printTable, UsageError } from "./output.js";

export async function runDrift(argv: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        reference: { type: "string" },
        current: { type: "string" },
        bins: { type: "string" },
        "psi-threshold": { type: "string" },
        alpha: { type: "string" },
        json: { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (!values.reference || !values.current) throw new UsageError("drift needs --reference REF.csv and --current CUR.csv");
  const num = (flag: string, raw: string | undefined, ok: (n: number) => boolean, expected: string) => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`--${flag} must be ${expected}, got ${JSON.stringify(raw)}`);
    return n;
  };
  const options = {
    bins: num("bins", values.bins, (n) => Number.isInteger(n) && n >= 2 && n <= 1000, "an integer in [2, 1000]"),
    psiThreshold: num("psi-threshold", values["psi-threshold"], (n) => n > 0, "a positive number"),
    alpha: num("alpha", values.alpha, (n) => n > 0 && n < 1, "in (0, 1)"),
  };
  let report;
  try {
    const [ref, cur] = await Promise.all([readCsvColumns(values.reference), readCsvColumns(values.current)]);
    report = compareColumns(ref.columns, cur.columns, options);
  } catch (err) {
    if (err instanceof ValidationError) throw new UsageError(err.message);
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new UsageError(`no such file: ${(err as NodeJS.ErrnoException).path}`);
    throw err;
  }
  const rows = report.columns.map((c) => ({
    column: c.column,
    psi: c.psi,
    kl: c.kl,
    js: c.js,
    hellinger: c.hellinger,
    wasserstein: c.wasserstein,
    drift: c.drift,
    kind: c.kind,
    p_value: c.pValue,
  }));
  if (values.json) {
    printJson({ columns: rows, only_in_reference: report.onlyInReference, only_in_current: report.onlyInCurrent, skipped: report.skipped });
  } else {
    const f = (x: number | null) => (x === null ? "-" : x.toFixed(4));
    printTable(
      rows.map((r) => ({
        column: r.column,
        kind: r.kind,
        psi: f(r.psi),
        kl: f(r.kl),
        js: f(r.js),
        hellinger: f(r.hellinger),
        wasserstein: f(r.wasserstein),
        drift: r.drift ? "DRIFT" : "ok",
      })),
      ["column", "kind", "psi", "kl", "js", "hellinger", "wasserstein", "drift"],
    );
    for (const s of report.skipped) process.stdout.write(`skipped ${s.column}: ${s.reason}\n`);
    if (report.onlyInReference.length) process.stdout.write(`only in reference: ${report.onlyInReference.join(", ")}\n`);
    if (report.onlyInCurrent.length) process.stdout.write(`only in current: ${report.onlyInCurrent.join(", ")}\n`);
  }
  return rows.some((r) => r.drift) ? EXIT.FAILED : EXIT.OK;
}
