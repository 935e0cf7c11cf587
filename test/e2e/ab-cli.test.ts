// `mlmesh ab` as a data scientist runs it, checked against SciPy/statsmodels numbers stored
// in test/fixtures/ab/expected.json (made by make_ab_fixture.py there): Welch, Holm, BH,
// SRM and CUPED to 1e-6; sample sizes as the formulas give them; clear input errors.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { MLMESH_BIN, REPO_ROOT } from "../support/mlmesh-process.js";

const DIR = path.join(REPO_ROOT, "test/fixtures/ab");
const run = (args: string[]) => spawnSync(process.execPath, [MLMESH_BIN, "ab", ...args], { cwd: REPO_ROOT, encoding: "utf8" });

function close(actual: number, expected: number, what: string, tol = 1e-6): void {
  const scale = Math.max(1, Math.abs(expected));
  assert.ok(Math.abs(actual - expected) <= tol * scale, `${what}: ${actual} vs reference ${expected}`);
}

type Row = Record<string, number | string | Record<string, number>>;

describe("mlmesh ab analyze", () => {
  it("matches SciPy/statsmodels for Welch, Holm, BH, SRM and CUPED", () => {
    const r = run(["analyze", "--data", path.join(DIR, "ab.csv"), "--covariate", "pre_value", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { srm: Row; arms: Row[]; comparisons: Row[] };
    const want = JSON.parse(fs.readFileSync(path.join(DIR, "expected.json"), "utf8")) as typeof got;
    close(got.srm.chi2 as number, want.srm.chi2 as number, "srm.chi2");
    close(got.srm.p_value as number, want.srm.p_value as number, "srm.p_value");
    assert.equal(got.srm.ok, true);
    for (const w of want.arms) {
      const g = got.arms.find((a) => a.name === w.name)!;
      assert.equal(g.n, w.n);
      close(g.mean as number, w.mean as number, `${w.name}.mean`);
      close(g.variance as number, w.variance as number, `${w.name}.variance`);
    }
    for (const w of want.comparisons) {
      const g = got.comparisons.find((c) => c.arm === w.arm)!;
      for (const k of ["diff", "ci_low", "ci_high", "p_value", "p_value_holm", "p_value_bh"]) close(g[k] as number, w[k] as number, `${w.arm}.${k}`);
      const gc = g.cuped as Record<string, number>;
      const wc = w.cuped as Record<string, number>;
      for (const k of ["theta", "diff", "ci_low", "ci_high", "p_value", "variance_reduction"]) close(gc[k]!, wc[k]!, `${w.arm}.cuped.${k}`);
      assert.equal(typeof g.relative_lift, "number");
    }
  });

  it("flags a sample ratio mismatch against the planned weights", () => {
    const r = run(["analyze", "--data", path.join(DIR, "ab.csv"), "--weights", "control=0.5,blue=0.25,green=0.25", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { srm: { ok: boolean } }).srm.ok, false);
  });

  it("names the CSV line of a non-numeric value, a missing covariate, an unknown control", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-ab-"));
    const bad = path.join(dir, "bad.csv");
    fs.writeFileSync(bad, "unit_id,arm,value\nu1,control,1\nu2,control,2\nu3,b,x7\nu4,b,3\n");
    let r = run(["analyze", "--data", bad]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /bad\.csv:4: value "x7" is not a number/);
    r = run(["analyze", "--data", path.join(DIR, "ab.csv"), "--covariate", "nope"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /column "nope" is missing/);
    r = run(["analyze", "--data", path.join(DIR, "ab.csv"), "--control", "red"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /control arm "red" is not in the data/);
    fs.writeFileSync(bad, "unit_id,arm,value\nu1,control,1\nu2,control,2\nu3,b,3\n");
    r = run(["analyze", "--data", bad]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /at least 2 units/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe("mlmesh ab sample-size", () => {
  it("gives n = 2σ²(z₁₋α/₂ + z₁₋β)²/Δ² rounded up, and Cohen's h for proportions", () => {
    let r = run(["sample-size", "--sd", "1", "--mde", "0.1", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    // 2 * (1.959963984540054 + 0.8416212335729143)^2 / 0.01 = 1569.78
    assert.deepEqual(JSON.parse(r.stdout), { n_per_arm: 1570 });
    r = run(["sample-size", "--baseline-rate", "0.1", "--mde", "0.01", "--json"]);
    assert.equal(r.status, 0, r.stderr);
    // σ² = 0.09: 14127.9 → 14128; statsmodels NormalIndPower(h(0.11, 0.10)) → 14744.1 → 14745.
    assert.deepEqual(JSON.parse(r.stdout), { n_per_arm: 14128, n_per_arm_arcsine: 14745 });
  });

  it("refuses both or neither of --sd and --baseline-rate", () => {
    assert.equal(run(["sample-size", "--mde", "0.1"]).status, 2);
    assert.equal(run(["sample-size", "--sd", "1", "--baseline-rate", "0.1", "--mde", "0.1"]).status, 2);
  });
});
