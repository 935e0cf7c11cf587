// Test helpers for the statistics modules: load a JSON reference fixture, and compare numbers
// within a stated tolerance while recording the worst deviation seen (reported per file).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { Comparison, RelativeLift } from "./effect.js";

/** Parsed fixtures/<name>.json (written by fixtures/make_fixtures.py). */
export function loadFixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8")) as T;
}

export interface Tolerance {
  /** Relative tolerance: |actual − expected| ≤ rel · |expected| passes. Default 1e-6. */
  readonly rel?: number;
  /** Absolute floor for expected values at or near zero. Default 1e-12. */
  readonly abs?: number;
}

let worst = { relative: 0, label: "" };

/** Largest relative deviation |a − e| / |e| recorded by assertClose where the relative criterion applied. */
export function worstDeviation(): { relative: number; label: string } {
  return worst;
}

/**
 * Passes when |actual − expected| ≤ max(abs, rel · |expected|): relative agreement, with an
 * absolute floor only for expected values so close to 0 that relative error is meaningless.
 */
export function assertClose(actual: number, expected: number, label: string, tolerance: Tolerance = {}): void {
  const rel = tolerance.rel ?? 1e-6;
  const abs = tolerance.abs ?? 1e-12;
  assert.equal(typeof actual, "number", `${label}: not a number`);
  assert.ok(!Number.isNaN(actual), `${label}: NaN`);
  if (actual === expected) return;
  const diff = Math.abs(actual - expected);
  if (Math.abs(expected) * rel >= abs) {
    const r = diff / Math.abs(expected);
    if (r > worst.relative) worst = { relative: r, label };
  }
  assert.ok(diff <= Math.max(abs, rel * Math.abs(expected)), `${label}: got ${actual}, expected ${expected} (|diff| ${diff.toExponential(2)})`);
}

/** A two-arm comparison as the fixtures store it. */
export interface ExpectedComparison {
  diff: number;
  se: number;
  statistic: number;
  pValue: number;
  df?: number;
  ciLow: number;
  ciHigh: number;
  relative: RelativeLift | null;
}

/** Checks every field of a Comparison against a fixture (df only when the fixture has one). */
export function checkComparison(got: Comparison, want: ExpectedComparison, name: string): void {
  assertClose(got.diff, want.diff, `${name} diff`);
  assertClose(got.se, want.se, `${name} se`);
  assertClose(got.statistic, want.statistic, `${name} statistic`);
  assertClose(got.pValue, want.pValue, `${name} p`);
  if (want.df !== undefined) assertClose(got.df, want.df, `${name} df`);
  assertClose(got.ciLow, want.ciLow, `${name} ciLow`);
  assertClose(got.ciHigh, want.ciHigh, `${name} ciHigh`);
  if (want.relative === null) assert.equal(got.relative, null, `${name} relative`);
  else {
    assert.ok(got.relative, `${name} relative missing`);
    assertClose(got.relative.lift, want.relative.lift, `${name} lift`);
    assertClose(got.relative.se, want.relative.se, `${name} lift se`);
    assertClose(got.relative.ciLow, want.relative.ciLow, `${name} lift ciLow`);
    assertClose(got.relative.ciHigh, want.relative.ciHigh, `${name} lift ciHigh`);
  }
}

