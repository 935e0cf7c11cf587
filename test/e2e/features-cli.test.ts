// `mlmesh features apply|list|get` (cli/features-command.ts) against the real feature
// service process: the file shape of issue #5, idempotent re-apply, reads by CLI keys.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { runFeatures } from "../../cli/features-command.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { loadConfig, type Config } from "../../lib/config.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

/** Run the command in-process, capturing what it prints to stdout. */
async function run(config: Config, argv: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (typeof chunk === "string") {
      out += chunk;
      return true;
    }
    return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    return { code: await runFeatures(config, argv), out };
  } finally {
    process.stdout.write = write;
  }
}

describe("mlmesh features (CLI)", () => {
  let nats: TestNats;
  let proc: MlmeshProcess;
  let config: Config;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-features-cli-"));

  before(async () => {
    nats = await testNats();
    proc = await startMlmesh(["serve", "features"], await isolatedEnv({ MLMESH_NATS_URL: nats.url }));
    config = loadConfig({ MLMESH_FEATURES_ADDR: proc.endpoint("features").grpc });
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("applies the issue's file shape, is idempotent, lists and reads by KEY=VALUE", async () => {
    const file = path.join(dir, "views.json");
    fs.writeFileSync(
      file,
      JSON.stringify([
        { name: "user_stats", entities: [{ name: "user_id", type: "int64" }], ttl: "7d", features: [{ name: "views_7d", type: "int64" }, { name: "spend_7d", type: "float64" }] },
        { name: "item_stats", entities: ["item_id"], features: [{ name: "title", type: "string" }] },
      ]),
    );
    const first = await run(config, ["apply", file, "--json"]);
    assert.equal(first.code, 0);
    assert.deepEqual(JSON.parse(first.out).map((r: { outcome: string }) => r.outcome), ["CREATED", "CREATED"]);
    const again = await run(config, ["apply", file]);
    assert.match(again.out, /user_stats\s+UNCHANGED\s+1/);

    const list = await run(config, ["list", "--json"]);
    assert.deepEqual(JSON.parse(list.out).map((v: { name: string; ttl: string }) => [v.name, v.ttl]), [["item_stats", ""], ["user_stats", "604800s"]]);

    const features = createServiceClient(FeatureService, proc.endpoint("features").grpc);
    await features.writeFeatures({
      view: "user_stats",
      rows: [{ entityKey: { keys: { user_id: { kind: { case: "int64Value", value: 42n } } } }, eventTime: timestampFromMs(Date.now()), values: [{ kind: { case: "int64Value", value: 7n } }, { kind: { case: "doubleValue", value: 3.25 } }] }],
    });
    const got = await run(config, ["get", "user_stats:views_7d,user_stats:spend_7d", "--entity", "user_id=42", "--entity", "user_id=43", "--json"]);
    assert.equal(got.code, 0);
    assert.deepEqual(JSON.parse(got.out), [
      { entity: "user_id=42", "user_stats:views_7d": "7", "user_stats:spend_7d": "3.25" },
      { entity: "user_id=43", "user_stats:views_7d": "NOT_FOUND", "user_stats:spend_7d": "NOT_FOUND" },
    ]);
  });

  it("exits 1 with the server's reason for a breaking change", async () => {
    const file = path.join(dir, "breaking.json");
    fs.writeFileSync(file, JSON.stringify({ name: "user_stats", entities: [{ name: "user_id", type: "int64" }], ttl: "7d", features: [{ name: "views_7d", type: "float64" }, { name: "spend_7d", type: "float64" }] }));
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (errors.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      assert.equal((await run(config, ["apply", file])).code, 1);
    } finally {
      process.stderr.write = write;
    }
    assert.match(errors.join(""), /FAILED_PRECONDITION: breaking change to feature view "user_stats".*views_7d type int64 -> float64/);
  });
});
