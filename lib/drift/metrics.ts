// Drift statistics between a reference and a current distribution: PSI, Kullback–Leibler,
// Jensen–Shannon, Hellinger, Wasserstein-1 and chi-square, each matching SciPy's definition.

import { ValidationError } from "../errors.js";
import type { Reference } from "./reference.js";

/**
 * Share given to an empty bin before PSI and KL take logarithms, as Evidently does
 * (`evidently/calculations/stattests/utils.py`, `get_binned_data(..., feel_zeroes=True)`):
 * a zero share becomes 1e-4, or, when the smallest non-zero share is already <= 1e-4,
 * that share / 1e6, so an empty bin always weighs less than any observed one. Shares are
 * not renormalised afterwards (PSI); KL renormalises because scipy.stats.entropy does.
 */
export const EMPTY_BIN_SHARE = 1e-4;

function checkSameLength(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length) {
    throw new ValidationError(what, `distributions have ${a.length} and ${b.length} bins; they must match`);
  }
  if (a.length === 0) throw new ValidationError(what, "distributions have no bins");
}

function total(xs: ArrayLike<number>, what: string): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    if (!(x >= 0) || !Number.isFinite(x)) {
      throw new ValidationError(what, `counts must be finite and non-negative, got ${x} at ${i}`);
    }
    s += x;
  }
  if (s <= 0) throw new ValidationError(what, "counts sum to zero; the window is empty");
  return s;
}

/** Counts divided by their total. */
export function shares(counts: ArrayLike<number>): number[] {
  const s = total(counts, "counts");
  return Array.from(counts, (c) => c / s);
}

/** Replaces zero shares by Evidently's small share (see EMPTY_BIN_SHARE). */
export function fillEmptyShares(p: ArrayLike<number>): number[] {
  let minNonZero = Infinity;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0 && p[i]! < minNonZero) minNonZero = p[i]!;
  const fill = minNonZero <= EMPTY_BIN_SHARE ? minNonZero / 1e6 : EMPTY_BIN_SHARE;
  return Array.from(p, (x) => (x === 0 ? fill : x));
}

/**
 * Population Stability Index over aligned bins (reference quantile bins, or categories):
 * sum of (r - c) * ln(r / c) over shares r (reference) and c (current), empty bins filled
 * with EMPTY_BIN_SHARE. Symmetric; rule of thumb: < 0.1 stable, 0.1–0.2 moderate, >= 0.2 shift.
 */
export function populationStabilityIndex(referenceCounts: ArrayLike<number>, currentCounts: ArrayLike<number>): number {
  checkSameLength(referenceCounts, currentCounts, "psi");
  const r = fillEmptyShares(shares(referenceCounts));
  const c = fillEmptyShares(shares(currentCounts));
  let psi = 0;
  for (let i = 0; i < r.length; i++) psi += (r[i]! - c[i]!) * Math.log(r[i]! / c[i]!);
  return psi;
}

/** x * ln(x / y) with SciPy's rel_entr conventions (0 when x = 0, Infinity when y = 0 < x). */
function relEntr(x: number, y: number): number {
  if (x > 0 && y > 0) return x * Math.log(x / y);
  if (x === 0 && y >= 0) return 0;
  return Infinity;
}

/**
 * Kullback–Leibler divergence D(p || q) in nats, as scipy.stats.entropy(p, q): both are
 * normalised to sum 1 first; Infinity when q has an empty bin p does not.
 */
export function klDivergence(p: ArrayLike<number>, q: ArrayLike<number>): number {
  checkSameLength(p, q, "kl");
  const sp = total(p, "kl.p");
  const sq = total(q, "kl.q");
  let s = 0;
  for (let i = 0; i < p.length; i++) s += relEntr(p[i]! / sp, q[i]! / sq);
  return s;
}

/**
 * KL divergence D(reference || current) between binned counts, empty bins filled as for PSI
 * (Evidently's `kl_div`), so it stays finite when the current window leaves a bin empty.
 */
export function binnedKlDivergence(referenceCounts: ArrayLike<number>, currentCounts: ArrayLike<number>): number {
  checkSameLength(referenceCounts, currentCounts, "kl");
  return klDivergence(fillEmptyShares(shares(referenceCounts)), fillEmptyShares(shares(currentCounts)));
}

/**
 * Jensen–Shannon distance with base-2 logarithms, in [0, 1], as
 * scipy.spatial.distance.jensenshannon(p, q, base=2): the square root of the divergence.
 * Inputs are normalised; empty bins need no epsilon.
 */
