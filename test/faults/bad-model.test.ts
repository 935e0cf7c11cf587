// Fault: model versions that the registry accepts (onnxruntime opens them) but that cannot
// serve: one whose output is a ZipMap (a sequence of maps) and one whose every run fails
// (a Reshape to a constant shape that no batch fits, so it breaks in the warm-up run at
// load). Made by test/faults/fixtures/make_fault_models.py. `mlmesh serve registry` and
// `mlmesh serve inference` are separate processes on a NATS of this test's own, under a
// steady Score load on the `champion` alias. Asserted: loading either version is refused with
// FAILED_PRECONDITION and a message saying why, promptly and every time; moving the alias
// to it leaves the previous version serving; no Score call fails; the process stays up.

import assert from "node:assert/strict";
import path from "node:path";
import fs from "node:fs";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { fixture, upload } from "../fixtures/models/registry-client.js";
import { FaultNats, hasNatsBinary } from "../support/fault-nats.js";
import { REPO_ROOT } from "../support/mlmesh-process.js";
import { ServiceProcess, SteadyLoad, sleep } from "./harness.js";

const FEATURES = ["acct:tenure", "acct:calls", "acct:spend"];
const SPEC = { featureBinding: { inputs: [{ inputName: "x", features: FEATURES }], entityKeys: ["account_id"] } };
const faultFixture = (name: string) => fs.readFileSync(path.join(REPO_ROOT, "test/faults/fixtures", name));
const row = (i: number) => ({
  values: Object.fromEntries(FEATURES.map((f, c) => [f.split(":")[1]!, { kind: { case: "floatValue" as const, value: (i % 11) + c } }])),
});

describe("fault: a version that cannot load", { skip: hasNatsBinary() ? false : "needs nats-server on PATH" }, () => {
  let nats: FaultNats;
  let registryProc: ServiceProcess;
  let inferenceProc: ServiceProcess;
  let registry: Client<typeof RegistryService>;
  let inference: Client<typeof InferenceService>;
  const model = `fault_bad_${Date.now()}`;

  before(async () => {
    nats = await FaultNats.start();
    registryProc = await ServiceProcess.create("registry", { MLMESH_NATS_URL: nats.url });
    inferenceProc = await ServiceProcess.create("inference", { MLMESH_NATS_URL: nats.url, MLMESH_REGISTRY_ADDR: registryProc.address });
    registry = createServiceClient(RegistryService, registryProc.grpc);
    inference = createServiceClient(InferenceService, inferenceProc.grpc);
    await upload(registry, model, fixture("lr_v1.onnx"), { spec: SPEC });
    await registry.setAlias({ modelName: model, alias: "champion", version: 1n });
    await inference.loadModel({ modelRef: `${model}@champion` });
  });
  after(async () => {
    await inferenceProc?.kill();
    await registryProc?.kill();
    await nats?.dispose();
  });

  /** Upload `file`, try to load it twice and score it directly, then move the champion to it; all under load. */
  async function refuseUnderLoad(t: { diagnostic(msg: string): void }, file: string, why: RegExp): Promise<void> {
    const versions = new Map<number, number>();
    const load = new SteadyLoad(
      async (i) => {
        const res = await inference.score({ modelRef: `${model}@champion`, requestId: `${file}-${i}`, inputs: { case: "rows", value: { rows: [row(i)] } } }, { timeoutMs: 10_000 });
        versions.set(Number(res.version), (versions.get(Number(res.version)) ?? 0) + 1);
      },
      3,
      20,
    );
    const results: Record<string, string> = {};
    // Collected rather than thrown, so one run reports every way the version misbehaves.
    const problems: string[] = [];
    const logOf = (e: ConnectError) => {
      const trace = /trace ([0-9a-f]{32})/.exec(e.rawMessage)?.[1];
      const line = trace ? inferenceProc.proc.stderr().split("\n").find((l) => l.includes(trace)) : undefined;
      return line ? ` | log: ${line.slice(0, 400)}` : "";
    };
    try {
      const up = await upload(registry, model, faultFixture(file), { spec: SPEC });
      const v = up.modelVersion!.version;
      // Twice: the second refusal must be as clear (and quick) as the first.
      for (const attempt of [1, 2]) {
        const t0 = Date.now();
        const err = await inference.loadModel({ modelRef: `${model}@${v}` }, { timeoutMs: 60_000 }).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        const ms = Date.now() - t0;
        results[`load #${attempt}`] = err ? `${Code[err.code]} in ${ms} ms: ${err.rawMessage.slice(0, 200)}${logOf(err)}` : "LOADED";
        if (!err) problems.push(`${file} loaded`);
        else if (err.code !== Code.FailedPrecondition || !why.test(err.rawMessage)) problems.push(`load #${attempt}: ${results[`load #${attempt}`]}`);
      }
      const direct = await inference.score({ modelRef: `${model}@${v}`, inputs: { case: "rows", value: { rows: [row(1)] } } }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      results.score = direct ? `${Code[direct.code]}` : "SCORED";
      if (direct?.code !== Code.FailedPrecondition) problems.push(`Score ${model}@${v}: ${results.score}`);
      // Promote it: inference tries, fails, and keeps the champion on version 1 - without
      // retrying the load forever and piling up session worker threads (Linux: /proc/<pid>/task).
      const threads = () => (fs.existsSync(`/proc/${inferenceProc.proc.proc.pid}/task`) ? fs.readdirSync(`/proc/${inferenceProc.proc.proc.pid}/task`).length : 0);
      const threadsBefore = threads();
      await registry.setAlias({ modelName: model, alias: "champion", version: v });
      await sleep(7000);
      const threadsAfter = threads();
      results.threads = `${threadsBefore} before the alias move, ${threadsAfter} 7 s after`;
      if (threadsAfter > threadsBefore + 1) problems.push(`inference threads grew from ${threadsBefore} to ${threadsAfter} after the alias moved to a version that cannot load`);
    } finally {
      const stats = await load.stop();
      const loaded = await inference.listLoadedModels({});
      const summary = {
        file,
        score_calls_ok: stats.ok,
        score_calls_failed: stats.failed,
        failures: stats.failures,
        versions_served: Object.fromEntries(versions),
        loaded: loaded.models.map((m) => `${m.modelName}@${m.version}`),
        refusals: results,
      };
      t.diagnostic(`bad model: ${JSON.stringify(summary)}`);
      console.log(`faults/bad-model: ${JSON.stringify(summary)}`);
      assert.deepEqual(stats.failures, {}, "Score on the champion failed");
      assert.deepEqual([...versions.keys()], [1], "only version 1 served the champion");
      assert.equal(inferenceProc.proc.proc.exitCode, null, "inference is still running");
    }
    assert.deepEqual(problems, []);
  }

  it("refuses a version whose output is a ZipMap; the previous version keeps serving", { timeout: 120_000 }, async (t) => {
    await refuseUnderLoad(t, "zipmap.onnx", /ZipMap/);
  });

  it(
    "refuses a version whose warm-up run fails; the previous version keeps serving",
    { timeout: 120_000 },
    async (t) => {
      await refuseUnderLoad(t, "bad_reshape.onnx", /reshape|warm|run/i);
    },
  );
});
