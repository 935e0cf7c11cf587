// Assignment: GrowthBook's published cases and the spec's and Python's vectors (exact equality);
// balance over 1M units (SRM p > 0.001), stability, ramp stickiness and layer independence.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ValidationError } from "../../../lib/errors.js";
import {
  assignArm,
  bucketRanges,
  bucketV1,
  bucketV2,
  checkLayerSlots,
  chooseArmIndex,
  createAssigner,
  fnv1a32,
  growthbookNamespaceBucket,
  hashValueV2,
  layerBucket,
  rampKeepsUnits,
} from "./assignment.js";
import { chiSquareSf } from "./distributions.js";
import { sampleRatioMismatch } from "./srm.js";
import { loadFixture } from "./testing.js";

interface Vector {
  seed: string;
  unitId: string;
  innerHash: number;
  hash: number;
  bucket: number;
  weights: number[];
  coverage: number;
  arm: number;
}
interface Fixture {
  growthbookCases: [string, string, number, number][];
  vectors: Vector[];
  layer: { seed: string; unitId: string; bucket: number }[];
  legacyNamespace: { namespace: string; unitId: string; bucket: number }[];
}

const fx = loadFixture<Fixture>("assignment.json");

function checkVector(v: Vector, label: string): void {
  assert.equal(fnv1a32(v.seed + v.unitId), v.innerHash, `${label} inner hash`);
  assert.equal(hashValueV2(v.seed, v.unitId), v.hash, `${label} hash`);
  assert.equal(bucketV2(v.seed, v.unitId), v.bucket, `${label} bucket`);
  assert.equal(chooseArmIndex(v.bucket, bucketRanges(v.weights, v.coverage)), v.arm, `${label} arm`);
}

test("GrowthBook's own hash test cases (versions 1 and 2) and range cases", () => {
  for (const [seed, value, version, expected] of fx.growthbookCases) {
    assert.equal(version === 2 ? bucketV2(seed, value) : bucketV1(seed, value), expected, `hash(${seed}, ${value}, v${version})`);
  }
  assert.deepEqual(bucketRanges([0.5, 0.5]), [[0, 0.5], [0.5, 1]]);
  assert.deepEqual(bucketRanges([0.5, 0.5], 0.5), [[0, 0.25], [0.5, 0.75]]);
  assert.deepEqual(bucketRanges([0.4, 0.6]), [[0, 0.4], [0.4, 1]]);
  assert.deepEqual(bucketRanges([0.25, 0.25, 0.25, 0.25]), [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]);
  const reduced = bucketRanges([0.2, 0.3, 0.5], 0.2); // GrowthBook expects [0, 0.04], [0.2, 0.26], [0.5, 0.6]
  [[0, 0.04], [0.2, 0.26], [0.5, 0.6]].forEach(([a, b], i) => {
    assert.ok(Math.abs(reduced[i]![0] - a!) < 1e-15 && Math.abs(reduced[i]![1] - b!) < 1e-15);
  });
  const gb = assignArm({ seed: "feature", arms: [{ name: "v0", weight: 0.1 }, { name: "v1", weight: 0.9 }], coverage: 0.99 }, "123");
  assert.deepEqual([gb.arm, gb.bucket], ["v1", 0.5231]);
});

test("every vector in fixtures/assignment.json (computed in Python) reproduces exactly", () => {
  fx.vectors.forEach((v, i) => checkVector(v, `fixture vector ${i + 1}`));
  for (const l of fx.layer) assert.equal(layerBucket(l.seed, l.unitId), l.bucket);
  for (const n of fx.legacyNamespace) assert.equal(growthbookNamespaceBucket(n.namespace, n.unitId), n.bucket);
});

test("every vector in docs/assignment-spec.md reproduces exactly", () => {
  const doc = readFileSync(new URL("../../../docs/assignment-spec.md", import.meta.url), "utf8");
  const table = doc.slice(doc.indexOf("<!-- vectors:start -->"), doc.indexOf("<!-- vectors:end -->"));
  const rows = table.split("\n").filter((l) => /^\| \d+ \|/.test(l));
  assert.ok(rows.length >= 20, `the spec needs at least 20 vectors, has ${rows.length}`);
  for (const row of rows) {
    const cells = row.split("|").slice(1, -1).map((c) => c.trim());
    const [n, seed, unit, inner, hash, bucket, weights, coverage, arm] = cells as [string, string, string, string, string, string, string, string, string];
    const unquote = (c: string): string => JSON.parse(c.replace(/^`|`$/g, "")) as string;
    checkVector(
      {
        seed: unquote(seed),
        unitId: unquote(unit),
        innerHash: Number(inner),
        hash: Number(hash),
        bucket: Number(bucket),
        weights: weights.split("/").map(Number),
        coverage: Number(coverage),
        arm: Number(arm),
      },
      `spec vector ${n}`,
    );
  }
});

test("balance over 1M units: SRM p > 0.001 for 50/50 and 20/30/50", (t) => {
  for (const weights of [[0.5, 0.5], [0.2, 0.3, 0.5]]) {
    const assign = createAssigner({ seed: "balance-check", arms: weights.map((w, i) => ({ name: `arm${i}`, weight: w })) });
    const counts = weights.map(() => 0);
    for (let i = 0; i < 1_000_000; i++) counts[assign(`user-${i}`).armIndex]!++;
    const srm = sampleRatioMismatch(counts, weights);
    t.diagnostic(`weights ${weights.join("/")}: counts ${counts.join(", ")}, SRM p = ${srm.pValue.toFixed(4)}`);
    assert.ok(srm.pValue > 0.001, `SRM p ${srm.pValue}`);
  }
});

