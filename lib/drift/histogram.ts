// Counting a current window into a reference's bins: one-shot counts for a batch, and a
// sliding window that adds and evicts observations in O(log bins) without allocating.

import { ValidationError } from "../errors.js";
import {
  numericBinCount,
  numericBinIndex,
  type CategoricalReference,
  type NumericReference,
  type Reference,
} from "./reference.js";

/** Maps a value to its bin in [0, bins), or -1 when the value is missing (not counted). */
export interface Binner<T> {
  readonly bins: number;
  indexOf(value: T): number;
}

/** Numeric binner: non-finite values are missing; out-of-range values go to the outer bins. */
export function numericBinner(ref: NumericReference): Binner<number> {
  const edges = Float64Array.from(ref.edges);
  return {
    bins: numericBinCount(edges),
    indexOf: (x) => (Number.isFinite(x) ? numericBinIndex(edges, x) : -1),
  };
}

/**
 * Categorical binner: one bin per reference category in reference order, plus a last
 * "unseen" bin for values the reference never had. `null`/`undefined` are missing.
 */
export function categoricalBinner(ref: CategoricalReference): Binner<string | null | undefined> {
  const index = new Map<string, number>();
  ref.categories.forEach((c, i) => index.set(c, i));
  const unseen = ref.categories.length;
  return {
    bins: unseen + 1,
    indexOf: (v) => (v === null || v === undefined ? -1 : (index.get(v) ?? unseen)),
  };
}

/**
 * Reference counts aligned with its binner's bins: numeric counts as stored; categorical
 * counts with a trailing 0 for the "unseen" bin.
 */
export function referenceCounts(ref: Reference): number[] {
  return ref.kind === "numeric" ? [...ref.counts] : [...ref.counts, 0];
}

export interface WindowCounts {
  readonly counts: number[];
  /** Values counted. */
  readonly n: number;
  /** Values skipped as missing. */
  readonly missing: number;
}

/** Counts `values` into the binner's bins. */
export function countWindow<T>(binner: Binner<T>, values: Iterable<T>): WindowCounts {
  const counts = new Array<number>(binner.bins).fill(0);
  let n = 0;
  let missing = 0;
  for (const v of values) {
    const i = binner.indexOf(v);
    if (i < 0) {
      missing++;
      continue;
    }
    counts[i]!++;
    n++;
  }
  return { counts, n, missing };
}

/** Counts a numeric window into a numeric reference's bins. */
export function countNumeric(ref: NumericReference, values: Iterable<number>): WindowCounts {
  return countWindow(numericBinner(ref), values);
}

/** Counts a categorical window into a categorical reference's bins (last bin: unseen). */
export function countCategorical(
  ref: CategoricalReference,
  values: Iterable<string | null | undefined>,
): WindowCounts {
  return countWindow(categoricalBinner(ref), values);
}

export interface SlidingHistogramOptions {
  /** Most observations the window holds; pushing into a full window evicts the oldest. */
  readonly capacity: number;
}

/**
 * A sliding window of observations kept as bin counts. Each observation's bin and time are
 * stored in preallocated ring buffers, so `push`, `evictOldest` and `expireBefore` allocate
 * nothing and cost O(log bins) (the binary search) per observation. Count-based windows use
 * `capacity`; time-based ones also call `expireBefore(now - width)`.
 */
export class SlidingHistogram<T> {
  readonly capacity: number;
  readonly bins: number;
  /** Current counts per bin; a live view, valid until the next mutation. */
  readonly counts: Float64Array;
  private readonly binOf: Int32Array;
  private readonly timeOf: Float64Array;
  private head = 0; // index of the oldest observation
  private length = 0;
  private skipped = 0;

  constructor(
    private readonly binner: Binner<T>,
    options: SlidingHistogramOptions,
  ) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1) {
      throw new ValidationError("capacity", `must be a positive integer, got ${options.capacity}`);
    }
    this.capacity = options.capacity;
    this.bins = binner.bins;
    this.counts = new Float64Array(binner.bins);
    this.binOf = new Int32Array(options.capacity);
    this.timeOf = new Float64Array(options.capacity);
  }

  /** Observations in the window. */
  get size(): number {
    return this.length;
  }

  /** Missing values offered to `push` since creation (never in the window). */
  get missing(): number {
    return this.skipped;
  }

  /**
   * Adds an observation seen at time `at` (any monotone clock; 0 when unused). Returns false,
   * and counts it as missing, when the value has no bin.
   */
  push(value: T, at = 0): boolean {
    const bin = this.binner.indexOf(value);
    if (bin < 0) {
      this.skipped++;
      return false;
    }
    if (this.length === this.capacity) this.evictOldest();
    const slot = (this.head + this.length) % this.capacity;
    this.binOf[slot] = bin;
    this.timeOf[slot] = at;
    this.counts[bin]!++;
    this.length++;
    return true;
  }

  /** Removes the oldest observation; false when the window is empty. */
  evictOldest(): boolean {
    if (this.length === 0) return false;
    this.counts[this.binOf[this.head]!]!--;
    this.head = (this.head + 1) % this.capacity;
    this.length--;
    return true;
  }

  /** Removes observations with time < cutoff (times are assumed pushed in order); returns how many. */
  expireBefore(cutoff: number): number {
    let removed = 0;
    while (this.length > 0 && this.timeOf[this.head]! < cutoff) {
      this.evictOldest();
      removed++;
    }
    return removed;
  }

  /** Time of the oldest observation in the window, or undefined when it is empty. */
  oldestTime(): number | undefined {
    return this.length === 0 ? undefined : this.timeOf[this.head];
  }

  /** Empties the window. */
  clear(): void {
    this.counts.fill(0);
    this.head = 0;
    this.length = 0;
  }

  /** A copy of the counts as a plain array (for export or serialisation). */
  snapshot(): number[] {
    return Array.from(this.counts);
  }
}
