import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Counter, Histogram, Registry } from "prom-client";
import { CounterChild, HistogramChild } from "./metric-children.js";

/** The same metrics twice: one fed through prom-client's API, one through the children. */
function pair() {
  const make = () => {
    const registry = new Registry();
    const counter = new Counter({ name: "t_requests_total", help: "h", labelNames: ["model", "code"] as const, registers: [registry] });
    const histogram = new Histogram({ name: "t_seconds", help: "h", labelNames: ["model"] as const, buckets: [0.001, 0.01, 0.1, 1], registers: [registry] });
    return { registry, counter, histogram };
  };
  return { plain: make(), fast: make() };
}

describe("label-bound metric children", () => {
  it("expose exactly what prom-client's own API exposes, through reset and remove", async () => {
    const { plain, fast } = pair();
    const c = { a: new CounterChild(fast.counter, { model: "a", code: "OK" }), b: new CounterChild(fast.counter, { model: "b", code: 3 }) };
    const h = { a: new HistogramChild(fast.histogram, { model: "a" }), b: new HistogramChild(fast.histogram, { model: "b" }) };
    const values = [0, 0.0005, 0.001, 0.005, 0.01, 0.5, 1, 2, 1e9, 0.001];
    const step = () => {
      for (const v of values) {
        plain.histogram.observe({ model: "a" }, v);
        h.a.observe(v);
        plain.histogram.observe({ model: "b" }, v / 10);
        h.b.observe(v / 10);
        plain.counter.inc({ model: "a", code: "OK" });
        c.a.inc();
        plain.counter.inc({ model: "b", code: 3 }, 2.5);
        c.b.inc(2.5);
      }
    };
    step();
    assert.equal(await fast.registry.metrics(), await plain.registry.metrics());
    // reset() swaps prom-client's map: the children must not keep adding to the old entries.
    plain.registry.resetMetrics();
    fast.registry.resetMetrics();
    step();
    assert.equal(await fast.registry.metrics(), await plain.registry.metrics());
    // remove() drops one label set: it comes back with the next observation.
    plain.histogram.remove({ model: "a" });
    fast.histogram.remove({ model: "a" });
    plain.counter.remove({ model: "b", code: 3 });
    fast.counter.remove({ model: "b", code: 3 });
    step();
    assert.equal(await fast.registry.metrics(), await plain.registry.metrics());
    assert.match(await fast.registry.metrics(), /t_seconds_bucket\{le="0.001",model="a"\} 4/);
  });

  it("refuse what prom-client refuses, and NaN for a counter", () => {
    const { fast } = pair();
    const c = new CounterChild(fast.counter, { model: "a", code: "OK" });
    const h = new HistogramChild(fast.histogram, { model: "a" });
    c.inc();
    h.observe(1);
    assert.throws(() => c.inc(-1), /decrease/);
    assert.throws(() => c.inc(Number.NaN), /not a valid number/);
    assert.throws(() => h.observe(Number.NaN), /not a valid number/);
    assert.throws(() => new CounterChild(fast.counter, { model: "a", nope: "x" } as never).inc(), /label/i);
  });
});
