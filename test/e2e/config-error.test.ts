// A bad MLMESH_* value stops the process before it serves anything, with one line naming
// the variable and what it expected, and a non-zero exit code.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { MLMESH_BIN, REPO_ROOT } from "../support/mlmesh-process.js";

function run(args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, [MLMESH_BIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, encoding: "utf8", timeout: 30_000 });
}

describe("configuration errors", () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [["serve", "registry"], { MLMESH_REGISTRY_GRPC_PORT: "fifty" }, /^mlmesh: invalid MLMESH_REGISTRY_GRPC_PORT="fifty": expected an integer in \[0, 65535\]$/],
    [["up"], { MLMESH_LOG_LEVEL: "chatty" }, /^mlmesh: invalid MLMESH_LOG_LEVEL="chatty": expected one of trace, debug, info, warn, error, fatal, silent$/],
    [["serve", "router"], { MLMESH_NATS_URL: "localhost:4222" }, /^mlmesh: invalid MLMESH_NATS_URL="localhost:4222": expected a URL with scheme/],
  ];
  for (const [args, env, pattern] of cases) {
    const [name] = Object.keys(env);
    it(`${args.join(" ")} with a bad ${name}: one line, exit 78`, () => {
      const r = run(args, env);
      assert.equal(r.status, 78, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, pattern);
      assert.equal(r.stdout, "");
    });
  }

  it("an unknown command is a usage error (exit 2)", () => {
    const r = run(["bogus"], {});
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command "bogus"/);
  });

  it("serve without a known service is a usage error (exit 2)", () => {
    const r = run(["serve", "nope"], {});
    assert.equal(r.status, 2);
    assert.match(r.stderr, /serve needs one of registry, features, inference, router, experiments/);
  });
});
