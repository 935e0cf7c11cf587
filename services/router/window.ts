// Per-version observations of the current rollout interval (latency, errors, scores) and
// the statistics the gates need: P99, error rate and the PSI between canary and production
// score distributions on 10 quantile bins of production's scores (lib/drift's PSI).

import { populationStabilityIndex } from "../../lib/drift/metrics.js";

/** Keeps at most this many latencies/scores per version and interval (a uniform reservoir beyond). */
const RESERVOIR = 20_000;

export class VersionWindow {
  requests = 0;
  errors = 0;
  readonly latenciesMs: number[] = [];
  readonly scores: number[] = [];
  private seen = 0;

  /**
   * Counts and samples another replica observed in this interval. Its samples go in as if
   * recorded here (through the same reservoir), its counts are added exactly.
   */
  absorb(requests: number, errors: number, latenciesMs: readonly number[], scores: readonly number[]): void {
    // Latencies and scores are separate samples (failed requests have no score).
    for (const l of latenciesMs) this.record(l, false, undefined);
    for (const x of scores) {
      if (this.scores.length < RESERVOIR) this.scores.push(x);
      else this.scores[Math.floor(Math.random() * RESERVOIR)] = x;
    }
    // record() counted the samples as requests without errors; the report's counts are exact.
    this.requests += requests - latenciesMs.length;
    this.errors += errors;
  }

  record(latencyMs: number, error: boolean, score: number | undefined): void {
    this.requests++;
    if (error) this.errors++;
    this.seen++;
    if (this.latenciesMs.length < RESERVOIR) {
      this.latenciesMs.push(latencyMs);
      if (score !== undefined) this.scores.push(score);
    } else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < RESERVOIR) {
        this.latenciesMs[j] = latencyMs;
        if (score !== undefined && j < this.scores.length) this.scores[j] = score;
      }
    }
  }
}

/** Nearest-rank quantile (q in [0, 1]) of unsorted values; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * s.length));
  return s[rank - 1]!;
}

/** Edges of `bins` quantile bins of `reference` (inner edges only, deduplicated). */
export function quantileEdges(reference: readonly number[], bins = 10): number[] {
  const s = [...reference].sort((a, b) => a - b);
  const edges: number[] = [];
  for (let i = 1; i < bins; i++) {
    const e = s[Math.min(s.length - 1, Math.floor((i * s.length) / bins))]!;
    if (edges.length === 0 || e > edges[edges.length - 1]!) edges.push(e);
  }
  return edges;
}

function binCounts(values: readonly number[], edges: readonly number[]): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0);
  for (const v of values) {
    let lo = 0;
    let hi = edges.length;
    // First edge > v: bins are (-inf, e0), [e0, e1), ...
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (edges[mid]! <= v) lo = mid + 1;
      else hi = mid;
    }
    counts[lo]!++;
  }
  return counts;
}

/** PSI of `current` against `reference` on 10 quantile bins of the reference. NaN when either is empty. */
export function scorePsi(reference: readonly number[], current: readonly number[]): number {
  if (reference.length === 0 || current.length === 0) return Number.NaN;
  const edges = quantileEdges(reference, 10);
  return populationStabilityIndex(binCounts(reference, edges), binCounts(current, edges));
}

/** Observations of one rollout's interval, by role. */
export class RolloutWindow {
  canary = new VersionWindow();
  production = new VersionWindow();
  reset(): void {
    this.canary = new VersionWindow();
    this.production = new VersionWindow();
  }
}
