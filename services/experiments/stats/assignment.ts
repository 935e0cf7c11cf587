// Deterministic assignment of units to arms, bit-compatible with GrowthBook's SDK hash
// version 2 so a team moving from GrowthBook keeps every unit in its arm.
//
// Spec and test vectors: docs/assignment-spec.md.
// Checked against GrowthBook's JavaScript SDK (packages/sdk-js/src/util.ts: hashFnv32a, hash,
// getBucketRanges, chooseVariation, inNamespace; core.ts: filters hash with version 2) and
// its published test cases (packages/sdk-js/test/cases.json, "hash" and "getBucketRange").

import { ValidationError } from "../../../lib/errors.js";
import { requireList } from "./validate.js";

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * 32-bit FNV-1a over the string's UTF-16 code units (what JavaScript's charCodeAt returns,
 * as in GrowthBook's JS SDK): h = 2166136261; for each unit c: h = ((h XOR c) · 16777619) mod 2³².
 * For ASCII this is byte-wise FNV-1a over UTF-8.
 */
export function fnv1a32(input: string): number {
  let h = FNV_OFFSET_BASIS;
  for (let i = 0; i < input.length; i++) {
    h ^= input.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

function checkId(field: string, value: string): void {
  if (typeof value !== "string" || value.length === 0) throw new ValidationError(field, "must be a non-empty string");
}

/** Raw hash value of version 2: fnv1a32(decimal string of fnv1a32(seed + unitId)). */
export function hashValueV2(seed: string, unitId: string): number {
  return fnv1a32(String(fnv1a32(seed + unitId)));
}

/** GrowthBook hash version 2: (fnv1a32(String(fnv1a32(seed + unitId))) mod 10000) / 10000 ∈ [0, 1). */
export function bucketV2(seed: string, unitId: string): number {
  if (typeof seed !== "string") throw new ValidationError("seed", "must be a string");
  checkId("unitId", unitId);
  return (hashValueV2(seed, unitId) % 10000) / 10000;
}

/**
 * GrowthBook hash version 1, (fnv1a32(unitId + seed) mod 1000) / 1000. Biased when experiments
 * run in parallel; kept only because GrowthBook's legacy `namespace` field still uses it.
 */
export function bucketV1(seed: string, unitId: string): number {
  if (typeof seed !== "string") throw new ValidationError("seed", "must be a string");
  checkId("unitId", unitId);
  return (fnv1a32(unitId + seed) % 1000) / 1000;
}

/** [start, end): a unit with bucket b is inside when start ≤ b < end. */
export type BucketRange = readonly [number, number];

export function inRange(bucket: number, range: BucketRange): boolean {
  return bucket >= range[0] && bucket < range[1];
}

/**
 * Arm ranges exactly as GrowthBook's getBucketRanges: walking the weights in order with a
 * running IEEE-754 double sum c (starting at 0), arm i gets [c, c + coverage · wᵢ), then
 * c += wᵢ. The running sum is not rounded or renormalised — that is what keeps boundaries
 * identical to GrowthBook's (0.1 + 0.2 is 0.30000000000000004 in both).
 *
 * Unlike GrowthBook, which silently falls back to equal weights, weights that are negative,
 * not finite, or do not sum to 1 within 1e-6 are rejected; so is a coverage outside [0, 1].
 */
export function bucketRanges(weights: readonly number[], coverage = 1): BucketRange[] {
  requireList("weights", weights, 2, "arms");
  if (typeof coverage !== "number" || !(coverage >= 0 && coverage <= 1)) {
    throw new ValidationError("coverage", `must be between 0 and 1, got ${String(coverage)}`);
  }
  let total = 0;
  weights.forEach((w, i) => {
    if (typeof w !== "number" || !Number.isFinite(w) || w < 0) throw new ValidationError(`weights[${i}]`, `must be a finite number >= 0, got ${String(w)}`);
    total += w;
  });
  if (Math.abs(total - 1) > 1e-6) throw new ValidationError("weights", `must sum to 1, they sum to ${total}`);
  let cumulative = 0;
  return weights.map((w) => {
    const start = cumulative;
    cumulative += w;
    return [start, start + coverage * w] as const;
  });
}

/** Index of the first range holding the bucket, or −1 (GrowthBook's chooseVariation). */
export function chooseArmIndex(bucket: number, ranges: readonly BucketRange[]): number {
  for (let i = 0; i < ranges.length; i++) if (inRange(bucket, ranges[i]!)) return i;
  return -1;
}

export interface ArmWeight {
  readonly name: string;
  readonly weight: number;
}

/** A layer (GrowthBook: a namespace filter): experiments in it own disjoint bucket ranges. */
export interface LayerSlot {
  /** Seed of the layer's own hash, shared by every experiment in the layer (default: the layer key). */
  readonly seed: string;
  /** This experiment's share of the layer, [start, end) of the layer bucket. */
  readonly range: BucketRange;
}

export interface AssignmentConfig {
  /** The experiment's salt (GrowthBook: experiment.seed, defaulting to its key). */
  readonly seed: string;
  readonly arms: readonly ArmWeight[];
  /** Share of eligible traffic enrolled, 0..1 (GrowthBook coverage); default 1. */
  readonly coverage?: number;
  readonly layer?: LayerSlot;
}

export type AssignmentReason = "assigned" | "not_in_layer" | "not_in_coverage";

export interface Assignment {
  /** Arm name, or null when the unit is not in the experiment. */
  readonly arm: string | null;
  readonly armIndex: number;
  /** The experiment bucket in [0, 1) (4 decimals). */
  readonly bucket: number;
  /** The layer bucket when the experiment sits in a layer. */
  readonly layerBucket: number | null;
  readonly reason: AssignmentReason;
}

/** Layer membership hash: version 2 with the layer's seed (GrowthBook filters, hashVersion 2). */
export function layerBucket(layerSeed: string, unitId: string): number {
  checkId("layer.seed", layerSeed);
  return bucketV2(layerSeed, unitId);
}

/**
 * GrowthBook's legacy `namespace: [id, start, end]` membership: version 1 with seed "__" + id.
 * Only for migrating experiments that still use it; new layers use `layerBucket`.
 */
export function growthbookNamespaceBucket(namespaceId: string, unitId: string): number {
  checkId("namespace", namespaceId);
  return bucketV1(`__${namespaceId}`, unitId);
}

/** Refuses overlapping slots in one layer: a unit could then be in two exclusive experiments. */
export function checkLayerSlots(ranges: readonly BucketRange[]): void {
  const sorted = ranges
    .map((r, i) => {
      if (!(r[0] >= 0 && r[0] <= r[1] && r[1] <= 1)) throw new ValidationError(`ranges[${i}]`, `must satisfy 0 <= start <= end <= 1, got [${r[0]}, ${r[1]})`);
      return { r, i };
    })
    .sort((a, b) => a.r[0] - b.r[0]);
  for (let k = 1; k < sorted.length; k++) {
    const prev = sorted[k - 1]!;
    const cur = sorted[k]!;
    if (cur.r[0] < prev.r[1]) {
      throw new ValidationError("ranges", `slots ${prev.i} [${prev.r[0]}, ${prev.r[1]}) and ${cur.i} [${cur.r[0]}, ${cur.r[1]}) overlap in the layer`);
    }
  }
}

/**
 * Validates the configuration once and returns the assignment function for it — what the
 * router keeps per experiment on its hot path (pure, O(arms) per call, no I/O).
 */
export function createAssigner(config: AssignmentConfig): (unitId: string) => Assignment {
  checkId("seed", config.seed);
  requireList("arms", config.arms, 2, "arms");
  config.arms.forEach((a, i) => checkId(`arms[${i}].name`, a.name));
  const ranges = bucketRanges(
    config.arms.map((a) => a.weight),
    config.coverage ?? 1,
  );
  const names = config.arms.map((a) => a.name);
  if (new Set(names).size !== names.length) throw new ValidationError("arms", "arm names must be unique");
  const layer = config.layer;
  if (layer !== undefined) {
    checkId("layer.seed", layer.seed);
    checkLayerSlots([layer.range]);
  }
  const seed = config.seed;
  return (unitId: string): Assignment => {
    checkId("unitId", unitId);
    const bucket = (hashValueV2(seed, unitId) % 10000) / 10000;
    let lb: number | null = null;
    if (layer !== undefined) {
      lb = (hashValueV2(layer.seed, unitId) % 10000) / 10000;
      if (!inRange(lb, layer.range)) return { arm: null, armIndex: -1, bucket, layerBucket: lb, reason: "not_in_layer" };
    }
    const index = chooseArmIndex(bucket, ranges);
    if (index < 0) return { arm: null, armIndex: -1, bucket, layerBucket: lb, reason: "not_in_coverage" };
    return { arm: names[index]!, armIndex: index, bucket, layerBucket: lb, reason: "assigned" };
  };
}

/** The arm of one unit: layer check, then experiment bucket, then the arm ranges. */
export function assignArm(config: AssignmentConfig, unitId: string): Assignment {
  return createAssigner(config)(unitId);
}

/**
 * True when every unit arm `armIndex` holds under the old weights/coverage is still in that arm
 * under the new ones, i.e. the old range lies inside the new one. Holds for: raising coverage
 * with fixed weights (every arm); raising the last arm's weight at the expense of earlier arms
 * (the last arm); raising the first arm's weight at the expense of later arms (the first arm).
 */
export function rampKeepsUnits(
  oldWeights: readonly number[],
  newWeights: readonly number[],
  armIndex: number,
  oldCoverage = 1,
  newCoverage = 1,
): boolean {
  if (oldWeights.length !== newWeights.length) throw new ValidationError("newWeights", `has ${newWeights.length} arms, the experiment has ${oldWeights.length}`);
  const before = bucketRanges(oldWeights, oldCoverage)[armIndex];
  const after = bucketRanges(newWeights, newCoverage)[armIndex];
  if (before === undefined || after === undefined) throw new ValidationError("armIndex", `must be between 0 and ${oldWeights.length - 1}, got ${armIndex}`);
  if (before[1] <= before[0]) return true; // the arm held nobody
  return after[0] <= before[0] && before[1] <= after[1];
}
