// Live windows against the SciPy fixtures of lib/drift: a reference built the way the
// registry builds it, current values fed as prediction log records (named rows, dense
// vectors, short feature names), and the statistics equal to SciPy's on the same data.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { PredictionLogBatchSchema, PredictionLoggedSchema } from "../../../gen/mlmesh/events/v1/inference_events_pb.js";
import { ReferenceDistributionsSchema, type Distribution } from "../../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { buildCategoricalReference, buildNumericReference } from "../../../lib/drift/reference.js";
import { decodeMonitoredBatch } from "./log-decoder.js";
import { driftOf, SCORE_FEATURE, VersionWindows } from "./windows.js";

/** A record as the monitor reads it off the log: encoded, then decoded by its own reader. */
const monitored = (init: MessageInitShape<typeof PredictionLoggedSchema>) =>
  decodeMonitoredBatch(toBinary(PredictionLogBatchSchema, create(PredictionLogBatchSchema, { records: [init] }))).records[0]!;

interface Case {
  name: string;
  kind: "numeric" | "categorical";
  reference: Array<number | string | null>;
  current: Array<number | string | null>;
  expected: { psi: number; kl: number; js: number; hellinger: number; wassersteinBinned?: number; chi2Contingency?: { pValue: number } };
}
const fixture = JSON.parse(readFileSync(new URL("../../../lib/drift/fixtures/drift.json", import.meta.url), "utf8")) as { cases: Case[] };

function distribution(c: Case): Distribution {
  if (c.kind === "numeric") {
    const r = buildNumericReference(c.reference.map((x) => (x === null ? NaN : (x as number))));
    return { count: BigInt(r.n), missingCount: BigInt(r.missing), kind: { case: "numeric", value: { binEdges: r.edges, binCounts: r.counts.map(BigInt) } } } as unknown as Distribution;
  }
  const r = buildCategoricalReference(c.reference.map((x) => (x === null ? null : String(x))));
  return { count: BigInt(r.n), missingCount: BigInt(r.missing), kind: { case: "categorical", value: { values: r.categories.map((v, i) => ({ value: v, count: BigInt(r.counts[i]!) })), otherCount: 0n } } } as unknown as Distribution;
}

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs SciPy ${b}`);

test("window statistics equal SciPy's on the lib/drift fixtures (named-row records)", () => {
  for (const c of fixture.cases) {
    const reference = create(ReferenceDistributionsSchema, { sampleSize: BigInt(c.reference.length), features: [{ column: "v:f", distribution: distribution(c) }] });
    const w = new VersionWindows("m", 1, reference, { inputs: [{ inputName: "x", features: ["v:f"] }], entityKeys: [] } as never, 10_000);
    c.current.forEach((x, i) => {
      const value = x === null ? undefined : typeof x === "number" ? { kind: { case: "doubleValue" as const, value: x } } : { kind: { case: "stringValue" as const, value: x } };
      // Alternate the full ref and the short name, as Score rows may use either.
      const inputs = value ? { [i % 2 === 0 ? "v:f" : "f"]: value } : {};
      w.add(monitored({ inputs, output: { score: 0.5 } }), i);
    });
    const d = driftOf(w.features[0]!)!;
    close(d.psi, c.expected.psi, `${c.name} psi`);
    close(d.kl, c.expected.kl, `${c.name} kl`);
    close(d.js, c.expected.js, `${c.name} js`);
    close(d.hellinger, c.expected.hellinger, `${c.name} hellinger`);
    if (c.kind === "numeric") close(d.wasserstein, c.expected.wassersteinBinned!, `${c.name} wasserstein (binned)`);
    else close(d.chiSquareP, c.expected.chi2Contingency!.pValue, `${c.name} chi-square p`);
    assert.equal(w.score, undefined, "no score reference, no score window");
  }
});

test("dense records: column x[i] of a vector input, the score window, time expiry", () => {
  const num = fixture.cases.find((c) => c.name === "normal_shifted")!;
  const dist = distribution(num);
  const reference = create(ReferenceDistributionsSchema, {
    sampleSize: 600n,
    features: [
      { column: "x[0]", distribution: dist },
      { column: "x[1]", distribution: dist },
    ],
    score: dist,
  });
  const w = new VersionWindows("m", 1, reference, undefined, 300);
  num.current.forEach((x, i) => {
    w.add(monitored({ inputs: { x: { kind: { case: "floatVectorValue", value: { values: [x as number, 0] } } } }, output: { score: x as number } }), 1000 + i);
  });
  assert.deepEqual(w.all().map((f) => f.feature), ["x[0]", "x[1]", SCORE_FEATURE]);
  // Capacity 300: the window holds the last 300 of the 400 values.
  assert.equal(w.features[0]!.hist.size, 300);
  assert.equal(w.firstTimeMs(), 1100);
  assert.equal(w.lastTimeMs, 1399);
  const x0 = driftOf(w.features[0]!)!;
  const score = driftOf(w.score!)!;
  assert.equal(x0.psi, score.psi, "x[0] and the score saw the same values");
  assert.ok(driftOf(w.features[1]!)!.psi > x0.psi, "a constant column drifts more");
  w.expire(1350);
  assert.equal(w.features[0]!.hist.size, 50);
  assert.equal(w.firstTimeMs(), 1350);
});
