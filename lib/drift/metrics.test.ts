// Drift statistics against fixtures computed by SciPy (fixtures/make_fixtures.py): every
// value must agree to 1e-6, p-values and the chi-square survival function to 1e-10.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { countCategorical, countNumeric, referenceCounts } from "./histogram.js";
import {
  binnedKlDivergence,
  binnedWassersteinDistance,
  categoricalChiSquare,
  categoricalPsi,
  chiSquareContingency,
  chiSquareGoodnessOfFit,
  chiSquareSurvival,
  fillEmptyShares,
  hellingerDistance,
  jensenShannonDistance,
  klDivergence,
  logGamma,
  populationStabilityIndex,
  regularizedGammaP,
  regularizedGammaQ,
  valueCounts,
  wassersteinDistance,
  windowDrift,
} from "./metrics.js";
import { buildCategoricalReference, buildNumericReference } from "./reference.js";

const load = (name: string): unknown => JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8"));

interface Expected {
  referenceCounts: number[];
  currentCounts: number[];
  psi: number;
  kl: number;
  js: number;
  hellinger: number;
  wasserstein?: number;
  wassersteinBinned?: number;
  edges?: number[];
  categories?: string[];
  chi2Contingency?: { statistic: number; pValue: number; dof: number };
  chiSquareGoodnessOfFit?: { statistic: number; pValue: number; dof: number };
}
interface Case {
  name: string;
  kind: "numeric" | "categorical";
  reference: (number | string | null)[];
  current: (number | string | null)[];
  expected: Expected;
}
const drift = load("drift.json") as {
  cases: Case[];
  direct: {
    p: number[];
    q: number[];
    kl: number;
    klReverseIsInfinite: boolean;
    js: number;
    hellinger: number;
    wasserstein: { u: number[]; v: number[]; uWeights: number[]; vWeights: number[]; unweighted: number; weighted: number };
    contingency2x2: { table: number[][]; corrected: [number, number]; uncorrected: [number, number] };
    goodnessOfFitUniform: [number, number];
  };
};
const chi2 = load("chi2.json") as { sf: [number, number, number][] };

