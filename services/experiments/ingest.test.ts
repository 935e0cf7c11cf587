// removeObservation must be the exact inverse of addObservation: a late outcome replaces a
// unit's contribution, and the running moments must equal those computed from scratch.

import assert from "node:assert/strict";
import { it } from "node:test";
import { removeObservation } from "./ingest.js";
import { addObservation, statsFromValues } from "./stats/sufficient-stats.js";

it("removing then re-adding a unit's value gives the moments of the changed data", () => {
  const ys = [3.5, 1, 7.25, 2, 9, 4.5, 6];
  const xs = [1, 2, 3, 5, 8, 13, 21];
  const s = statsFromValues(ys, xs);
  removeObservation(s, ys[2]!, xs[2]!);
  addObservation(s, 10, 4);
  const changed = statsFromValues(ys.map((y, i) => (i === 2 ? 10 : y)), xs.map((x, i) => (i === 2 ? 4 : x)));
  for (const k of ["n", "meanY", "m2Y", "meanX", "m2X", "cXY"] as const) {
    assert.ok(Math.abs(s[k] - changed[k]) <= 1e-12 * Math.max(1, Math.abs(changed[k])), `${k}: ${s[k]} != ${changed[k]}`);
  }
  const single = statsFromValues([5]);
  assert.deepEqual(removeObservation(single, 5), statsFromValues([]));
});
