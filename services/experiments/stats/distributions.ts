// The distribution functions the experiment statistics need — standard normal, Student t and
// chi-square — accurate to ~1e-12 relative, including the far tails, without a native library.
//
// How: ln Γ by Stirling's series with the shift recurrence; ln B(a, b) split as R's lbeta does
// (so ln B(df/2, 1/2) stays exact when df is 10 million); the regularized incomplete gamma by
// its series / Lentz continued fraction with the prefix x^a e^-x / Γ(a) taken through
// log(1 + z) - z for large a (Temme's trick, as Boost and R do); the regularized incomplete
// beta by its continued fraction, given both x and 1 - x so neither is formed by subtraction.
// The normal is Q(1/2, x²/2); its quantile is Acklam's approximation polished by Halley steps
// written in logs; the t quantile is a safeguarded Newton iteration on ln(sf) in ln(t).

import { ValidationError } from "../../../lib/errors.js";

const LN_SQRT_2PI = 0.9189385332046728; // ln √(2π)
const LN_HALF = -0.6931471805599453;
const TINY = 1e-300;
const EPS = 1e-16;
const LARGE_A = 15;

// ------------------------------------------------------------------ Γ and B in logs

/** Stirling series remainder δ(x) = ln Γ(x) − [(x − ½) ln x − x + ln √(2π)], for x ≥ 10. */
function stirlingCorrection(x: number): number {
  const r = 1 / x;
  const r2 = r * r;
  return (
    r *
    (1 / 12 +
      r2 *
        (-1 / 360 +
          r2 * (1 / 1260 + r2 * (-1 / 1680 + r2 * (1 / 1188 + r2 * (-691 / 360360 + r2 * (1 / 156 + r2 * (-3617 / 122400))))))))
  );
}

/** ln Γ(x) for x > 0; absolute error ~1e-15 (relative ~1e-16 for large x). */
export function logGamma(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) throw new ValidationError("x", `logGamma needs a finite x > 0, got ${x}`);
  if (x >= 10) return (x - 0.5) * Math.log(x) - x + LN_SQRT_2PI + stirlingCorrection(x);
  let product = 1;
  let y = x;
  while (y < 10) {
    product *= y;
    y += 1;
  }
  return (y - 0.5) * Math.log(y) - y + LN_SQRT_2PI + stirlingCorrection(y) - Math.log(product);
}

/** ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b), without cancellation when a or b is large. */
export function logBeta(a: number, b: number): number {
  if (!(a > 0) || !(b > 0) || !Number.isFinite(a) || !Number.isFinite(b)) {
    throw new ValidationError("a, b", `logBeta needs finite a, b > 0, got ${a}, ${b}`);
  }
  const p = Math.min(a, b);
  const q = Math.max(a, b);
  if (p >= 10) {
    const corr = stirlingCorrection(p) + stirlingCorrection(q) - stirlingCorrection(p + q);
    return -0.5 * Math.log(q) + LN_SQRT_2PI + corr + (p - 0.5) * Math.log(p / (p + q)) + q * Math.log1p(-p / (p + q));
  }
  if (q >= 10) {
    const corr = stirlingCorrection(q) - stirlingCorrection(p + q);
    return logGamma(p) + corr + p - p * Math.log(p + q) + (q - 0.5) * Math.log1p(-p / (p + q));
  }
  return logGamma(p) + logGamma(q) - logGamma(p + q);
}

/** ln(1 + z) − z, accurate for small |z| where the two terms nearly cancel. */
function log1pMinusX(z: number): number {
  if (Math.abs(z) >= 0.5) return Math.log1p(z) - z;
  let term = z;
  let sum = 0;
  for (let k = 2; k < 200; k++) {
    term *= -z;
    const add = term / k;
    sum += add;
    if (Math.abs(add) <= Math.abs(sum) * 1e-17) break;
  }
  return sum;
}

// ------------------------------------------------------------------ incomplete gamma

/** ln(x^a e^-x / Γ(a)), the factor in front of both incomplete gamma expansions. */
function gammaLogPrefix(a: number, x: number): number {
  if (a < 10) return a * Math.log(x) - x - logGamma(a);
  return a * log1pMinusX((x - a) / a) + 0.5 * Math.log(a) - LN_SQRT_2PI - stirlingCorrection(a);
}

