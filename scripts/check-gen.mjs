#!/usr/bin/env node
// Fails when gen/ differs from what `buf generate` makes from proto/ now: generated code is
// committed, and a contract change without regeneration must not land.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-gen-"));
try {
  const buf = path.join(root, "node_modules", ".bin", "buf");
  execFileSync(buf, ["generate", "--output", tmp], { cwd: root, stdio: "inherit" });
  const diff = spawnSync("diff", ["-r", "-u", path.join(root, "gen"), path.join(tmp, "gen")], { encoding: "utf8" });
  if (diff.status !== 0) {
    process.stderr.write(diff.stdout.slice(0, 20000));
    process.stderr.write("\ngen/ is stale: run `npm run generate` and commit the result.\n");
    process.exit(1);
  }
  console.log("gen/ is up to date with proto/");
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
