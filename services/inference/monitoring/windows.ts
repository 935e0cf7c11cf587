// Live drift windows of one model version: for every column of its reference distributions
// (registry) and for its score, a sliding histogram over the reference's own bins (the bin
// edges lib/drift computed at registration), fed from prediction log records; evaluated
// into PSI, KL, JS, Hellinger, Wasserstein (numeric) or chi-square (categorical).

import type { Distribution, FeatureBinding, ReferenceDistributions } from "../../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { numericBinCount, numericBinIndex } from "../../../lib/drift/reference.js";
import { SlidingHistogram, type Binner } from "../../../lib/drift/histogram.js";
import {
  binnedKlDivergence,
  binnedWassersteinDistance,
  chiSquareContingency,
  hellingerDistance,
  jensenShannonDistance,
  populationStabilityIndex,
} from "../../../lib/drift/metrics.js";
import type { LoggedValueView, MonitoredRecord } from "./log-decoder.js";

export const SCORE_FEATURE = "__score__";

/** Where a reference column's value sits in a logged record's inputs. */
interface ColumnSource {
  /** Keys tried in order: the column itself, then its short name (`view:feature` -> `feature`). */
  readonly keys: readonly string[];
  /** The graph input it is a column of, and its index there (dense inputs are logged as one vector). */
  readonly input: string | undefined;
  readonly index: number;
}

type Observation = number | string | null;

export interface FeatureWindow {
  readonly feature: string;
  readonly categorical: boolean;
  readonly hist: SlidingHistogram<Observation>;
  /** Reference counts aligned with the histogram's bins. */
  readonly referenceCounts: Float64Array;
  /** Numeric bin edges (for Wasserstein); undefined for a categorical column. */
  readonly edges: number[] | undefined;
  readonly source: ColumnSource | undefined;
}

export interface FeatureDriftValues {
  readonly feature: string;
  readonly categorical: boolean;
  readonly windowCount: number;
  readonly psi: number;
  readonly kl: number;
  readonly js: number;
  readonly hellinger: number;
  /** NaN for categorical columns. */
  readonly wasserstein: number;
  /** NaN for numeric columns. */
  readonly chiSquareP: number;
}

function numericBinnerOf(edges: readonly number[]): Binner<Observation> {
  const e = Float64Array.from(edges);
  return {
    bins: numericBinCount(e),
    indexOf: (x) => (typeof x === "number" && Number.isFinite(x) ? numericBinIndex(e, x) : -1),
  };
}

function categoricalBinnerOf(categories: readonly string[]): Binner<Observation> {
  const index = new Map<string, number>();
  categories.forEach((c, i) => index.set(c, i));
  // The last bin holds every value the reference did not list (its "other" count, and new values).
  const other = categories.length;
  return {
    bins: other + 1,
    indexOf: (v) => (v === null ? -1 : typeof v === "string" ? (v === "" ? -1 : (index.get(v) ?? other)) : (index.get(String(v)) ?? other)),
  };
}

/** Column -> where its values are in a record, from the binding (or `input[i]` names). */
function sourcesOf(binding: FeatureBinding | undefined): Map<string, ColumnSource> {
  const out = new Map<string, ColumnSource>();
  for (const b of binding?.inputs ?? []) {
    b.features.forEach((f, i) => {
      const short = f.includes(":") ? f.slice(f.indexOf(":") + 1) : undefined;
      out.set(f, { keys: short ? [f, short] : [f], input: b.features.length > 0 ? b.inputName : undefined, index: i });
    });
  }
  return out;
}

function sourceOf(column: string, bound: Map<string, ColumnSource>): ColumnSource {
  const b = bound.get(column);
  if (b) return b;
  const m = /^(.*)\[(\d+)\]$/.exec(column);
  if (m) return { keys: [column], input: m[1]!, index: Number(m[2]) };
  return { keys: [column], input: column, index: 0 };
}

function windowOf(feature: string, d: Distribution, capacity: number, source: ColumnSource | undefined): FeatureWindow | undefined {
  if (d.kind.case === "numeric") {
    const h = d.kind.value;
    if (h.binEdges.length < 2 || h.binCounts.length !== h.binEdges.length - 1) return undefined;
    return {
      feature,
      categorical: false,
      hist: new SlidingHistogram(numericBinnerOf(h.binEdges), { capacity }),
      referenceCounts: Float64Array.from(h.binCounts, Number),
      edges: [...h.binEdges],
      source,
    };
  }
  if (d.kind.case === "categorical") {
    const c = d.kind.value;
    return {
      feature,
      categorical: true,
      hist: new SlidingHistogram(categoricalBinnerOf(c.values.map((v) => v.value)), { capacity }),
      referenceCounts: Float64Array.from([...c.values.map((v) => Number(v.count)), Number(c.otherCount)]),
      edges: undefined,
      source,
    };
  }
  return undefined;
}