function iterationLimit(a: number): number {
  return 1000 + 60 * Math.ceil(Math.sqrt(a));
}

/** Σ x^n / (a (a+1) ... (a+n)): P(a, x) = prefix · this. Converges for any x, fast for x < a + 1. */
function gammaSeries(a: number, x: number): number {
  let term = 1 / a;
  let sum = term;
  const limit = iterationLimit(a + x);
  for (let n = 1; n < limit; n++) {
    term *= x / (a + n);
    sum += term;
    if (term <= sum * EPS) return sum;
  }
  throw new Error(`incomplete gamma series did not converge for a=${a}, x=${x}`);
}

/** Continued fraction (modified Lentz): Q(a, x) = prefix · this, for x ≥ a + 1. */
function gammaContinuedFraction(a: number, x: number): number {
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  const limit = iterationLimit(a);
  for (let i = 1; i < limit; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) <= EPS) return h;
  }
  throw new Error(`incomplete gamma continued fraction did not converge for a=${a}, x=${x}`);
}

function checkGammaArgs(a: number, x: number): void {
  if (!(a > 0) || !Number.isFinite(a)) throw new ValidationError("a", `must be a finite number > 0, got ${a}`);
  if (!(x >= 0)) throw new ValidationError("x", `must be >= 0, got ${x}`);
}

/**
 * ln Q(a, x) for x ≥ a + 1 by the continued fraction. When x dwarfs a the fraction is
 * 1/(x + 1 − a) to double precision, taken in logs because 1/x would be subnormal near 1e308.
 */
function logGammaQTail(a: number, x: number): number {
  if (x > 1e17 * Math.max(1, a)) return gammaLogPrefix(a, x) - Math.log(x + 1 - a);
  return gammaLogPrefix(a, x) + Math.log(gammaContinuedFraction(a, x));
}

/** Regularized lower incomplete gamma P(a, x) = γ(a, x) / Γ(a) (scipy.special.gammainc). */
export function regularizedGammaP(a: number, x: number): number {
  checkGammaArgs(a, x);
  if (x === 0) return 0;
  if (x === Infinity) return 1;
  if (x < a + 1) return Math.exp(gammaLogPrefix(a, x)) * gammaSeries(a, x);
  return 1 - Math.exp(logGammaQTail(a, x));
}

/** Regularized upper incomplete gamma Q(a, x) = 1 − P(a, x) (scipy.special.gammaincc), exact in the far tail. */
export function regularizedGammaQ(a: number, x: number): number {
  checkGammaArgs(a, x);
  if (x === 0) return 1;
  if (x === Infinity) return 0;
  if (x < a + 1) return 1 - Math.exp(gammaLogPrefix(a, x)) * gammaSeries(a, x);
  return Math.exp(logGammaQTail(a, x));
}

/** ln Q(a, x), finite even where Q itself underflows. */
function logGammaQ(a: number, x: number): number {
  if (x === 0) return 0;
  if (x === Infinity) return -Infinity;
  if (x < a + 1) return Math.log1p(-Math.exp(gammaLogPrefix(a, x)) * gammaSeries(a, x));
  return logGammaQTail(a, x);
}

// ------------------------------------------------------------------ incomplete beta

/** Continued fraction for I_x(a, b) (Numerical Recipes' betacf, modified Lentz). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  const limit = iterationLimit(Math.max(a, b));
  for (let m = 1; m < limit; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) <= EPS) return h;
  }
  throw new Error(`incomplete beta continued fraction did not converge for a=${a}, b=${b}, x=${x}`);
}

/** Q(b, z) / (z^b e^-z / Γ(b)): the incomplete gamma without its prefix, finite for any z > 0. */
function gammaQWithoutPrefix(b: number, z: number): number {
  if (z >= b + 1) return gammaContinuedFraction(b, z);
  const prefix = Math.exp(gammaLogPrefix(b, z));
  return (1 - prefix * gammaSeries(b, z)) / prefix;
}

/**
 * I_x(a, b) for a ≥ 15 and b ≤ 1 by the asymptotic expansion in powers of 1/ν², ν = a + (b − 1)/2
 * (DiDonato & Morris 1992, ACM TOMS 708, procedure BGRAT; Temme's expansion): the leading term
 * is Q(b, −ν ln x). Used where the continued fraction converges too slowly to be trusted
 * (large a with x close to its mean), which is the Student t with large df.
 */