test("stable: the same unit gets the same arm on every call and from a fresh assigner", () => {
  const config = { seed: "stability", arms: [{ name: "control", weight: 0.5 }, { name: "treatment", weight: 0.5 }] };
  const first = createAssigner(config);
  const second = createAssigner({ ...config, arms: config.arms.map((a) => ({ ...a })) });
  for (let i = 0; i < 10_000; i++) {
    const id = `u${i * 7919}`;
    const a = first(id);
    assert.deepEqual(a, first(id));
    assert.deepEqual(a, second(id));
    assert.deepEqual(a, assignArm(config, id));
  }
});

test("ramps: treatment 5% → 10% keeps every treatment unit; coverage ramps keep every arm", () => {
  const arms = (w: number) => [{ name: "control", weight: 1 - w }, { name: "treatment", weight: w }];
  const at5 = createAssigner({ seed: "ramp-check", arms: arms(0.05) });
  const at10 = createAssigner({ seed: "ramp-check", arms: arms(0.1) });
  let stayed = 0;
  let moved = 0;
  for (let i = 0; i < 100_000; i++) {
    const before = at5(`user-${i}`).arm;
    const after = at10(`user-${i}`).arm;
    if (before === "treatment") {
      assert.equal(after, "treatment", `user-${i} left treatment`);
      stayed++;
    } else if (after === "treatment") moved++;
  }
  assert.ok(stayed > 4500 && moved > 4500, `stayed ${stayed}, newly treated ${moved}`);
  assert.equal(rampKeepsUnits([0.95, 0.05], [0.9, 0.1], 1), true);
  assert.equal(rampKeepsUnits([0.95, 0.05], [0.9, 0.1], 0), false);
  assert.equal(rampKeepsUnits([0.9, 0.1], [0.95, 0.05], 1), false);
  assert.equal(rampKeepsUnits([0.2, 0.3, 0.5], [0.2, 0.3, 0.5], 1, 0.1, 0.5), true);
  assert.equal(rampKeepsUnits([0.2, 0.3, 0.5], [0.3, 0.2, 0.5], 1), false);
  assert.equal(rampKeepsUnits([0.2, 0.3, 0.5], [0.1, 0.4, 0.5], 1), true); // start moved left, end kept

  const c10 = createAssigner({ seed: "cov", arms: arms(0.5), coverage: 0.1 });
  const c20 = createAssigner({ seed: "cov", arms: arms(0.5), coverage: 0.2 });
  for (let i = 0; i < 50_000; i++) {
    const a = c10(`user-${i}`);
    if (a.arm !== null) assert.equal(c20(`user-${i}`).arm, a.arm);
    else assert.equal(a.reason, "not_in_coverage");
  }
});

test("layers: exclusive slots, and the arm is independent of the layer bucket", () => {
  const slotA = { seed: "layer:ranking", range: [0, 0.5] as const };
  const slotB = { seed: "layer:ranking", range: [0.5, 1] as const };
  const arms = [{ name: "control", weight: 0.5 }, { name: "treatment", weight: 0.5 }];
  const expA = createAssigner({ seed: "exp-a", arms, layer: slotA });
  const expB = createAssigner({ seed: "exp-b", arms, layer: slotB });
  // 2x2 table: layer half (A/B) x arm of an experiment hashed outside the layer.
  const plain = createAssigner({ seed: "exp-c", arms });
  const table = [[0, 0], [0, 0]];
  for (let i = 0; i < 200_000; i++) {
    const id = `user-${i}`;
    const a = expA(id);
    const b = expB(id);
    assert.ok((a.arm === null) !== (b.arm === null), `${id} must be in exactly one experiment of the layer`);
    table[a.arm === null ? 1 : 0]![plain(id).armIndex]!++;
  }
  const total = 200_000;
  let chi2 = 0;
  for (let r = 0; r < 2; r++) {
    for (let c = 0; c < 2; c++) {
      const e = ((table[r]![0]! + table[r]![1]!) * (table[0]![c]! + table[1]![c]!)) / total;
      chi2 += (table[r]![c]! - e) ** 2 / e;
    }
  }
  assert.ok(chiSquareSf(chi2, 1) > 0.001, `layer and arm look dependent: chi2 ${chi2}`);
  assert.throws(() => checkLayerSlots([[0, 0.5], [0.4, 1]]), /overlap/);
});

test("bad input: weights not summing to 1, empty ids, bad coverage, duplicate arms", () => {
  const arms = [{ name: "a", weight: 0.5 }, { name: "b", weight: 0.5 }];
  assert.throws(() => bucketRanges([0.4, 0.5]), /sum to 1/);
  assert.throws(() => bucketRanges([1.5, -0.5]), ValidationError);
  assert.throws(() => bucketRanges([1]), ValidationError);
  assert.throws(() => bucketRanges([0.5, 0.5], 1.2), /coverage/);
  assert.throws(() => assignArm({ seed: "s", arms }, ""), /unitId/);
  assert.throws(() => assignArm({ seed: "", arms }, "u"), /seed/);
  assert.throws(() => createAssigner({ seed: "s", arms: [{ name: "a", weight: 0.5 }, { name: "a", weight: 0.5 }] }), /unique/);
  assert.throws(() => bucketV2("s", ""), ValidationError);
});