export function jensenShannonDistance(p: ArrayLike<number>, q: ArrayLike<number>): number {
  checkSameLength(p, q, "js");
  const sp = total(p, "js.p");
  const sq = total(q, "js.q");
  let left = 0;
  let right = 0;
  for (let i = 0; i < p.length; i++) {
    const a = p[i]! / sp;
    const b = q[i]! / sq;
    const m = (a + b) / 2;
    left += relEntr(a, m);
    right += relEntr(b, m);
  }
  const js = (left + right) / Math.LN2;
  return Math.sqrt(Math.max(0, js / 2));
}

/**
 * Hellinger distance in [0, 1] between normalised distributions:
 * sqrt(sum((sqrt(p_i) - sqrt(q_i))^2) / 2). This form, rather than sqrt(1 - sum sqrt(p q)),
 * keeps full precision for nearly equal distributions.
 */
export function hellingerDistance(p: ArrayLike<number>, q: ArrayLike<number>): number {
  checkSameLength(p, q, "hellinger");
  const sp = total(p, "hellinger.p");
  const sq = total(q, "hellinger.q");
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    const d = Math.sqrt(p[i]! / sp) - Math.sqrt(q[i]! / sq);
    s += d * d;
  }
  return Math.sqrt(s / 2);
}

function sortedOrder(values: ArrayLike<number>): Int32Array {
  const order = new Int32Array(values.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  return order.sort((a, b) => values[a]! - values[b]!);
}

/**
 * Wasserstein-1 (earth mover's) distance between two samples, optionally weighted, as
 * scipy.stats.wasserstein_distance(u, v, u_weights, v_weights): the integral of
 * |F_u - F_v| over the merged sorted support.
 */
export function wassersteinDistance(
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  uWeights?: ArrayLike<number>,
  vWeights?: ArrayLike<number>,
): number {
  if (u.length === 0 || v.length === 0) {
    throw new ValidationError("wasserstein", "both samples need at least one value");
  }
  for (const [xs, name] of [[u, "u"], [v, "v"]] as const) {
    for (let i = 0; i < xs.length; i++) {
      if (!Number.isFinite(xs[i]!)) throw new ValidationError(`wasserstein.${name}`, `value ${xs[i]} at ${i} is not finite`);
    }
  }
  if (uWeights !== undefined && uWeights.length !== u.length) throw new ValidationError("wasserstein.uWeights", "length differs from u");
  if (vWeights !== undefined && vWeights.length !== v.length) throw new ValidationError("wasserstein.vWeights", "length differs from v");
  const uo = sortedOrder(u);
  const vo = sortedOrder(v);
  const uTotal = uWeights === undefined ? u.length : total(uWeights, "wasserstein.uWeights");
  const vTotal = vWeights === undefined ? v.length : total(vWeights, "wasserstein.vWeights");
  const uw = (k: number): number => (uWeights === undefined ? 1 : uWeights[uo[k]!]!);
  const vw = (k: number): number => (vWeights === undefined ? 1 : vWeights[vo[k]!]!);
  // Walk the merged support; between consecutive points x and next both CDFs are flat.
  let i = 0;
  let j = 0;
  let cu = 0;
  let cv = 0;
  let distance = 0;
  let x = Math.min(u[uo[0]!]!, v[vo[0]!]!);
  while (i < u.length || j < v.length) {
    while (i < u.length && u[uo[i]!]! <= x) cu += uw(i++);
    while (j < v.length && v[vo[j]!]! <= x) cv += vw(j++);
    const nu = i < u.length ? u[uo[i]!]! : Infinity;
    const nv = j < v.length ? v[vo[j]!]! : Infinity;
    const next = Math.min(nu, nv);
    if (next === Infinity) break;
    distance += Math.abs(cu / uTotal - cv / vTotal) * (next - x);
    x = next;
  }
  return distance;
}

/** Midpoint of each bin given its edges (a constant reference's single bin: its value). */
export function binMidpoints(edges: ArrayLike<number>): number[] {
  const mids: number[] = [];
  for (let i = 0; i + 1 < edges.length; i++) mids.push((edges[i]! + edges[i + 1]!) / 2);
  return mids;
}

/**
 * Wasserstein-1 from binned counts, each bin's mass placed at its midpoint
 * (scipy.stats.wasserstein_distance(mids, mids, referenceCounts, currentCounts)). An
 * approximation of the sample distance, error at most about one bin width; used for live
 * windows where only counts are kept.
 */
export function binnedWassersteinDistance(
  edges: ArrayLike<number>,
  referenceCounts: ArrayLike<number>,
  currentCounts: ArrayLike<number>,
): number {
  const mids = binMidpoints(edges);
  checkSameLength(referenceCounts, currentCounts, "wasserstein");
  if (mids.length !== referenceCounts.length) {
    throw new ValidationError("wasserstein", `${edges.length} edges define ${mids.length} bins, got ${referenceCounts.length} counts`);
  }
  return wassersteinDistance(mids, mids, referenceCounts, currentCounts);
}

export interface ChiSquareResult {
  readonly statistic: number;
  readonly pValue: number;
  readonly dof: number;
}

/**
 * Pearson's goodness-of-fit test, as scipy.stats.chisquare(observed, expected): expected
 * defaults to uniform; both must have the same total (relative 1e-8, as SciPy checks).
 */
export function chiSquareGoodnessOfFit(observed: ArrayLike<number>, expected?: ArrayLike<number>): ChiSquareResult {
  const k = observed.length;
  if (k === 0) throw new ValidationError("observed", "needs at least one category");
  const so = total(observed, "observed");
  const exp = expected === undefined ? new Array<number>(k).fill(so / k) : Array.from(expected);
  if (exp.length !== k) throw new ValidationError("expected", `has ${exp.length} categories, observed has ${k}`);
  const se = total(exp, "expected");
  if (Math.abs(so - se) / Math.min(so, se) > 1e-8) {
    throw new ValidationError("expected", `sums to ${se} but observed sums to ${so}; scale it to the same total`);
  }
  let stat = 0;
  for (let i = 0; i < k; i++) {
    const d = observed[i]! - exp[i]!;
    stat += (d * d) / exp[i]!;
  }
  const dof = k - 1;
  return { statistic: stat, pValue: dof > 0 ? chiSquareSurvival(stat, dof) : NaN, dof };
}

export interface ContingencyResult extends ChiSquareResult {
  readonly expected: number[][];
}

/**
 * Chi-square test of independence of a contingency table, as
 * scipy.stats.chi2_contingency(table, correction): with one degree of freedom and
 * `correction` (SciPy's default) Yates' continuity correction is applied; with none, the
 * statistic is 0 and p is 1. Rows or columns summing to zero are an error, as in SciPy.
 */
export function chiSquareContingency(
  table: readonly (readonly number[])[],
  options: { correction?: boolean } = {},
): ContingencyResult {
  const rows = table.length;
  const cols = table[0]?.length ?? 0;
  if (rows === 0 || cols === 0) throw new ValidationError("table", "must have at least one row and column");
  if (table.some((r) => r.length !== cols)) throw new ValidationError("table", "rows must have the same length");
  const rowSums = table.map((r, i) => total(r, `table[${i}]`));
  const colSums = new Array<number>(cols).fill(0);
  for (const r of table) r.forEach((x, j) => (colSums[j]! += x));
  const grand = rowSums.reduce((a, b) => a + b, 0);
  const expected = rowSums.map((rs) => colSums.map((cs) => (rs * cs) / grand));
  expected.forEach((r, i) =>
    r.forEach((e, j) => {
      if (e === 0) throw new ValidationError("table", `expected frequency at [${i}][${j}] is zero; drop empty rows and columns`);
    }),
  );
  const dof = rows * cols - rows - cols + 1;
  if (dof === 0) return { statistic: 0, pValue: 1, dof, expected };
  const yates = dof === 1 && (options.correction ?? true);
  let stat = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const e = expected[i]![j]!;
      let o = table[i]![j]!;
      if (yates) {
        const diff = e - o;
        o += Math.sign(diff) * Math.min(0.5, Math.abs(diff));
      }
      stat += ((o - e) * (o - e)) / e;
    }
  }
  return { statistic: stat, pValue: chiSquareSurvival(stat, dof), dof, expected };
}

