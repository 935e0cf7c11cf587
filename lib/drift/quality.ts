// Concept-drift metrics on labelled predictions (binary labels joined to scores): ROC AUC,
// log loss, accuracy at a threshold and calibration, one-shot and over a rolling window.

import { ValidationError } from "../errors.js";

function checkPairs(labels: ArrayLike<number>, scores: ArrayLike<number>): void {
  if (labels.length !== scores.length) {
    throw new ValidationError("labels", `${labels.length} labels for ${scores.length} predictions`);
  }
  if (labels.length === 0) throw new ValidationError("labels", "no labelled predictions");
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] !== 0 && labels[i] !== 1) throw new ValidationError("labels", `must be 0 or 1, got ${labels[i]} at ${i}`);
    if (!Number.isFinite(scores[i]!)) throw new ValidationError("scores", `value ${scores[i]} at ${i} is not finite`);
  }
}

function checkProbabilities(probs: ArrayLike<number>): void {
  for (let i = 0; i < probs.length; i++) {
    if (!(probs[i]! >= 0 && probs[i]! <= 1)) throw new ValidationError("probabilities", `must be in [0, 1], got ${probs[i]} at ${i}`);
  }
}

/**
 * Area under the ROC curve as the Mann–Whitney U statistic with mid-ranks for ties, equal to
 * sklearn.metrics.roc_auc_score for binary labels. Needs both classes present.
 */
export function rocAuc(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  checkPairs(labels, scores);
  const n = labels.length;
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => scores[a]! - scores[b]!);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const midRank = (i + j) / 2 + 1; // ranks are 1-based
    for (let k = i; k <= j; k++) {
      if (labels[order[k]!] === 1) {
        positives++;
        rankSum += midRank;
      }
    }
    i = j + 1;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) {
    throw new ValidationError("labels", "AUC needs both positive and negative labels in the window");
  }
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** Clipping of probabilities before the logarithm, sklearn's default: float64 machine epsilon. */
export const LOG_LOSS_EPS = Number.EPSILON;

/**
 * Mean binary cross-entropy, as sklearn.metrics.log_loss(labels, probs): probabilities are
 * clipped to [eps, 1 - eps] so a confident mistake costs ~36 nats, not Infinity.
 */
export function logLoss(labels: ArrayLike<number>, probs: ArrayLike<number>, eps: number = LOG_LOSS_EPS): number {
  checkPairs(labels, probs);
  checkProbabilities(probs);
  let s = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = Math.min(Math.max(probs[i]!, eps), 1 - eps);
    // sklearn renormalises the two columns [1 - p, p]; their sum can differ from 1 by an ulp.
    const sum = 1 - p + p;
    s -= labels[i] === 1 ? Math.log(p / sum) : Math.log((1 - p) / sum);
  }
  return s / labels.length;
}

/** Share of predictions whose class (probability >= threshold means 1) equals the label. */
export function accuracyAt(labels: ArrayLike<number>, probs: ArrayLike<number>, threshold = 0.5): number {
  checkPairs(labels, probs);
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if ((probs[i]! >= threshold ? 1 : 0) === labels[i]) correct++;
  return correct / labels.length;
}

export interface CalibrationBin {
  readonly lower: number;
  readonly upper: number;
  readonly count: number;
  /** Mean predicted probability in the bin (sklearn's prob_pred). */
  readonly meanPredicted: number;
  /** Observed share of positives in the bin (sklearn's prob_true). */
  readonly observed: number;
}

export interface Calibration {
  /** Non-empty bins only, in increasing order, as sklearn.calibration.calibration_curve. */
  readonly bins: CalibrationBin[];
  /** Expected calibration error: sum over bins of count/n * |observed - meanPredicted|. */
  readonly ece: number;
}

export const DEFAULT_CALIBRATION_BINS = 10;

