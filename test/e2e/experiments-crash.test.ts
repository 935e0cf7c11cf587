// Acknowledged ingest survives a SIGKILL of `mlmesh serve experiments`: the process has no
// chance to flush or checkpoint (WAL checkpoints run in a worker, automatic ones are off), so
// what LogExposures/LogOutcomes acknowledged must be recovered from the database and its
// write-ahead log alone — statistics exact, redelivered outcome ids still duplicates.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { MetricDirection, MetricRole, MetricType, UnitType } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { statsFromValues } from "../../services/experiments/stats/sufficient-stats.js";
import { welchFromStats } from "../../services/experiments/stats/welch.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";

const RUN = Math.random().toString(36).slice(2, 8);
const T0 = Date.UTC(2026, 0, 1);

describe("experiment ingest across a SIGKILL", () => {
  let nats: TestNats;
  let env: Record<string, string>;
  let proc: MlmeshProcess;
  let ex: Client<typeof ExperimentService>;
  const key = `crash-${RUN}`;

  before(async () => {
    nats = await testNats();
    env = await isolatedEnv({ MLMESH_NATS_URL: nats.url, MLMESH_LOG_LEVEL: "warn" });
    proc = await startMlmesh(["serve", "experiments"], env);
    ex = createServiceClient(ExperimentService, proc.endpoint("experiments").grpc);
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
  });

  it("keeps every acknowledged batch, exactly once", async () => {
    await ex.createExperiment({
      experiment: {
        key,
        unitType: UnitType.USER,
        arms: [{ name: "control", weight: 0.5, control: true }, { name: "treatment", weight: 0.5 }],
        metrics: [{ name: "revenue", role: MetricRole.PRIMARY, type: MetricType.MEAN, direction: MetricDirection.HIGHER_IS_BETTER, baselineSd: 4 }],
        mde: 0.5,
      },
    });
    await ex.startExperiment({ key });
    const units = 12_000;
    const arm = (i: number) => (i % 2 ? "treatment" : "control");
    const value = (i: number, k: number) => ((i * 7919 + k * 104729) % 1000) / 37;
    const sums = new Array<number>(units).fill(0);
    // Several batches, so the log holds many commits when the process dies.
    for (let s = 0; s < units; s += 3000) {
      const r = await ex.logExposures({ exposures: Array.from({ length: 3000 }, (_, j) => ({ experimentKey: key, unitId: `${RUN}-u${s + j}`, arm: arm(s + j), time: timestampFromMs(T0) })) });
      assert.equal(r.accepted, 3000n);
    }
    for (const k of [0, 1]) {
      for (let s = 0; s < units; s += 4000) {
        const batch = Array.from({ length: 4000 }, (_, j) => ({ unitId: `${RUN}-u${s + j}`, metric: "revenue", value: value(s + j, k), time: timestampFromMs(T0 + 1000), outcomeId: `${RUN}-o${k}-${s + j}` }));
        assert.equal((await ex.logOutcomes({ outcomes: batch })).accepted, 4000n);
        for (let j = 0; j < 4000; j++) sums[s + j]! += value(s + j, k);
      }
    }
    const expected = (a: string) => statsFromValues(sums.filter((_, i) => arm(i) === a));
    const want = welchFromStats(expected("control"), expected("treatment"));

    assert.equal(await proc.stop("SIGKILL"), null, "killed, not exited");
    proc = await startMlmesh(["serve", "experiments"], env);
    ex = createServiceClient(ExperimentService, proc.endpoint("experiments").grpc);

    const report = (await ex.getReport({ experimentKey: key })).report!;
    const m = report.metrics[0]!;
    const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} != ${b}`);
    for (const name of ["control", "treatment"]) {
      const a = m.arms.find((x) => x.arm === name)!;
      const e = expected(name);
      assert.equal(a.n, BigInt(units / 2), `${name} units`);
      close(a.mean, e.meanY, `${name} mean`);
      close(a.variance, e.m2Y / (e.n - 1), `${name} variance`);
    }
    close(m.comparisons[0]!.pValue, want.pValue, "Welch p-value");
    // A redelivery of acknowledged ids after the crash is still recognised.
    const again = await ex.logOutcomes({ outcomes: [{ unitId: `${RUN}-u5`, metric: "revenue", value: 99, time: timestampFromMs(T0 + 1000), outcomeId: `${RUN}-o1-5` }] });
    assert.deepEqual([again.accepted, again.duplicates], [0n, 1n]);
  });
});