/**
 * Reference and current counts over the union of their categories (reference order first,
 * then categories only the current window has), ready for PSI or a contingency table.
 */
export function alignCategoryCounts(
  reference: ReadonlyMap<string, number>,
  current: ReadonlyMap<string, number>,
): { categories: string[]; reference: number[]; current: number[] } {
  const categories = [...reference.keys()];
  for (const k of current.keys()) if (!reference.has(k)) categories.push(k);
  return {
    categories,
    reference: categories.map((c) => reference.get(c) ?? 0),
    current: categories.map((c) => current.get(c) ?? 0),
  };
}

/** Category -> count. */
export function valueCounts(values: Iterable<string>): Map<string, number> {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}

/** PSI between two categorical samples' counts (categories aligned, empty filled). */
export function categoricalPsi(reference: ReadonlyMap<string, number>, current: ReadonlyMap<string, number>): number {
  const a = alignCategoryCounts(reference, current);
  return populationStabilityIndex(a.reference, a.current);
}

/**
 * Chi-square homogeneity test of two categorical samples: chi2_contingency on the 2 x k
 * table [reference; current] over the union of categories. Unlike a goodness-of-fit test
 * against reference shares, a category new in the current window does not give an infinite
 * statistic.
 */
export function categoricalChiSquare(
  reference: ReadonlyMap<string, number>,
  current: ReadonlyMap<string, number>,
): ContingencyResult {
  const a = alignCategoryCounts(reference, current);
  return chiSquareContingency([a.reference, a.current]);
}

