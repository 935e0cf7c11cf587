// Reference distributions for drift: quantile bin edges and counts for a numeric feature,
// value counts for a categorical one, as plain JSON-safe objects the registry stores per version.

import { ValidationError } from "../errors.js";

/** Bumped when the stored shape changes; `parseReference` refuses versions it does not know. */
export const REFERENCE_FORMAT_VERSION = 1;

export const DEFAULT_BINS = 10;

/**
 * Numeric reference. `edges` are the reference quantiles at 0, 1/bins, ..., 1 (numpy
 * `np.quantile(x, np.arange(bins + 1) / bins, method="linear")`, Hyndman & Fan type 7),
 * with repeated values removed, so a feature with ties gets fewer, non-empty-width bins.
 * A sample with at most `bins` distinct values instead gets one bin per value: edges are
 * the distinct values followed by the maximum once more. `counts[i]` is the number of
 * reference values in bin i (see `numericBinIndex`).
 */
export interface NumericReference {
  readonly version: number;
  readonly kind: "numeric";
  readonly edges: number[];
  readonly counts: number[];
  /** Values counted (finite ones). */
  readonly n: number;
  /** Values dropped as missing (NaN, ±Infinity). */
  readonly missing: number;
}

/**
 * Categorical reference: one count per category, most frequent first (ties by name), so the
 * stored object is deterministic. Values never seen in the reference fall in an extra
 * "unseen" bin when a window is counted against it.
 */
export interface CategoricalReference {
  readonly version: number;
  readonly kind: "categorical";
  readonly categories: string[];
  readonly counts: number[];
  readonly n: number;
  readonly missing: number;
}

export type Reference = NumericReference | CategoricalReference;

export interface NumericReferenceOptions {
  /** Number of quantile bins before ties are merged; default 10. */
  readonly bins?: number;
}

/**
 * Quantile of an ascending-sorted sample by linear interpolation between order statistics
 * (numpy's default `method="linear"`), with numpy's lerp so edges agree bit for bit.
 */
export function sortedQuantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new ValidationError("values", "cannot take a quantile of an empty sample");
  if (!(q >= 0 && q <= 1)) throw new ValidationError("q", `quantile must be in [0, 1], got ${q}`);
  const virtual = (n - 1) * q;
  if (virtual >= n - 1) return sorted[n - 1] as number;
  const lo = Math.floor(virtual);
  const a = sorted[lo] as number;
  const b = sorted[lo + 1] as number;
  const t = virtual - lo;
  const diff = b - a;
  // numpy computes from the nearer end so the result stays within [a, b] after rounding.
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

/** Quantile edges at i/bins, i = 0..bins, of an ascending-sorted sample, ties removed. */
export function quantileEdges(sorted: ArrayLike<number>, bins: number = DEFAULT_BINS): number[] {
  if (!Number.isInteger(bins) || bins < 1) {
    throw new ValidationError("bins", `must be a positive integer, got ${bins}`);
  }
  const edges: number[] = [];
  for (let i = 0; i <= bins; i++) {
    const e = sortedQuantile(sorted, i / bins);
    if (edges.length === 0 || e !== edges[edges.length - 1]) edges.push(e);
  }
  // A constant sample has one distinct edge; keep [v, v] so there is exactly one bin.
  if (edges.length === 1) edges.push(edges[0] as number);
  return edges;
}

/**
 * Bin of `x` given reference edges: bin i holds [edges[i], edges[i+1]), the last bin also
 * its right edge; values below the first edge count in bin 0 and above the last in the last
 * bin (numpy: `np.searchsorted(edges[1:-1], x, side="right")`). Binary search: O(log bins).
 */
