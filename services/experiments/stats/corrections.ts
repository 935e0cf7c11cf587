// Multiple-comparison corrections across arms × metrics: Holm–Bonferroni (family-wise error)
// and Benjamini–Hochberg (false discovery rate), as statsmodels' multipletests returns them.

import { ValidationError } from "../../../lib/errors.js";
import { resolveAlpha } from "./effect.js";
import { requireClosedUnit, requireList } from "./validate.js";

export type CorrectionMethod = "holm" | "bh";

export interface CorrectedPValues {
  /** Adjusted p-values in the input order, capped at 1. */
  readonly adjusted: readonly number[];
  /** adjusted < … ≤ alpha, in the input order (statsmodels' `reject`). */
  readonly reject: readonly boolean[];
}

function sortedOrder(pValues: readonly number[]): number[] {
  requireList("pValues", pValues, 1, "p-values");
  pValues.forEach((p, i) => requireClosedUnit(`pValues[${i}]`, p));
  // Stable ascending order (ties keep input order, as numpy's mergesort does).
  return pValues.map((_, i) => i).sort((a, b) => pValues[a]! - pValues[b]! || a - b);
}

/**
 * Holm's step-down: with p₍₁₎ ≤ … ≤ p₍ₘ₎, adjusted p₍ᵢ₎ = max over j ≤ i of min(1, (m − j + 1) p₍ⱼ₎)
 * (multipletests(method="holm")). Rejects p₍ᵢ₎ while p₍ᵢ₎ ≤ α/(m − i + 1), stopping at the first failure.
 */
export function holm(pValues: readonly number[], alpha?: number): CorrectedPValues {
  const a = resolveAlpha(alpha);
  const order = sortedOrder(pValues);
  const m = order.length;
  const adjusted = new Array<number>(m);
  const reject = new Array<boolean>(m).fill(false);
  let running = 0;
  let rejecting = true;
  order.forEach((idx, rank) => {
    const p = pValues[idx]!;
    running = Math.max(running, Math.min(1, (m - rank) * p));
    adjusted[idx] = running;
    rejecting = rejecting && p <= a / (m - rank);
    reject[idx] = rejecting;
  });
  return { adjusted, reject };
}

/**
 * Benjamini–Hochberg step-up: adjusted p₍ᵢ₎ = min over j ≥ i of min(1, m p₍ⱼ₎ / j)
 * (multipletests(method="fdr_bh")). Rejects every p₍ᵢ₎ with i ≤ the largest k where p₍ₖ₎ ≤ kα/m.
 */
export function benjaminiHochberg(pValues: readonly number[], alpha?: number): CorrectedPValues {
  const a = resolveAlpha(alpha);
  const order = sortedOrder(pValues);
  const m = order.length;
  const adjusted = new Array<number>(m);
  let running = Infinity;
  let largest = -1;
  for (let rank = m - 1; rank >= 0; rank--) {
    const idx = order[rank]!;
    const p = pValues[idx]!;
    running = Math.min(running, p / ((rank + 1) / m));
    adjusted[idx] = Math.min(1, running);
    if (largest < 0 && p <= ((rank + 1) / m) * a) largest = rank;
  }
  const reject = new Array<boolean>(m).fill(false);
  for (let rank = 0; rank <= largest; rank++) reject[order[rank]!] = true;
  return { adjusted, reject };
}

/** Either correction by name. */
export function correctPValues(pValues: readonly number[], method: CorrectionMethod, alpha?: number): CorrectedPValues {
  if (method === "holm") return holm(pValues, alpha);
  if (method === "bh") return benjaminiHochberg(pValues, alpha);
  throw new ValidationError("method", `must be "holm" or "bh", got ${String(method)}`);
}
