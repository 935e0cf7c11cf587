// `mlmesh drift` core: the fixture CSVs give SciPy's numbers per column, and malformed CSV
// is rejected with the right line and column numbers.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CsvFormatError, CsvRecordParser, compareColumns, parseDecimal, readCsvColumns } from "./csv-drift.js";

const fixtureDir = fileURLToPath(new URL("./fixtures/", import.meta.url));
const drift = JSON.parse(readFileSync(join(fixtureDir, "drift.json"), "utf8")) as {
  cases: {
    name: string;
    kind: "numeric" | "categorical";
    reference: (number | string | null)[];
    expected: { psi: number; kl: number; js: number; hellinger: number; wasserstein?: number; chi2Contingency?: { pValue: number } };
  }[];
};

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "mlmesh-csv-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function failure(text: string): Promise<CsvFormatError> {
  const path = file(`bad-${Math.random().toString(36).slice(2)}.csv`, text);
  try {
    await readCsvColumns(path);
  } catch (err) {
    assert.ok(err instanceof CsvFormatError, `expected CsvFormatError, got ${String(err)}`);
    assert.ok(err.message.startsWith(`${path}:${err.line}`), err.message);
    return err;
  }
  assert.fail("expected the file to be rejected");
}

test("fixture CSVs (quotes, commas, line breaks, missing values) give SciPy's numbers per column", async () => {
  const ref = await readCsvColumns(join(fixtureDir, "reference.csv"));
  const cur = await readCsvColumns(join(fixtureDir, "current.csv"));
  assert.equal(ref.rows, 600);
  assert.equal(cur.rows, 400);
  const quoted = drift.cases.find((c) => c.name === "categorical_quoted_same")!;
  assert.deepEqual(ref.columns.get("categorical_quoted_same"), quoted.reference);

  const report = compareColumns(ref.columns, cur.columns);
  assert.deepEqual(report.onlyInReference, []);
  assert.deepEqual(report.onlyInCurrent, []);
  assert.deepEqual(report.skipped, []);
  assert.deepEqual(
    report.columns.map((c) => c.column),
    drift.cases.map((c) => c.name),
  );
  for (const c of drift.cases) {
    const got = report.columns.find((r) => r.column === c.name)!;
    const e = c.expected;
    assert.equal(got.kind, c.kind, c.name);
    for (const k of ["psi", "kl", "js", "hellinger"] as const) {
      assert.ok(Math.abs(got[k] - e[k]) <= 1e-6, `${c.name}.${k}: ${got[k]} vs ${e[k]}`);
    }
    if (c.kind === "numeric") {
      assert.ok(Math.abs(got.wasserstein! - e.wasserstein!) <= 1e-6, `${c.name}.wasserstein`);
      assert.equal(got.drift, e.psi >= 0.2, `${c.name}.drift`);
      assert.equal(got.pValue, null);
    } else {
      assert.equal(got.wasserstein, null);
      assert.ok(Math.abs(got.pValue! - e.chi2Contingency!.pValue) <= 1e-10, `${c.name}.pValue`);
      assert.equal(got.drift, e.chi2Contingency!.pValue < 0.05, `${c.name}.drift`);
    }
  }
  const byName = new Map(report.columns.map((c) => [c.column, c]));
  assert.equal(byName.get("normal_shifted")!.drift, true);
  assert.equal(byName.get("normal_same")!.drift, false);
  assert.equal(byName.get("categorical_new_and_gone")!.drift, true);
  assert.equal(byName.get("categorical_quoted_same")!.drift, false);
  // The output keys the CLI prints, in order.
  assert.deepEqual(Object.keys(byName.get("normal_shifted")!).slice(0, 7), ["column", "psi", "kl", "js", "hellinger", "wasserstein", "drift"]);
});