function numberOf(v: LoggedValueView | undefined, index: number, single: boolean): Observation {
  switch (v?.kind.case) {
    case "doubleValue":
    case "floatValue":
      return single || index === 0 ? v.kind.value : null;
    case "int64Value":
      return single || index === 0 ? Number(v.kind.value) : null;
    case "boolValue":
      return single || index === 0 ? (v.kind.value ? 1 : 0) : null;
    case "stringValue":
      return single || index === 0 ? v.kind.value : null;
    case "floatVectorValue":
      return v.kind.value.values[index] ?? null;
    default:
      return null;
  }
}

function observationOf(w: FeatureWindow, inputs: MonitoredRecord["inputs"]): Observation {
  const s = w.source!;
  for (const k of s.keys) {
    const v = inputs[k];
    if (v !== undefined) {
      const x = numberOf(v, 0, true);
      if (w.categorical) return x === null ? null : typeof x === "string" ? x : v.kind.case === "boolValue" ? String(v.kind.value) : String(x);
      return typeof x === "number" ? x : null;
    }
  }
  if (s.input === undefined) return null;
  const v = inputs[s.input];
  if (v === undefined) return null;
  const x = numberOf(v, s.index, false);
  if (w.categorical) return x === null ? null : String(x);
  return typeof x === "number" ? x : null;
}

/** Drift windows of one model version. */
export class VersionWindows {
  readonly features: FeatureWindow[] = [];
  readonly score: FeatureWindow | undefined;
  /** Newest record time seen, ms (window end). */
  lastTimeMs = 0;
  /** Records counted since the last evaluation. */
  dirty = false;

  constructor(
    readonly model: string,
    readonly version: number,
    reference: ReferenceDistributions,
    binding: FeatureBinding | undefined,
    capacity: number,
  ) {
    const bound = sourcesOf(binding);
    for (const f of reference.features) {
      if (!f.distribution) continue;
      const w = windowOf(f.column, f.distribution, capacity, sourceOf(f.column, bound));
      if (w) this.features.push(w);
    }
    this.score = reference.score ? windowOf(SCORE_FEATURE, reference.score, capacity, undefined) : undefined;
  }

  /** Every window, the score last (GetDrift's order). */
  all(): FeatureWindow[] {
    return this.score ? [...this.features, this.score] : this.features;
  }

  /** Counts one logged record. `timeMs` is the record's time (scored at). */
  add(record: MonitoredRecord, timeMs: number): void {
    for (const w of this.features) w.hist.push(observationOf(w, record.inputs), timeMs);
    if (this.score && record.score !== undefined) this.score.hist.push(record.score, timeMs);
    if (timeMs > this.lastTimeMs) this.lastTimeMs = timeMs;
    this.dirty = true;
  }

  /** Drops observations older than the time window. */
  expire(cutoffMs: number): void {
    for (const w of this.all()) if (w.hist.expireBefore(cutoffMs) > 0) this.dirty = true;
  }

  /** Oldest observation time across the windows (window start), or 0 when empty. */
  firstTimeMs(): number {
    let first = 0;
    for (const w of this.all()) {
      const t = w.hist.oldestTime();
      if (t !== undefined && (first === 0 || t < first)) first = t;
    }
    return first;
  }
}

/** Drift statistics of a window against its reference; undefined when the window is empty. */
export function driftOf(w: FeatureWindow): FeatureDriftValues | undefined {
  const n = w.hist.size;
  if (n === 0) return undefined;
  let ref: ArrayLike<number> = w.referenceCounts;
  let cur: ArrayLike<number> = w.hist.counts;
  const last = ref.length - 1;
  if (w.categorical && ref[last] === 0 && cur[last] === 0) {
    // The "other" bin neither side has used is not a category: an epsilon-filled empty bin
    // would shift KL (it renormalises), so the statistics match SciPy's on the categories seen.
    ref = w.referenceCounts.subarray(0, last);
    cur = w.hist.counts.subarray(0, last);
  }
  let refTotal = 0;
  for (let i = 0; i < ref.length; i++) refTotal += ref[i]!;
  if (refTotal <= 0) return undefined;
  let chiSquareP = Number.NaN;
  if (w.categorical) {
    // Homogeneity test on the categories either side has seen (SciPy refuses empty columns).
    const keep: number[] = [];
    for (let i = 0; i < ref.length; i++) if (ref[i]! + cur[i]! > 0) keep.push(i);
    if (keep.length >= 2) chiSquareP = chiSquareContingency([keep.map((i) => ref[i]!), keep.map((i) => cur[i]!)]).pValue;
  }
  return {
    feature: w.feature,
    categorical: w.categorical,
    windowCount: n,
    psi: populationStabilityIndex(ref, cur),
    kl: binnedKlDivergence(ref, cur),
    js: jensenShannonDistance(ref, cur),
    hellinger: hellingerDistance(ref, cur),
    wasserstein: w.edges ? binnedWassersteinDistance(w.edges, ref, cur) : Number.NaN,
    chiSquareP,
  };
}
