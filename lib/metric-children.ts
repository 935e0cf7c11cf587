// Label-bound metric children for the request path. prom-client's own `labels()` child still
// validates the labels, builds their hash string and looks it up on every inc/observe (≈5 %
// of a mesh Predict's CPU, ~15 calls per request). These children do that once: they keep
// prom-client's own entry for their label set and add to it in place, so /metrics, reset()
// and remove() behave exactly as with prom-client's children. Each operation checks the
// entry is still the one prom-client holds under that hash (reset() swaps the map, remove()
// deletes the key); if not, or if the metric's internals are not what they expect, it goes
// through prom-client's public API, which also does its validation and errors.

import type { Counter, Histogram, LabelValues } from "prom-client";

type Labels = LabelValues<string>;

interface CounterEntry {
  value: number;
  labels: Labels;
}

interface HistogramEntry {
  sum: number;
  count: number;
  bucketValues: Record<number, number>;
  labels: Labels;
}

interface Internals<E> {
  hashMap?: Record<string, E>;
  upperBounds?: number[];
}

function sameLabels(a: Labels, b: Labels): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (String(a[k]) !== String(b[k])) return false;
  return true;
}

/** prom-client's key and entry for `labels`, or undefined. */
function findEntry<E extends { labels: Labels }>(map: Record<string, E> | undefined, labels: Labels): [string, E] | undefined {
  if (!map || typeof map !== "object") return undefined;
  for (const key in map) {
    const e = map[key]!;
    if (e && typeof e === "object" && sameLabels(e.labels ?? {}, labels)) return [key, e];
  }
  return undefined;
}

export class CounterChild {
  private key = "";
  private entry: CounterEntry | undefined;

  constructor(
    private readonly counter: Counter<string>,
    private readonly labels: Labels,
  ) {}

  inc(value = 1): void {
    const map = (this.counter as unknown as Internals<CounterEntry>).hashMap;
    const e = this.entry;
    if (e !== undefined && map !== undefined && map[this.key] === e && value >= 0 && value !== Infinity) {
      e.value += value;
      return;
    }
    // prom-client adds NaN to a counter (and it stays NaN for good): refuse it here.
    if (Number.isNaN(value)) throw new TypeError("Value is not a valid number: NaN");
    this.counter.inc(this.labels, value);
    const found = findEntry((this.counter as unknown as Internals<CounterEntry>).hashMap, this.labels);
    if (found && typeof found[1].value === "number") [this.key, this.entry] = found;
    else this.entry = undefined;
  }
}

export class HistogramChild {
  private key = "";
  private entry: HistogramEntry | undefined;
  /** prom-client's bucket bounds, and the same as property keys (a number key is turned into a string on every access). */
  private bounds: readonly number[] = [];
  private boundKeys: readonly string[] = [];

  constructor(
    private readonly histogram: Histogram<string>,
    private readonly labels: Labels,
  ) {}

  observe(value: number): void {
    const h = this.histogram as unknown as Internals<HistogramEntry>;
    const map = h.hashMap;
    const e = this.entry;
    if (e !== undefined && map !== undefined && map[this.key] === e && h.upperBounds === this.bounds && Number.isFinite(value)) {
      e.sum += value;
      e.count += 1;
      // prom-client counts an observation in the first bucket whose bound holds it (the
      // exposition accumulates); above every bound only count and sum move (+Inf).
      const bounds = this.bounds;
      for (let i = 0; i < bounds.length; i++) {
        if (value <= bounds[i]!) {
          (e.bucketValues as unknown as Record<string, number>)[this.boundKeys[i]!]! += 1;
          break;
        }
      }
      return;
    }
    this.histogram.observe(this.labels, value);
    const found = Array.isArray(h.upperBounds) ? findEntry(h.hashMap, this.labels) : undefined;
    const bucketKeys = h.upperBounds?.map(String) ?? [];
    // Bound only when every bucket is an own key of the entry (what prom-client creates).
    if (found && typeof found[1].sum === "number" && typeof found[1].bucketValues === "object" && bucketKeys.every((k) => Object.prototype.hasOwnProperty.call(found[1].bucketValues, k))) {
      [this.key, this.entry] = found;
      this.bounds = h.upperBounds!;
      this.boundKeys = bucketKeys;
    } else this.entry = undefined;
  }
}

const counterChildren = new WeakMap<Counter<string>, Map<string, CounterChild>>();
const histogramChildren = new WeakMap<Histogram<string>, Map<string, HistogramChild>>();

/** Label values as one key; the label objects of one call site list their names in one order. */
function keyOf(labels: Labels): string {
  let key = "";
  for (const k in labels) key += `${labels[k]}\u0001`;
  return key;
}

/** The counter's child for these labels, made on first use (a metric's label sets are few). */
export function counterChild(counter: Counter<string>, labels: Labels): CounterChild {
  let m = counterChildren.get(counter);
  if (!m) counterChildren.set(counter, (m = new Map()));
  const key = keyOf(labels);
  let c = m.get(key);
  if (!c) m.set(key, (c = new CounterChild(counter, labels)));
  return c;
}

/** The histogram's child for these labels, made on first use. */
export function histogramChild(histogram: Histogram<string>, labels: Labels): HistogramChild {
  let m = histogramChildren.get(histogram);
  if (!m) histogramChildren.set(histogram, (m = new Map()));
  const key = keyOf(labels);
  let c = m.get(key);
  if (!c) m.set(key, (c = new HistogramChild(histogram, labels)));
  return c;
}