// ---- chi-square survival function via the regularized incomplete gamma function ----

const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error ~1e-15). */
export function logGamma(x: number): number {
  if (!(x > 0)) throw new ValidationError("x", `logGamma needs x > 0, got ${x}`);
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0]!;
  const t = z + LANCZOS_G + 0.5;
  for (let i = 1; i < LANCZOS.length; i++) a += LANCZOS[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

const GAMMA_EPS = 1e-16;
const GAMMA_MAX_ITER = 100_000;
const TINY = 1e-300;

/** e^-x x^a / Γ(a), the common factor of both expansions, computed in logs. */
function gammaPrefactor(a: number, x: number): number {
  return Math.exp(-x + a * Math.log(x) - logGamma(a));
}

/** P(a, x) by its power series; converges quickly for x < a + 1. */
function gammaPSeries(a: number, x: number): number {
  let ap = a;
  let term = 1 / a;
  let sum = term;
  for (let n = 0; n < GAMMA_MAX_ITER; n++) {
    ap += 1;
    term *= x / ap;
    sum += term;
    if (Math.abs(term) < Math.abs(sum) * GAMMA_EPS) break;
  }
  return sum * gammaPrefactor(a, x);
}

/** Q(a, x) by its continued fraction (modified Lentz); converges quickly for x >= a + 1. */
function gammaQContinuedFraction(a: number, x: number): number {
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < GAMMA_MAX_ITER; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < GAMMA_EPS) break;
  }
  return h * gammaPrefactor(a, x);
}

/** Regularized lower incomplete gamma P(a, x) = γ(a, x) / Γ(a). */
export function regularizedGammaP(a: number, x: number): number {
  if (!(a > 0)) throw new ValidationError("a", `must be > 0, got ${a}`);
  if (!(x >= 0)) throw new ValidationError("x", `must be >= 0, got ${x}`);
  if (x === 0) return 0;
  if (x === Infinity) return 1;
  return x < a + 1 ? gammaPSeries(a, x) : 1 - gammaQContinuedFraction(a, x);
}

/** Regularized upper incomplete gamma Q(a, x) = 1 - P(a, x), accurate in the far tail. */
export function regularizedGammaQ(a: number, x: number): number {
  if (!(a > 0)) throw new ValidationError("a", `must be > 0, got ${a}`);
  if (!(x >= 0)) throw new ValidationError("x", `must be >= 0, got ${x}`);
  if (x === 0) return 1;
  if (x === Infinity) return 0;
  return x < a + 1 ? 1 - gammaPSeries(a, x) : gammaQContinuedFraction(a, x);
}

/** Survival function of the chi-square distribution, P(X > x) for `dof` degrees of freedom (scipy.stats.chi2.sf). */
export function chiSquareSurvival(x: number, dof: number): number {
  if (!(dof > 0)) throw new ValidationError("dof", `must be > 0, got ${dof}`);
  if (Number.isNaN(x)) return NaN;
  if (x <= 0) return 1;
  return regularizedGammaQ(dof / 2, x / 2);
}

// ---- all metrics of one live window against a stored reference ----

export interface WindowDrift {
  readonly psi: number;
  readonly kl: number;
  readonly js: number;
  readonly hellinger: number;
  /** Binned Wasserstein-1 (bin midpoints) for numeric references; null for categorical. */
  readonly wasserstein: number | null;
}

/**
 * The drift gauges of a window counted against a reference with its binner (histogram.ts):
 * `currentCounts` has the binner's layout, so a categorical reference's counts get the
 * trailing "unseen" bin here.
 */
export function windowDrift(reference: Reference, currentCounts: ArrayLike<number>): WindowDrift {
  const ref = reference.kind === "numeric" ? reference.counts : [...reference.counts, 0];
  return {
    psi: populationStabilityIndex(ref, currentCounts),
    kl: binnedKlDivergence(ref, currentCounts),
    js: jensenShannonDistance(ref, currentCounts),
    hellinger: hellingerDistance(ref, currentCounts),
    wasserstein: reference.kind === "numeric" ? binnedWassersteinDistance(reference.edges, ref, currentCounts) : null,
  };
}