export function numericBinIndex(edges: ArrayLike<number>, x: number): number {
  // Search only the inner edges edges[1..len-2]: result is how many are <= x.
  let lo = 1;
  let hi = edges.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((edges[mid] as number) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** Number of bins a numeric reference defines. */
export function numericBinCount(edges: ArrayLike<number>): number {
  return edges.length - 1;
}

/** Distinct values of an ascending-sorted sample. */
export function distinctSorted(sorted: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const v = sorted[i]!;
    if (out.length === 0 || v !== out[out.length - 1]) out.push(v);
  }
  return out;
}

/** Finite values of `values`, and how many were not. */
export function finiteValues(values: Iterable<number>): { values: number[]; missing: number } {
  const out: number[] = [];
  let missing = 0;
  for (const v of values) {
    if (Number.isFinite(v)) out.push(v);
    else missing++;
  }
  return { values: out, missing };
}

/** Reference for a numeric feature; non-finite values are counted as missing, not binned. */
export function buildNumericReference(
  values: Iterable<number>,
  options: NumericReferenceOptions = {},
): NumericReference {
  const { values: finite, missing } = finiteValues(values);
  if (finite.length === 0) {
    throw new ValidationError("values", "a numeric reference needs at least one finite value");
  }
  const sorted = Float64Array.from(finite).sort();
  const bins = options.bins ?? DEFAULT_BINS;
  const distinct = distinctSorted(sorted);
  // Few distinct values (flags, small counts): quantile edges would merge them, so that a
  // 0/1 feature going from 30% to 90% ones showed no drift. Give each value its own bin
  // instead; repeating the maximum makes it the last, closed bin [max, max].
  const edges = distinct.length <= bins ? [...distinct, distinct[distinct.length - 1]!] : quantileEdges(sorted, bins);
  const counts = new Array<number>(numericBinCount(edges)).fill(0);
  for (const v of sorted) counts[numericBinIndex(edges, v)]!++;
  return { version: REFERENCE_FORMAT_VERSION, kind: "numeric", edges, counts, n: sorted.length, missing };
}

/** Reference for a categorical feature; `null`/`undefined` count as missing. */
export function buildCategoricalReference(values: Iterable<string | null | undefined>): CategoricalReference {
  const tally = new Map<string, number>();
  let missing = 0;
  let n = 0;
  for (const v of values) {
    if (v === null || v === undefined) {
      missing++;
      continue;
    }
    tally.set(v, (tally.get(v) ?? 0) + 1);
    n++;
  }
  if (n === 0) throw new ValidationError("values", "a categorical reference needs at least one value");
  const entries = [...tally].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return {
    version: REFERENCE_FORMAT_VERSION,
    kind: "categorical",
    categories: entries.map((e) => e[0]),
    counts: entries.map((e) => e[1]),
    n,
    missing,
  };
}

/**
 * Validates an object read back from storage (JSON) and returns it typed. Throws a
 * ValidationError naming the bad field, so a corrupt stored reference is reported, not binned.
 */
export function parseReference(raw: unknown, field = "reference"): Reference {
  if (typeof raw !== "object" || raw === null) throw new ValidationError(field, "must be an object");
  const o = raw as Record<string, unknown>;
  if (o.version !== REFERENCE_FORMAT_VERSION) {
    throw new ValidationError(`${field}.version`, `unsupported version ${String(o.version)}`);
  }
  const counts = o.counts;
  if (!Array.isArray(counts) || !counts.every((c) => Number.isInteger(c) && (c as number) >= 0)) {
    throw new ValidationError(`${field}.counts`, "must be an array of non-negative integers");
  }
  const n = o.n;
  const missing = o.missing;
  if (!Number.isInteger(n) || !Number.isInteger(missing) || (missing as number) < 0) {
    throw new ValidationError(`${field}.n`, "n and missing must be non-negative integers");
  }
  const total = (counts as number[]).reduce((s, c) => s + c, 0);
  if (total !== n) throw new ValidationError(`${field}.counts`, `sum ${total} differs from n ${String(n)}`);
  if (o.kind === "numeric") {
    const edges = o.edges;
    if (!Array.isArray(edges) || edges.length < 2 || !edges.every((e) => Number.isFinite(e))) {
      throw new ValidationError(`${field}.edges`, "must be at least two finite numbers");
    }
    for (let i = 1; i < edges.length; i++) {
      // Strictly increasing, except that the last edge may repeat (one bin per value).
      const ok = (edges[i] as number) > (edges[i - 1] as number) || (i === edges.length - 1 && edges[i] === edges[i - 1]);
      if (!ok) throw new ValidationError(`${field}.edges`, "must be strictly increasing (the last may repeat)");
    }
    if (counts.length !== edges.length - 1) {
      throw new ValidationError(`${field}.counts`, `expected ${edges.length - 1} counts, got ${counts.length}`);
    }
    return {
      version: REFERENCE_FORMAT_VERSION,
      kind: "numeric",
      edges: edges as number[],
      counts: counts as number[],
      n: n as number,
      missing: missing as number,
    };
  }
  if (o.kind === "categorical") {
    const categories = o.categories;
    if (!Array.isArray(categories) || !categories.every((c) => typeof c === "string")) {
      throw new ValidationError(`${field}.categories`, "must be an array of strings");
    }
    if (new Set(categories).size !== categories.length) {
      throw new ValidationError(`${field}.categories`, "must not repeat a category");
    }
    if (counts.length !== categories.length) {
      throw new ValidationError(`${field}.counts`, `expected ${categories.length} counts, got ${counts.length}`);
    }
    return {
      version: REFERENCE_FORMAT_VERSION,
      kind: "categorical",
      categories: categories as string[],
      counts: counts as number[],
      n: n as number,
      missing: missing as number,
    };
  }
  throw new ValidationError(`${field}.kind`, `must be "numeric" or "categorical", got ${String(o.kind)}`);
}
