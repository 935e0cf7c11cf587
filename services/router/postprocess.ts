// Post-processing of a model's answer: which output is the score, calibration (Platt or
// isotonic, as scikit-learn defines them), threshold and top-k of class probabilities.

import type { Calibration, PostProcessing } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import type { RowOutput } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";

/** Platt: 1 / (1 + exp(a·s + b)) (sklearn CalibratedClassifierCV(method="sigmoid")). */
export function platt(s: number, a: number, b: number): number {
  return 1 / (1 + Math.exp(a * s + b));
}

/** Piecewise-linear through the knots, clipped outside them (IsotonicRegression(out_of_bounds="clip")). */
export function isotonic(s: number, xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (s <= xs[0]!) return ys[0]!;
  if (s >= xs[n - 1]!) return ys[n - 1]!;
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= s) lo = mid;
    else hi = mid;
  }
  const t = (s - xs[lo]!) / (xs[hi]! - xs[lo]!);
  return ys[lo]! + t * (ys[hi]! - ys[lo]!);
}

export function calibrate(s: number, c: Calibration | undefined): number {
  const m = c?.method;
  if (m?.case === "platt") return platt(s, m.value.a, m.value.b);
  if (m?.case === "isotonic") return isotonic(s, m.value.points.map((p) => p.x), m.value.points.map((p) => p.y));
  return s;
}

/** The raw score of one row: the named output (class column), the positive class, or inference's score. */
export function rawScore(row: RowOutput, pp: PostProcessing | undefined): number {
  if (pp?.scoreOutput) {
    const out = row.outputs[pp.scoreOutput];
    if (!out) throw new ValidationError("post_processing.score_output", `the model has no output ${JSON.stringify(pp.scoreOutput)}; it has ${Object.keys(row.outputs).join(", ")}`);
    const idx = pp.positiveClass && /^\d+$/.test(pp.positiveClass) ? Number(pp.positiveClass) : out.values.length > 1 ? 1 : 0;
    const v = out.values[Math.min(idx, out.values.length - 1)];
    if (v === undefined) throw new ValidationError("post_processing.score_output", `output ${pp.scoreOutput} has no numeric values`);
    return v;
  }
  if (pp?.positiveClass && row.classProbabilities[pp.positiveClass] !== undefined) return row.classProbabilities[pp.positiveClass]!;
  return row.score;
}

/** The k most probable classes (all when k is 0). */
export function topClasses(probs: Readonly<Record<string, number>>, k: number): Record<string, number> {
  const entries = Object.entries(probs);
  if (k <= 0 || entries.length <= k) return { ...probs };
  entries.sort((a, b) => b[1] - a[1]);
  return Object.fromEntries(entries.slice(0, k));
}
