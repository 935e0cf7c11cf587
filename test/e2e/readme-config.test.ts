// The README is the user's manual: every configuration variable the code reads must be in
// its Configuration table, and every `npm run` script it names must exist.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { CONFIG_VARIABLES } from "../../lib/config.js";
import { REPO_ROOT } from "../support/mlmesh-process.js";

const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };

describe("README", () => {
  it("documents every configuration variable", () => {
    const missing = CONFIG_VARIABLES.map((v) => v.name).filter((name) => !readme.includes(`\`${name}\``));
    assert.deepEqual(missing, [], `variables read by lib/config*.ts but absent from README.md: ${missing.join(", ")}`);
  });

  it("names only npm scripts that exist", () => {
    const named = [...readme.matchAll(/npm run ([a-z][a-z:-]*)/g)].map((m) => m[1]!);
    const unknown = [...new Set(named)].filter((s) => !(s in pkg.scripts));
    assert.deepEqual(unknown, [], `README runs scripts package.json lacks: ${unknown.join(", ")}`);
  });
});