function incompleteBetaLargeA(a: number, b: number, lnX: number): number {
  const bm1 = b - 1;
  const nu = a + 0.5 * bm1;
  const z = -nu * lnX;
  if (z <= 0) return 1;
  const lnFront = -z + b * Math.log(z) - logBeta(a, b) - b * Math.log(nu);
  const v = 0.25 / (nu * nu);
  const t2 = 0.25 * lnX * lnX;
  let j = gammaQWithoutPrefix(b, z);
  let sum = j;
  let t = 1;
  let cn = 1;
  let n2 = 0;
  const c: number[] = [];
  const d: number[] = [];
  for (let n = 1; n <= 30; n++) {
    const bp2n = b + n2;
    j = (bp2n * (bp2n + 1) * j + (z + bp2n + 1) * t) * v;
    n2 += 2;
    t *= t2;
    cn /= n2 * (n2 + 1);
    c.push(cn);
    let s = 0;
    let coef = b - n;
    for (let i = 1; i < n; i++) {
      s += coef * c[i - 1]! * d[n - i - 1]!;
      coef += b;
    }
    const dn = bm1 * cn + s / n;
    d.push(dn);
    const dj = dn * j;
    sum += dj;
    if (Math.abs(dj) <= EPS * sum) break;
  }
  return Math.exp(lnFront) * sum;
}

/**
 * I_x(a, b) given x, y = 1 − x and their logarithms, each computed by the caller without
 * cancellation. Uses the continued fraction on whichever side converges, or the large-a
 * expansion where that one is slow.
 */
function incompleteBeta(a: number, b: number, x: number, y: number, lnX: number, lnY: number): number {
  // Tested on the logs: x or y may underflow to 0 while the result is still a normal number.
  if (lnX === -Infinity) return 0;
  if (lnY === -Infinity) return 1;
  if (b <= 1 && a >= LARGE_A && y < 0.5) return incompleteBetaLargeA(a, b, lnX);
  if (x > (a + 1) / (a + b + 2)) {
    const front = Math.exp(b * lnY + a * lnX - logBeta(a, b)) / b;
    return 1 - front * betaContinuedFraction(b, a, y);
  }
  const front = Math.exp(a * lnX + b * lnY - logBeta(a, b)) / a;
  return front * betaContinuedFraction(a, b, x);
}

/** Regularized incomplete beta I_x(a, b) (scipy.special.betainc). */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (!(a > 0) || !(b > 0) || !Number.isFinite(a) || !Number.isFinite(b)) {
    throw new ValidationError("a, b", `must be finite and > 0, got ${a}, ${b}`);
  }
  if (!(x >= 0 && x <= 1)) throw new ValidationError("x", `must be in [0, 1], got ${x}`);
  if (x === 0) return 0;
  if (x === 1) return 1;
  return incompleteBeta(a, b, x, 1 - x, Math.log(x), Math.log1p(-x));
}

// ------------------------------------------------------------------ standard normal

function checkX(x: number): void {
  if (typeof x !== "number" || Number.isNaN(x)) throw new ValidationError("x", `must be a number, got ${String(x)}`);
}

/** Standard normal density φ(x). */
export function normalPdf(x: number): number {
  checkX(x);
  return Math.exp(-0.5 * x * x - LN_SQRT_2PI);
}

/** Standard normal cdf Φ(x) (scipy.stats.norm.cdf); relative accuracy holds deep into the lower tail. */
export function normalCdf(x: number): number {
  checkX(x);
  const q = 0.5 * regularizedGammaQ(0.5, 0.5 * x * x);
  return x < 0 ? q : 1 - q;
}

/** Standard normal survival 1 − Φ(x) (scipy.stats.norm.sf), accurate in the upper tail. */
export function normalSf(x: number): number {
  checkX(x);
  return normalCdf(-x);
}

/** ln Φ(x), finite for every finite x (used to polish quantiles below 1e-300). */
export function logNormalCdf(x: number): number {
  checkX(x);
  if (x < 0) return LN_HALF + logGammaQ(0.5, 0.5 * x * x);
  return Math.log1p(-0.5 * regularizedGammaQ(0.5, 0.5 * x * x));
}

// Acklam's rational approximation (relative error 1.15e-9), then polished below.
const ACKLAM_A = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
const ACKLAM_B = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
const ACKLAM_C = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
const ACKLAM_D = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];

