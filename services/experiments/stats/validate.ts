// Input checks shared by the statistics modules: each throws a ValidationError naming the
// field, so a bad request fails with a sentence instead of producing NaN further down.

import { ValidationError } from "../../../lib/errors.js";

export function requireFinite(field: string, value: number): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new ValidationError(field, `must be a finite number, got ${String(value)}`);
  }
  return value;
}

export function requirePositive(field: string, value: number): number {
  requireFinite(field, value);
  if (!(value > 0)) throw new ValidationError(field, `must be > 0, got ${value}`);
  return value;
}

export function requireNonNegative(field: string, value: number): number {
  requireFinite(field, value);
  if (!(value >= 0)) throw new ValidationError(field, `must be >= 0, got ${value}`);
  return value;
}

/** A count: a non-negative integer. */
export function requireCount(field: string, value: number): number {
  requireNonNegative(field, value);
  if (!Number.isInteger(value)) throw new ValidationError(field, `must be a whole number, got ${value}`);
  return value;
}

/** A probability strictly inside (0, 1), such as alpha, power or a baseline rate. */
export function requireOpenUnit(field: string, value: number): number {
  requireFinite(field, value);
  if (!(value > 0 && value < 1)) throw new ValidationError(field, `must be strictly between 0 and 1, got ${value}`);
  return value;
}

/** A probability in [0, 1], such as a p-value. */
export function requireClosedUnit(field: string, value: number): number {
  requireFinite(field, value);
  if (!(value >= 0 && value <= 1)) throw new ValidationError(field, `must be between 0 and 1, got ${value}`);
  return value;
}

/**
 * Planned arm weights: finite, positive, summing to 1 within 1e-6 (so 1/3 typed as
 * 0.3333333 passes but 0.4 + 0.5 does not). Returns them divided by their sum.
 */
export function requireWeights(field: string, weights: readonly number[], expectedLength?: number): number[] {
  requireList(field, weights, 1, "weights");
  if (expectedLength !== undefined && weights.length !== expectedLength) {
    throw new ValidationError(field, `has ${weights.length} weights for ${expectedLength} arms`);
  }
  let sum = 0;
  weights.forEach((w, i) => {
    requirePositive(`${field}[${i}]`, w);
    sum += w;
  });
  if (Math.abs(sum - 1) > 1e-6) throw new ValidationError(field, `must sum to 1, they sum to ${sum}`);
  return weights.map((w) => w / sum);
}

/** A list with at least `min` entries (checked without narrowing the caller's element type). */
export function requireList(field: string, value: unknown, min: number, what = "entries"): void {
  if (!Array.isArray(value)) throw new ValidationError(field, `must be a list, got ${typeof value}`);
  if (value.length < min) throw new ValidationError(field, `needs at least ${min} ${what}, got ${value.length}`);
}