test("columns only on one side and empty columns are reported, not compared", () => {
  const report = compareColumns(
    new Map([
      ["x", ["1", "2", "3"]],
      ["gone", ["a"]],
      ["blank", ["", "NA", "null"]],
    ]),
    new Map([
      ["x", ["1", "2", "5"]],
      ["new", ["b"]],
      ["blank", ["1"]],
    ]),
  );
  assert.deepEqual(report.columns.map((c) => c.column), ["x"]);
  assert.deepEqual(report.onlyInReference, ["gone"]);
  assert.deepEqual(report.onlyInCurrent, ["new"]);
  assert.deepEqual(report.skipped, [{ column: "blank", reason: "no values in the reference data" }]);
  // One side non-numeric makes the column categorical.
  const mixed = compareColumns(new Map([["v", ["1", "2"]]]), new Map([["v", ["1", "two"]]]));
  assert.equal(mixed.columns[0]!.kind, "categorical");
  // PSI as the categorical test when asked.
  const psiTest = compareColumns(new Map([["c", ["a", "a", "b"]]]), new Map([["c", ["b", "b", "b"]]]), { categoricalTest: "psi" });
  assert.equal(psiTest.columns[0]!.drift, psiTest.columns[0]!.psi >= 0.2);
});

test("decimal detection accepts plain numbers only", () => {
  assert.equal(parseDecimal(" -1.5e3 "), -1500);
  assert.equal(parseDecimal(".5"), 0.5);
  assert.equal(parseDecimal("3."), 3);
  assert.equal(parseDecimal("0x10"), undefined);
  assert.equal(parseDecimal("1,5"), undefined);
  assert.equal(parseDecimal("Infinity"), undefined);
});

test("record parser: RFC 4180 quoting across lines", () => {
  const p = new CsvRecordParser("t");
  assert.deepEqual(p.pushLine('a,"b,c","say ""hi""",', 1), ["a", "b,c", 'say "hi"', ""]);
  assert.equal(p.pushLine('x,"multi', 2), null);
  assert.equal(p.pending, true);
  assert.equal(p.pushLine("", 3), null);
  assert.deepEqual(p.pushLine('line",y', 4), ["x", "multi\n\nline", "y"]);
  assert.equal(p.recordLine, 2);
  assert.deepEqual(p.pushLine('"",,""', 5), ["", "", ""]);
  assert.deepEqual(new CsvRecordParser("t", ";").pushLine('1;"a;b"', 1), ["1", "a;b"]);
  assert.throws(() => new CsvRecordParser("t", '"'), /delimiter/);
});

test("malformed lines are reported with their line (and column) numbers", async () => {
  let e = await failure('a,b\n1,2\n3,"4\n5,6\n');
  assert.equal(e.line, 3);
  assert.equal(e.column, 3);
  assert.match(e.problem, /never closed/);

  e = await failure('a,b\n1,2\n3,4"x\n');
  assert.equal(e.line, 3);
  assert.equal(e.column, 4);
  assert.match(e.problem, /quote inside an unquoted field/);

  e = await failure('a,b\n1,2\n"x"y,2\n');
  assert.equal(e.line, 3);
  assert.equal(e.column, 4);

  // A record spanning lines 2-3 does not shift later line numbers.
  e = await failure('a,b\n"multi\nline",2\n1,2,3\n');
  assert.equal(e.line, 4);
  assert.match(e.problem, /expected 2 fields/);

  // A bad record that spans lines is reported where it starts.
  e = await failure('a,b\n1,2\n"x\ny"\n');
  assert.equal(e.line, 3);

  // CRLF line ends and blank lines keep physical numbering.
  e = await failure("a,b\r\n\r\n1,2\r\n1\r\n");
  assert.equal(e.line, 4);

  e = await failure("");
  assert.equal(e.line, 1);
  e = await failure("a,a\n1,2\n");
  assert.match(e.problem, /repeats/);
  e = await failure(",b\n1,2\n");
  assert.match(e.problem, /empty/);
});

test("CRLF, a byte order mark and a missing final newline are accepted", async () => {
  const path = file("ok.csv", '\ufeffid,name\r\n1,"a\r\nb"\r\n\r\n2,c');
  const { header, columns, rows } = await readCsvColumns(path);
  assert.deepEqual(header, ["id", "name"]);
  assert.equal(rows, 2);
  assert.deepEqual(columns.get("name"), ["a\nb", "c"]);
});