function poly(coefficients: readonly number[], x: number): number {
  let acc = 0;
  for (const c of coefficients) acc = acc * x + c;
  return acc;
}

function acklamLowerHalf(p: number): number {
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    return poly(ACKLAM_C, q) / (poly(ACKLAM_D, q) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return (poly(ACKLAM_A, r) * q) / (poly(ACKLAM_B, r) * r + 1);
}

/** Standard normal quantile Φ⁻¹(p) (scipy.stats.norm.ppf); ±Infinity at p = 0 or 1. */
export function normalQuantile(p: number): number {
  if (typeof p !== "number" || !(p >= 0 && p <= 1)) throw new ValidationError("p", `must be a probability in [0, 1], got ${String(p)}`);
  if (p === 0) return -Infinity;
  if (p === 1) return Infinity;
  if (p === 0.5) return 0;
  if (p > 0.5) return -normalQuantile(1 - p); // 1 − p is exact for p ≥ 0.5
  let x = acklamLowerHalf(p);
  const lnP = Math.log(p);
  for (let i = 0; i < 4; i++) {
    // r = (Φ(x) − p) / φ(x). Near the centre Φ(x) − p = (½ − p) + sign(x)·½·P(½, x²/2), which
    // keeps its relative accuracy as x → 0; in the tail it is formed in logs, so it stays
    // finite below p = 1e-300.
    const lnDensity = -0.5 * x * x - LN_SQRT_2PI;
    let r: number;
    if (p > 0.02) {
      const f = 0.5 - p + Math.sign(x) * 0.5 * regularizedGammaP(0.5, 0.5 * x * x);
      r = f / Math.exp(lnDensity);
    } else {
      const lnPhi = logNormalCdf(x);
      r = -Math.exp(lnPhi - lnDensity) * Math.expm1(lnP - lnPhi);
    }
    const step = r / (1 + 0.5 * x * r); // Halley
    x -= step;
    if (Math.abs(step) <= 1e-15 * Math.abs(x)) break;
  }
  return x;
}

/** Upper-tail normal quantile: the z with 1 − Φ(z) = q (scipy.stats.norm.isf), exact for tiny q. */
export function normalIsf(q: number): number {
  return -normalQuantile(q);
}

// ------------------------------------------------------------------ Student t

function checkDf(df: number): void {
  if (typeof df !== "number" || !(df > 0)) throw new ValidationError("df", `degrees of freedom must be > 0, got ${String(df)}`);
}

interface TailTerms {
  readonly x: number; // df / (df + t²)
  readonly y: number; // t² / (df + t²)
  readonly lnX: number;
  readonly lnY: number;
}

/** x = df/(df + t²) and y = t²/(df + t²) with their logs, without overflow or cancellation. */
function tailTerms(absT: number, df: number): TailTerms {
  const r = (absT * absT) / df;
  if (Number.isFinite(r) && r > 0) {
    const l = Math.log1p(r);
    return { x: 1 / (1 + r), y: r / (1 + r), lnX: -l, lnY: Math.log(r) - l };
  }
  if (r === 0) return { x: 1, y: 0, lnX: 0, lnY: -Infinity };
  const lnR = 2 * Math.log(absT) - Math.log(df);
  const lnY = -Math.log1p(Math.exp(-lnR));
  const lnX = -lnR + lnY;
  return { x: Math.exp(lnX), y: Math.exp(lnY), lnX, lnY };
}

/** P(T > |t|) = ½ I_x(df/2, ½). */
function studentUpperTail(absT: number, df: number): number {
  if (absT === Infinity) return 0;
  if (df === Infinity) return normalSf(absT);
  const { x, y, lnX, lnY } = tailTerms(absT, df);
  return 0.5 * incompleteBeta(df / 2, 0.5, x, y, lnX, lnY);
}

/** Student t cdf (scipy.stats.t.cdf); df may be Infinity (the normal). */
export function studentTCdf(t: number, df: number): number {
  checkX(t);
  checkDf(df);
  if (t === 0) return 0.5;
  const tail = studentUpperTail(Math.abs(t), df);
  return t < 0 ? tail : 1 - tail;
}

/** Student t survival function 1 − F(t) (scipy.stats.t.sf), accurate in the upper tail. */
export function studentTSf(t: number, df: number): number {
  return studentTCdf(-t, df);
}

/** Student t density (scipy.stats.t.pdf). */
export function studentTPdf(t: number, df: number): number {
  checkX(t);
  checkDf(df);
  if (df === Infinity) return normalPdf(t);
  const { lnX } = tailTerms(Math.abs(t), df);
  return Math.exp(-logBeta(df / 2, 0.5) - 0.5 * Math.log(df) + 0.5 * (df + 1) * lnX);
}

/** The t > 0 with P(T > t) = q, for 0 < q < ½. */
function studentUpperQuantile(q: number, df: number): number {
  if (df === 1) return q < 0.25 ? 1 / Math.tan(Math.PI * q) : Math.tan(Math.PI * (0.5 - q));
  if (df === 2) return (1 - 2 * q) / Math.sqrt(2 * q * (1 - q));
  const lnQ = Math.log(q);
  const lnB = logBeta(df / 2, 0.5);
  // g(u) = ln sf(e^u) − ln q is decreasing in u and close to linear in the tail.
  const g = (u: number): { value: number; slope: number } => {
    const t = Math.exp(u);
    const { x, y, lnX, lnY } = tailTerms(t, df);
    const sf = 0.5 * incompleteBeta(df / 2, 0.5, x, y, lnX, lnY);
    const lnSf = Math.log(sf);
    const lnPdf = -lnB - 0.5 * Math.log(df) + 0.5 * (df + 1) * lnX;
    return { value: lnSf - lnQ, slope: -Math.exp(u + lnPdf - lnSf) };
  };
  // Start from the Cornish–Fisher expansion around the normal quantile.
  const z = normalIsf(q);
  const t0 = z + (z * z * z + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df);
  let u = Math.log(Math.max(t0, 1e-300));
  let lo = -Infinity; // g(lo) > 0
  let hi = Infinity; // g(hi) < 0
  let expand = 1;
  for (let i = 0; i < 500; i++) {
    const { value, slope } = g(u);
    if (value === 0) return Math.exp(u);
    if (value > 0 || Number.isNaN(value)) lo = u;
    else hi = u;
    let next = u - value / slope;
    if (!Number.isFinite(next) || next <= lo || next >= hi) {
      if (Number.isFinite(lo) && Number.isFinite(hi)) next = 0.5 * (lo + hi);
      else {
        next = Number.isFinite(lo) ? lo + expand : hi - expand;
        expand *= 2;
      }
    }
    if (Math.abs(next - u) <= 1e-15 * Math.max(1, Math.abs(u))) {
      u = next;
      break;
    }
    u = next;
  }
  const t = Math.exp(u);
  // The root lies beyond the largest double (tiny q with df < 1): say so, not DBL_MAX.
  if (t > 1e307 && studentUpperTail(Number.MAX_VALUE, df) > q) return Infinity;
  return t;
}

/** Student t quantile (scipy.stats.t.ppf); ±Infinity at p = 0 or 1; df may be Infinity. */
export function studentTQuantile(p: number, df: number): number {
  if (typeof p !== "number" || !(p >= 0 && p <= 1)) throw new ValidationError("p", `must be a probability in [0, 1], got ${String(p)}`);
  checkDf(df);
  if (p === 0) return -Infinity;
  if (p === 1) return Infinity;
  if (p === 0.5) return 0;
  if (df === Infinity) return normalQuantile(p);
  return p < 0.5 ? -studentUpperQuantile(p, df) : studentUpperQuantile(1 - p, df);
}

// ------------------------------------------------------------------ chi-square

/** Chi-square survival function P(X > x) (scipy.stats.chi2.sf). */
export function chiSquareSf(x: number, dof: number): number {
  checkX(x);
  if (!(dof > 0) || !Number.isFinite(dof)) throw new ValidationError("dof", `degrees of freedom must be finite and > 0, got ${dof}`);
  if (x <= 0) return 1;
  return regularizedGammaQ(dof / 2, x / 2);
}

/** Chi-square cdf P(X ≤ x) (scipy.stats.chi2.cdf). */
export function chiSquareCdf(x: number, dof: number): number {
  checkX(x);
  if (!(dof > 0) || !Number.isFinite(dof)) throw new ValidationError("dof", `degrees of freedom must be finite and > 0, got ${dof}`);
  if (x <= 0) return 0;
  return regularizedGammaP(dof / 2, x / 2);
}
