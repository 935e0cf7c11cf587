#!/usr/bin/env node
// `npm test`: every *.test.ts under lib/, services/, cli/ and test/, run by Node's built-in
// test runner with tsx as the TypeScript loader. Arguments narrow the set:
// `npm test -- test/e2e` runs only the files under that path. The fault suite (test/faults)
// and the fuzz test (test/fuzz) start many processes each: they run as their own CI steps
// (`npm run test:faults`, `npm run test:fuzz`), not in the default set.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const explicit = process.argv.slice(2).length > 0;
const roots = explicit ? process.argv.slice(2) : ["lib", "services", "cli", "test"];
const SEPARATE = new Set([path.join("test", "faults"), path.join("test", "fuzz")]);
const files = [];
const walk = (p) => {
  if (!fs.existsSync(p)) return;
  if (!explicit && SEPARATE.has(path.normalize(p))) return;
  const st = fs.statSync(p);
  if (st.isFile()) {
    if (p.endsWith(".test.ts")) files.push(p);
    return;
  }
  for (const entry of fs.readdirSync(p).sort()) {
    if (entry === "node_modules" || entry.startsWith(".")) continue;
    walk(path.join(p, entry));
  }
};
roots.forEach(walk);
if (files.length === 0) {
  console.error(`no test files under ${roots.join(", ")}`);
  process.exit(1);
}
const concurrency = process.env.MLMESH_TEST_CONCURRENCY ?? "2";
const result = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, "--test-timeout=180000", ...files],
  { stdio: "inherit" },
);
process.exit(result.status ?? 1);
