// Reference building against NumPy: quantiles, deduplicated edges and counts from the
// fixtures, the one-bin-per-value rule, and JSON round trips through parseReference.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  buildCategoricalReference,
  buildNumericReference,
  numericBinIndex,
  parseReference,
  quantileEdges,
  sortedQuantile,
} from "./reference.js";

interface NumericCase {
  name: string;
  kind: "numeric";
  reference: (number | null)[];
  current: (number | null)[];
  expected: { edges: number[]; referenceCounts: number[]; quantiles: [number, number][] };
}

const fixture = JSON.parse(readFileSync(new URL("./fixtures/drift.json", import.meta.url), "utf8")) as {
  cases: ({ kind: string } & Record<string, unknown>)[];
};
const numericCases = fixture.cases.filter((c) => c.kind === "numeric") as unknown as NumericCase[];
const asNumbers = (xs: (number | null)[]) => xs.map((x) => (x === null ? NaN : x));

test("quantiles match np.quantile(method='linear')", () => {
  for (const c of numericCases) {
    const sorted = Float64Array.from(asNumbers(c.reference).filter(Number.isFinite)).sort();
    for (const [q, want] of c.expected.quantiles) {
      assert.ok(Math.abs(sortedQuantile(sorted, q) - want) <= 1e-12, `${c.name} q=${q}`);
    }
  }
});

test("edges and reference counts match numpy exactly, ties merged, missing dropped", () => {
  for (const c of numericCases) {
    const ref = buildNumericReference(asNumbers(c.reference));
    assert.deepEqual(ref.edges, c.expected.edges, c.name);
    assert.deepEqual(ref.counts, c.expected.referenceCounts, c.name);
    assert.equal(ref.n + ref.missing, c.reference.length);
    assert.equal(ref.missing, c.reference.filter((x) => x === null).length);
  }
  const ties = numericCases.find((c) => c.name === "zero_inflated_ties")!;
  assert.ok(ties.expected.edges.length < 11, "ties merge edges");
});

test("a feature with few distinct values gets one bin per value", () => {
  const ref = buildNumericReference([0, 0, 0, 1, 1, 0, 0, 1]);
  assert.deepEqual(ref.edges, [0, 1, 1]);
  assert.deepEqual(ref.counts, [5, 3]);
  const constant = buildNumericReference([4, 4, 4]);
  assert.deepEqual(constant.edges, [4, 4]);
  assert.deepEqual(constant.counts, [3]);
  assert.equal(numericBinIndex(constant.edges, -10), 0);
  assert.equal(numericBinIndex(constant.edges, 10), 0);
});

test("bin index: left-closed bins, outer bins catch out-of-range values", () => {
  const edges = [0, 1, 2, 3];
  assert.equal(numericBinIndex(edges, -5), 0);
  assert.equal(numericBinIndex(edges, 0), 0);
  assert.equal(numericBinIndex(edges, 0.999), 0);
  assert.equal(numericBinIndex(edges, 1), 1);
  assert.equal(numericBinIndex(edges, 2.5), 2);
  assert.equal(numericBinIndex(edges, 3), 2);
  assert.equal(numericBinIndex(edges, 99), 2);
  assert.deepEqual(quantileEdges(Float64Array.from([1, 2, 3, 4, 5]), 4), [1, 2, 3, 4, 5]);
});

test("references survive a JSON round trip and parseReference rejects corrupt ones", () => {
  const numeric = buildNumericReference(asNumbers(numericCases[0]!.reference), { bins: 20 });
  assert.equal(numeric.edges.length, 21);
  assert.deepEqual(parseReference(JSON.parse(JSON.stringify(numeric))), numeric);
  const categorical = buildCategoricalReference(["b", "a", "b", null, "c", "b", "a"]);
  assert.deepEqual(categorical.categories, ["b", "a", "c"]);
  assert.deepEqual(categorical.counts, [3, 2, 1]);
  assert.equal(categorical.missing, 1);
  assert.deepEqual(parseReference(JSON.parse(JSON.stringify(categorical))), categorical);

  assert.throws(() => parseReference({ ...numeric, version: 99 }), /version/);
  assert.throws(() => parseReference({ ...numeric, counts: numeric.counts.slice(1) }), /counts/);
  assert.throws(() => parseReference({ ...numeric, edges: [...numeric.edges].reverse() }), /edges/);
  assert.throws(() => parseReference({ ...categorical, categories: ["b", "b", "c"] }), /repeat/);
  assert.throws(() => parseReference({ ...categorical, kind: "text" }), /kind/);
  assert.throws(() => buildNumericReference([NaN, Infinity]), /finite/);
  assert.throws(() => buildNumericReference([1, 2], { bins: 0 }), /bins/);
});