const TOL = 1e-6;
function near(actual: number, expected: number, what: string, tol = TOL): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: got ${actual}, SciPy ${expected} (|diff| ${Math.abs(actual - expected)})`);
}
const num = (xs: (number | string | null)[]) => xs.map((x) => (x === null ? NaN : (x as number)));

for (const c of drift.cases.filter((k) => k.kind === "numeric")) {
  test(`numeric ${c.name}: PSI, KL, JS, Hellinger, Wasserstein match SciPy`, () => {
    const ref = buildNumericReference(num(c.reference));
    const cur = countNumeric(ref, num(c.current)).counts;
    const e = c.expected;
    near(populationStabilityIndex(ref.counts, cur), e.psi, "psi");
    near(binnedKlDivergence(ref.counts, cur), e.kl, "kl");
    near(jensenShannonDistance(ref.counts, cur), e.js, "js");
    near(hellingerDistance(ref.counts, cur), e.hellinger, "hellinger");
    const finite = (xs: (number | string | null)[]) => num(xs).filter(Number.isFinite);
    near(wassersteinDistance(finite(c.reference), finite(c.current)), e.wasserstein!, "wasserstein");
    near(binnedWassersteinDistance(ref.edges, ref.counts, cur), e.wassersteinBinned!, "wasserstein binned");
    const live = windowDrift(ref, cur);
    near(live.psi, e.psi, "window psi");
    near(live.kl, e.kl, "window kl");
    near(live.js, e.js, "window js");
    near(live.hellinger, e.hellinger, "window hellinger");
    near(live.wasserstein!, e.wassersteinBinned!, "window wasserstein");
  });
}

for (const c of drift.cases.filter((k) => k.kind === "categorical")) {
  test(`categorical ${c.name}: PSI, KL, JS, Hellinger, chi-square match SciPy`, () => {
    const r = valueCounts(c.reference as string[]);
    const k = valueCounts(c.current as string[]);
    const e = c.expected;
    near(categoricalPsi(r, k), e.psi, "psi");
    // The stored-reference path (reference object + unseen bin) gives the same PSI when
    // at most one category is new, since all new categories share the unseen bin.
    const ref = buildCategoricalReference(c.reference as string[]);
    const w = countCategorical(ref, c.current as string[]);
    const newCategories = new Set((c.current as string[]).filter((v) => !r.has(v))).size;
    if (newCategories <= 1) {
      near(populationStabilityIndex(referenceCounts(ref), w.counts), e.psi, "psi via reference");
      const live = windowDrift(ref, w.counts);
      near(live.js, e.js, "window js");
      assert.equal(live.wasserstein, null);
    }
    const aligned = e.categories!.map((cat) => [r.get(cat) ?? 0, k.get(cat) ?? 0] as const);
    const rc = aligned.map((a) => a[0]);
    const cc = aligned.map((a) => a[1]);
    assert.deepEqual(rc, e.referenceCounts);
    assert.deepEqual(cc, e.currentCounts);
    near(binnedKlDivergence(rc, cc), e.kl, "kl");
    near(jensenShannonDistance(rc, cc), e.js, "js");
    near(hellingerDistance(rc, cc), e.hellinger, "hellinger");
    const chi = categoricalChiSquare(r, k);
    near(chi.statistic, e.chi2Contingency!.statistic, "chi2 statistic");
    near(chi.pValue, e.chi2Contingency!.pValue, "chi2 p", 1e-10);
    assert.equal(chi.dof, e.chi2Contingency!.dof);
    if (e.chiSquareGoodnessOfFit) {
      const total = cc.reduce((a, b) => a + b, 0);
      const refTotal = rc.reduce((a, b) => a + b, 0);
      const gof = chiSquareGoodnessOfFit(cc, rc.map((x) => (x / refTotal) * total));
      near(gof.statistic, e.chiSquareGoodnessOfFit.statistic, "chisquare statistic");
      near(gof.pValue, e.chiSquareGoodnessOfFit.pValue, "chisquare p", 1e-10);
    }
  });
}

test("direct vectors: KL, JS, Hellinger, Wasserstein, chi-square match SciPy", () => {
  const d = drift.direct;
  near(klDivergence(d.p, d.q), d.kl, "kl");
  assert.equal(d.klReverseIsInfinite, true);
  assert.equal(klDivergence(d.q, d.p), Infinity, "KL is infinite where q has mass p lacks");
  near(jensenShannonDistance(d.p, d.q), d.js, "js");
  near(hellingerDistance(d.p, d.q), d.hellinger, "hellinger");
  const w = d.wasserstein;
  near(wassersteinDistance(w.u, w.v), w.unweighted, "wasserstein");
  near(wassersteinDistance(w.u, w.v, w.uWeights, w.vWeights), w.weighted, "weighted wasserstein");
  const corrected = chiSquareContingency(d.contingency2x2.table);
  near(corrected.statistic, d.contingency2x2.corrected[0], "yates statistic");
  near(corrected.pValue, d.contingency2x2.corrected[1], "yates p", 1e-10);
  const plain = chiSquareContingency(d.contingency2x2.table, { correction: false });
  near(plain.statistic, d.contingency2x2.uncorrected[0], "statistic");
  near(plain.pValue, d.contingency2x2.uncorrected[1], "p", 1e-10);
  const gof = chiSquareGoodnessOfFit([16, 18, 16, 14, 12, 12]);
  near(gof.statistic, d.goodnessOfFitUniform[0], "gof statistic");
  near(gof.pValue, d.goodnessOfFitUniform[1], "gof p", 1e-10);
});

test("chi-square survival function matches scipy.stats.chi2.sf to 1e-10", () => {
  let worst = 0;
  for (const [x, dof, want] of chi2.sf) {
    const got = chiSquareSurvival(x, dof);
    const diff = Math.abs(got - want);
    worst = Math.max(worst, diff);
    assert.ok(diff <= 1e-10, `sf(${x}, ${dof}) = ${got}, SciPy ${want}`);
    if (want > 1e-300) assert.ok(diff / want <= 1e-8, `relative error at sf(${x}, ${dof}): ${diff / want}`);
  }
  assert.ok(worst <= 1e-10);
});

test("incomplete gamma identities and edge cases", () => {
  near(logGamma(0.5), Math.log(Math.sqrt(Math.PI)), "lnΓ(1/2)", 1e-14);
  near(logGamma(10), Math.log(362880), "lnΓ(10)", 1e-12);
  near(logGamma(0.1), 2.252712651734206, "lnΓ(0.1)", 1e-13);
  for (const [a, x] of [[0.5, 0.3], [3, 2], [10, 15], [50, 40]] as const) {
    near(regularizedGammaP(a, x) + regularizedGammaQ(a, x), 1, `P+Q a=${a} x=${x}`, 1e-14);
  }
  near(chiSquareSurvival(2, 2), Math.exp(-1), "sf(2, 2) = e^-1", 1e-15);
  assert.equal(chiSquareSurvival(0, 3), 1);
  assert.equal(chiSquareSurvival(-1, 3), 1);
  assert.equal(chiSquareSurvival(Infinity, 3), 0);
  assert.throws(() => chiSquareSurvival(1, 0), /dof/);
});

test("distances are 0 on identical distributions and bounded by 1 on disjoint ones", () => {
  const a = [5, 0, 3, 2];
  assert.equal(populationStabilityIndex(a, a), 0);
  assert.equal(klDivergence(a, a), 0);
  assert.equal(jensenShannonDistance(a, a), 0);
  assert.equal(hellingerDistance(a, a), 0);
  near(jensenShannonDistance([1, 0], [0, 1]), 1, "disjoint js", 1e-15);
  near(hellingerDistance([1, 0], [0, 1]), 1, "disjoint hellinger", 1e-15);
  // Scale invariance: counts and shares give the same answers.
  near(populationStabilityIndex([10, 20, 30], [30, 20, 10]), populationStabilityIndex([1, 2, 3], [3, 2, 1]), "psi scale", 1e-15);
});

test("empty bins are filled as Evidently does, and bad input is refused", () => {
  assert.deepEqual(fillEmptyShares([0.5, 0, 0.5]), [0.5, 1e-4, 0.5]);
  assert.deepEqual(fillEmptyShares([1 - 5e-5, 5e-5, 0]), [1 - 5e-5, 5e-5, 5e-11]);
  assert.ok(Number.isFinite(populationStabilityIndex([10, 0, 10], [0, 10, 10])));
  assert.throws(() => populationStabilityIndex([1, 2], [1, 2, 3]), /bins/);
  assert.throws(() => populationStabilityIndex([0, 0], [1, 2]), /empty/);
  assert.throws(() => jensenShannonDistance([1, -1], [1, 1]), /non-negative/);
  assert.throws(() => chiSquareContingency([[1, 0], [2, 0]]), /zero/);
  assert.throws(() => chiSquareGoodnessOfFit([1, 2], [1, 1]), /same total/);
  assert.equal(chiSquareContingency([[3], [4]]).pValue, 1);
  assert.throws(() => wassersteinDistance([], [1]), /at least one/);
});