/** Uniform bin of p in [0, 1] as sklearn: `np.searchsorted(np.linspace(0, 1, n + 1)[1:-1], p)`. */
export function calibrationBinIndex(p: number, bins: number): number {
  const step = 1 / bins;
  let lo = 0;
  let hi = bins - 1; // inner edges i * step, i = 1..bins-1; count those < p
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((mid + 1) * step < p) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Reliability of probabilities over `bins` equal-width bins of [0, 1] (a probability on an
 * inner edge belongs to the lower bin, as in sklearn's calibration_curve(strategy="uniform")).
 */
export function calibration(labels: ArrayLike<number>, probs: ArrayLike<number>, bins = DEFAULT_CALIBRATION_BINS): Calibration {
  checkPairs(labels, probs);
  checkProbabilities(probs);
  if (!Number.isInteger(bins) || bins < 1) throw new ValidationError("bins", `must be a positive integer, got ${bins}`);
  const count = new Float64Array(bins);
  const sumPred = new Float64Array(bins);
  const sumTrue = new Float64Array(bins);
  for (let i = 0; i < labels.length; i++) {
    const b = calibrationBinIndex(probs[i]!, bins);
    count[b]!++;
    sumPred[b]! += probs[i]!;
    sumTrue[b]! += labels[i]!;
  }
  return calibrationFromSums(count, sumPred, sumTrue, labels.length);
}

function calibrationFromSums(count: Float64Array, sumPred: Float64Array, sumTrue: Float64Array, n: number): Calibration {
  const bins = count.length;
  const out: CalibrationBin[] = [];
  let ece = 0;
  for (let b = 0; b < bins; b++) {
    const c = count[b]!;
    if (c === 0) continue;
    const meanPredicted = sumPred[b]! / c;
    const observed = sumTrue[b]! / c;
    ece += (c / n) * Math.abs(observed - meanPredicted);
    out.push({ lower: b / bins, upper: (b + 1) / bins, count: c, meanPredicted, observed });
  }
  return { bins: out, ece };
}

export interface QualitySnapshot {
  readonly n: number;
  readonly positives: number;
  /** null while the window holds a single class. */
  readonly auc: number | null;
  readonly logLoss: number;
  readonly accuracy: number;
  readonly calibration: Calibration;
}

export interface RollingQualityOptions {
  /** Most labelled predictions kept; the oldest is dropped when full. */
  readonly capacity: number;
  /** Probability at or above which the predicted class is 1; default 0.5. */
  readonly threshold?: number;
  readonly calibrationBins?: number;
}

/**
 * The last `capacity` labelled predictions of one model version. Adding is O(1) without
 * allocation; `snapshot` computes AUC (O(n log n)) and the rest from the window.
 */
export class RollingQuality {
  readonly capacity: number;
  private readonly probs: Float64Array;
  private readonly labels: Uint8Array;
  private head = 0;
  private length = 0;
  private readonly threshold: number;
  private readonly calibrationBins: number;

  constructor(options: RollingQualityOptions) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1) {
      throw new ValidationError("capacity", `must be a positive integer, got ${options.capacity}`);
    }
    this.capacity = options.capacity;
    this.probs = new Float64Array(options.capacity);
    this.labels = new Uint8Array(options.capacity);
    this.threshold = options.threshold ?? 0.5;
    this.calibrationBins = options.calibrationBins ?? DEFAULT_CALIBRATION_BINS;
  }

  get size(): number {
    return this.length;
  }

  /** Adds one prediction with its (delayed) label, evicting the oldest when full. */
  add(probability: number, label: 0 | 1): void {
    if (!(probability >= 0 && probability <= 1)) throw new ValidationError("probability", `must be in [0, 1], got ${probability}`);
    if (label !== 0 && label !== 1) throw new ValidationError("label", `must be 0 or 1, got ${String(label)}`);
    const slot = (this.head + this.length) % this.capacity;
    this.probs[slot] = probability;
    this.labels[slot] = label;
    if (this.length === this.capacity) this.head = (this.head + 1) % this.capacity;
    else this.length++;
  }

  /** Metrics over the window in arrival order; throws when the window is empty. */
  snapshot(): QualitySnapshot {
    if (this.length === 0) throw new ValidationError("window", "no labelled predictions yet");
    const probs = new Float64Array(this.length);
    const labels = new Uint8Array(this.length);
    for (let i = 0; i < this.length; i++) {
      const k = (this.head + i) % this.capacity;
      probs[i] = this.probs[k]!;
      labels[i] = this.labels[k]!;
    }
    let positives = 0;
    for (const l of labels) positives += l;
    return {
      n: this.length,
      positives,
      auc: positives === 0 || positives === this.length ? null : rocAuc(labels, probs),
      logLoss: logLoss(labels, probs),
      accuracy: accuracyAt(labels, probs, this.threshold),
      calibration: calibration(labels, probs, this.calibrationBins),
    };
  }
}
