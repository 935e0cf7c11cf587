// The Prometheus configuration and rules in deploy/ pass promtool, so an operator can load
// them as they are.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { REPO_ROOT } from "../support/mlmesh-process.js";

const DIR = path.join(REPO_ROOT, "deploy/prometheus");

describe("deploy/prometheus", () => {
  it("every rule file passes `promtool check rules`", () => {
    const files = fs.readdirSync(path.join(DIR, "rules")).filter((f) => f.endsWith(".yml")).map((f) => path.join(DIR, "rules", f));
    assert.ok(files.length >= 2);
    const r = spawnSync("promtool", ["check", "rules", ...files], { encoding: "utf8" });
    assert.equal(r.error, undefined, "promtool must be installed (Debian package prometheus)");
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it("the scrape configuration passes `promtool check config`", () => {
    const r = spawnSync("promtool", ["check", "config", path.join(DIR, "prometheus.yml")], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});
