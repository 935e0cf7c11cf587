import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RateLimiter } from "./rate-limit.js";

describe("RateLimiter", () => {
  it("allows a burst, then one call per 1/rate, per key", () => {
    let t = 0;
    const rl = new RateLimiter(10, 3, () => t);
    assert.deepEqual([rl.take("a"), rl.take("a"), rl.take("a")], [0, 0, 0]);
    assert.equal(rl.take("a"), 100, "the 4th call waits 100 ms at 10/s");
    assert.equal(rl.take("b"), 0, "another key has its own bucket");
    t += 100;
    assert.equal(rl.take("a"), 0);
    assert.ok(rl.take("a") > 0);
    t += 10_000;
    assert.deepEqual([rl.take("a"), rl.take("a"), rl.take("a"), rl.take("a") > 0], [0, 0, 0, true], "refills only up to the burst");
  });
});
