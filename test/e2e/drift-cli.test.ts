// `mlmesh drift` as a user runs it: offline, JSON with the documented fields per column,
// exit 1 when a column drifts, usage errors for bad input.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { MLMESH_BIN, REPO_ROOT } from "../support/mlmesh-process.js";

const FIXTURES = path.join(REPO_ROOT, "lib/drift/fixtures");
const run = (args: string[]) => spawnSync(process.execPath, [MLMESH_BIN, "drift", ...args], { cwd: REPO_ROOT, encoding: "utf8" });

describe("mlmesh drift", () => {
  it("reports every shared column with psi, kl, js, hellinger, wasserstein and drift", () => {
    const r = run(["--reference", path.join(FIXTURES, "reference.csv"), "--current", path.join(FIXTURES, "current.csv"), "--json"]);
    assert.equal(r.status, 1, r.stderr);
    const out = JSON.parse(r.stdout) as { columns: Array<Record<string, unknown>> };
    for (const c of out.columns) {
      for (const k of ["column", "psi", "kl", "js", "hellinger", "wasserstein", "drift"]) assert.ok(k in c, `${k} in ${JSON.stringify(c)}`);
      assert.ok(typeof c.psi === "number" && Number.isFinite(c.psi));
    }
    const byName = new Map(out.columns.map((c) => [c.column, c]));
    assert.equal(byName.get("normal_shifted")?.drift, true);
    assert.equal(byName.get("normal_same")?.drift, false);
    assert.equal(byName.get("categorical_new_and_gone")?.wasserstein, null);
  });

  it("exits 0 when nothing drifts", () => {
    const ref = path.join(FIXTURES, "reference.csv");
    const r = run(["--reference", ref, "--current", ref, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok((JSON.parse(r.stdout) as { columns: Array<{ psi: number }> }).columns.every((c) => c.psi < 1e-9));
  });

  it("names the file and line of a malformed CSV line (usage error, exit 2)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-drift-"));
    const bad = path.join(dir, "bad.csv");
    fs.writeFileSync(bad, 'a,b\n1,2\n3,"unterminated\n');
    const r = run(["--reference", bad, "--current", bad]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /bad\.csv:3:\d+: quoted field is never closed/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("refuses missing flags and bad numbers", () => {
    assert.equal(run(["--reference", "x.csv"]).status, 2);
    const r = run(["--reference", "a", "--current", "b", "--bins", "1"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--bins must be an integer in \[2, 1000\]/);
  });
});
