import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { quantile, VersionWindow } from "./window.js";

describe("VersionWindow.absorb (another replica's report)", () => {
  it("adds exact counts and the samples, so P99 and error rate cover both replicas", () => {
    const w = new VersionWindow();
    for (let i = 1; i <= 10; i++) w.record(i, i === 10, i === 10 ? undefined : i / 10);
    // The report: 1000 requests of which 50 failed, sampled to 4 latencies and 3 scores.
    w.absorb(1000, 50, [100, 200, 300, 400], [0.5, 0.6, 0.7]);
    assert.equal(w.requests, 1010);
    assert.equal(w.errors, 51);
    assert.equal(w.latenciesMs.length, 14);
    assert.equal(w.scores.length, 12);
    assert.equal(quantile(w.latenciesMs, 0.99), 400);
  });
});
