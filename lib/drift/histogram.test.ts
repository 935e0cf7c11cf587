// Window counting against NumPy's bins, and the sliding window checked against a recount
// from scratch after every push, eviction and time-based expiry.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  SlidingHistogram,
  categoricalBinner,
  countCategorical,
  countNumeric,
  countWindow,
  numericBinner,
  referenceCounts,
} from "./histogram.js";
import { buildCategoricalReference, buildNumericReference } from "./reference.js";

const fixture = JSON.parse(readFileSync(new URL("./fixtures/drift.json", import.meta.url), "utf8")) as {
  cases: { name: string; kind: string; reference: (number | string | null)[]; current: (number | string | null)[]; expected: { currentCounts: number[] } }[];
};

/** Deterministic PRNG (mulberry32) so the streams are reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("current windows are counted into the reference bins as numpy does", () => {
  for (const c of fixture.cases.filter((k) => k.kind === "numeric")) {
    const num = (xs: (number | string | null)[]) => xs.map((x) => (x === null ? NaN : (x as number)));
    const ref = buildNumericReference(num(c.reference));
    const w = countNumeric(ref, num(c.current));
    assert.deepEqual(w.counts, c.expected.currentCounts, c.name);
  }
});

test("categorical windows put unseen categories in a last bin", () => {
  const ref = buildCategoricalReference(["a", "a", "b"]);
  const w = countCategorical(ref, ["a", "z", "b", null, "y", "a"]);
  assert.deepEqual(w.counts, [2, 1, 2]);
  assert.equal(w.missing, 1);
  assert.deepEqual(referenceCounts(ref), [2, 1, 0]);
});

test("sliding window equals a recount from scratch after every step", () => {
  const next = rng(7);
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const ref = buildNumericReference(Array.from({ length: 2000 }, normal));
  const binner = numericBinner(ref);
  const capacity = 257;
  const window = new SlidingHistogram(binner, { capacity });
  const seen: number[] = [];
  for (let i = 0; i < 5000; i++) {
    // Drifting stream with out-of-range values and the odd missing one.
    const x = i % 97 === 0 ? NaN : normal() * (1 + i / 2500) + i / 1000;
    if (window.push(x)) seen.push(x);
    const expected = countWindow(binner, seen.slice(-capacity)).counts;
    assert.deepEqual(window.snapshot(), expected, `step ${i}`);
  }
  assert.equal(window.size, capacity);
  assert.equal(window.missing, Math.ceil(5000 / 97));
});

test("time-based expiry removes exactly the observations older than the cutoff", () => {
  const ref = buildNumericReference(Array.from({ length: 100 }, (_, i) => i));
  const binner = numericBinner(ref);
  const window = new SlidingHistogram(binner, { capacity: 1000 });
  const next = rng(3);
  const log: { x: number; at: number }[] = [];
  for (let t = 0; t < 3000; t++) {
    const x = next() * 120 - 10;
    window.push(x, t);
    log.push({ x, at: t });
    if (t % 10 === 0) {
      const cutoff = t - 300;
      window.expireBefore(cutoff);
      const live = log.filter((o) => o.at >= cutoff).slice(-1000).map((o) => o.x);
      assert.deepEqual(window.snapshot(), countWindow(binner, live).counts, `t=${t}`);
      assert.equal(window.size, live.length);
    }
  }
  window.clear();
  assert.equal(window.size, 0);
  assert.equal(window.evictOldest(), false);
  assert.ok(window.snapshot().every((c) => c === 0));
});

test("categorical sliding window matches a recount", () => {
  const ref = buildCategoricalReference(["a", "b", "c", "a"]);
  const binner = categoricalBinner(ref);
  const window = new SlidingHistogram(binner, { capacity: 5 });
  const stream = ["a", "q", "b", "c", "c", "a", "z", "b", "a", "a", "c"];
  stream.forEach((v, i) => {
    window.push(v);
    assert.deepEqual(window.snapshot(), countWindow(binner, stream.slice(Math.max(0, i - 4), i + 1)).counts);
  });
  assert.throws(() => new SlidingHistogram(binner, { capacity: 0 }), /capacity/);
});
