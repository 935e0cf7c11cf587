// Reference distributions of a version: which columns it has (from the feature binding or
// the graph inputs), validation of client-computed distributions, and binning of a raw
// sample with the drift library's quantile bins (lib/drift), so live windows are later
// binned exactly the same way. The score distribution comes from running the model itself.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as ort from "onnxruntime-node";
import {
  DistributionSchema,
  ElementType,
  ReferenceDistributionsSchema,
  type Distribution,
  type FeatureBinding,
  type ReferenceDistributions,
  type ReferenceInput,
  type ReferenceSample,
  type Signature,
} from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { buildCategoricalReference, buildNumericReference, DEFAULT_BINS } from "../../lib/drift/reference.js";
import { ValidationError } from "../../lib/errors.js";

const DEFAULT_MAX_CATEGORIES = 50;

/** Columns of each graph input, in order: bound features, or `input[i]` / `input`. */
export function inputColumns(signature: Signature, binding: FeatureBinding | undefined): Array<{ input: string; columns: string[] }> {
  if (binding && binding.inputs.length) {
    return signature.inputs.map((s) => ({ input: s.name, columns: binding.inputs.find((b) => b.inputName === s.name)?.features ?? [] }));
  }
  return signature.inputs.map((s) => {
    const dims = s.shape?.dims ?? [];
    const last = dims.length >= 2 ? dims[dims.length - 1]! : undefined;
    const k = last?.value.case === "size" ? Number(last.value.value) : 1;
    return { input: s.name, columns: k > 1 ? Array.from({ length: k }, (_, i) => `${s.name}[${i}]`) : [s.name] };
  });
}

function checkDistribution(d: Distribution | undefined, field: string): void {
  if (!d) throw new ValidationError(field, "is required");
  if (d.count < 0n || d.missingCount < 0n) throw new ValidationError(field, "count and missing_count must be >= 0");
  if (d.kind.case === "numeric") {
    const h = d.kind.value;
    const e = h.binEdges;
    if (e.length < 2) throw new ValidationError(`${field}.numeric.bin_edges`, "needs at least 2 edges");
    for (let i = 1; i < e.length; i++) {
      // Strictly increasing, except the closing [max, max] bin the drift library gives a
      // column with few distinct values.
      const ok = e[i]! > e[i - 1]! || (i === e.length - 1 && e[i] === e[i - 1]);
      if (!Number.isFinite(e[i]!) || !Number.isFinite(e[0]!) || !ok) throw new ValidationError(`${field}.numeric.bin_edges`, `must be finite and increasing (edge ${i} is ${e[i]} after ${e[i - 1]})`);
    }
    if (h.binCounts.length !== e.length - 1) throw new ValidationError(`${field}.numeric.bin_counts`, `${e.length} edges need ${e.length - 1} counts, got ${h.binCounts.length}`);
    const sum = h.binCounts.reduce((s, c) => s + c, 0n);
    if (h.binCounts.some((c) => c < 0n) || sum !== d.count) throw new ValidationError(`${field}.numeric.bin_counts`, `must be >= 0 and sum to count ${d.count}, sum is ${sum}`);
  } else if (d.kind.case === "categorical") {
    const c = d.kind.value;
    const sum = c.values.reduce((s, v) => s + v.count, 0n) + c.otherCount;
    if (c.values.some((v) => v.count < 0n) || c.otherCount < 0n || sum !== d.count) throw new ValidationError(`${field}.categorical`, `counts must be >= 0 and sum to count ${d.count}, sum is ${sum}`);
  } else {
    throw new ValidationError(field, "set numeric or categorical");
  }
}

/** Validates precomputed distributions against the version's columns. */
export function validateDistributions(d: ReferenceDistributions, signature: Signature, binding: FeatureBinding | undefined, field: string): ReferenceDistributions {
  const known = new Set(inputColumns(signature, binding).flatMap((i) => i.columns));
  const seen = new Set<string>();
  if (d.sampleSize <= 0n) throw new ValidationError(`${field}.sample_size`, "must be > 0");
  d.features.forEach((f, i) => {
    if (!known.has(f.column)) throw new ValidationError(`${field}.features[${i}].column`, `${JSON.stringify(f.column)} is not a column of this version; expected one of ${[...known].join(", ")}`);
    if (seen.has(f.column)) throw new ValidationError(`${field}.features[${i}].column`, `${JSON.stringify(f.column)} appears twice`);
    seen.add(f.column);
    checkDistribution(f.distribution, `${field}.features[${i}].distribution`);
  });
  if (d.score) checkDistribution(d.score, `${field}.score`);
  return create(ReferenceDistributionsSchema, { ...d, captureTime: d.captureTime ?? timestampFromMs(Date.now()) });
}

function numericDistribution(values: readonly number[], bins: number): Distribution {
  const ref = buildNumericReference(values, { bins });
  const finite = values.filter((v) => Number.isFinite(v));
  const mean = finite.reduce((s, v) => s + v, 0) / finite.length;
  const variance = finite.reduce((s, v) => s + (v - mean) ** 2, 0) / finite.length;
  return create(DistributionSchema, {
    count: BigInt(ref.n),
    missingCount: BigInt(ref.missing),
    kind: {
      case: "numeric",
      value: { binEdges: ref.edges, binCounts: ref.counts.map(BigInt), min: ref.edges[0]!, max: ref.edges[ref.edges.length - 1]!, mean, stddev: Math.sqrt(variance) },
    },
  });
}

function categoricalDistribution(values: readonly string[], maxCategories: number): Distribution {
  const ref = buildCategoricalReference(values.map((v) => (v === "" ? null : v)));
  const kept = ref.categories.slice(0, maxCategories);
  const other = ref.counts.slice(maxCategories).reduce((s, c) => s + c, 0);
  return create(DistributionSchema, {
    count: BigInt(ref.n),
    missingCount: BigInt(ref.missing),
    kind: { case: "categorical", value: { values: kept.map((v, i) => ({ value: v, count: BigInt(ref.counts[i]!) })), otherCount: BigInt(other) } },
  });
}

/**
 * Bins a raw sample (every column of the version required) and scores it with the model at
 * `modelPath` for the score distribution when every input is a numeric tensor.
 */
export async function distributionsFromSample(sample: ReferenceSample, signature: Signature, binding: FeatureBinding | undefined, modelPath: string, field: string): Promise<ReferenceDistributions> {
  const bins = sample.binCount || DEFAULT_BINS;
  const maxCategories = sample.maxCategories || DEFAULT_MAX_CATEGORIES;
  if (bins < 1 || bins > 1000) throw new ValidationError(`${field}.bin_count`, "must be in [1, 1000]");
  if (maxCategories < 1) throw new ValidationError(`${field}.max_categories`, "must be >= 1");
  const byName = new Map(sample.columns.map((c) => [c.name, c]));
  const layout = inputColumns(signature, binding);
  const columns = layout.flatMap((l) => l.columns);
  let rows = -1;
  for (const name of columns) {
    const c = byName.get(name);
    if (!c || c.values.case === undefined) throw new ValidationError(`${field}.columns`, `column ${JSON.stringify(name)} is missing; the sample needs ${columns.join(", ")}`);
    const n = c.values.value.values.length;
    if (rows === -1) rows = n;
    if (n !== rows) throw new ValidationError(`${field}.columns`, `column ${JSON.stringify(name)} has ${n} values, others have ${rows}`);
  }
  if (rows <= 0) throw new ValidationError(`${field}.columns`, "the sample is empty");
  const features = columns.map((name) => {
    const c = byName.get(name)!;
    const distribution = c.values.case === "numeric" ? numericDistribution(c.values.value.values, bins) : categoricalDistribution((c.values.value as { values: string[] }).values, maxCategories);
    return { column: name, distribution };
  });
  const scored = await scoreSample(modelPath, signature, layout, byName, rows);
  return create(ReferenceDistributionsSchema, {
    sampleSize: BigInt(rows),
    features,
    score: scored ? numericDistribution(scored.values, bins) : undefined,
    scoreSource: scored?.source ?? "",
    captureTime: timestampFromMs(Date.now()),
  });
}

async function scoreSample(
  modelPath: string,
  signature: Signature,
  layout: Array<{ input: string; columns: string[] }>,
  byName: Map<string, ReferenceSample["columns"][number]>,
  rows: number,
): Promise<{ values: number[]; source: string } | undefined> {
  const types: Partial<Record<ElementType, "float32" | "float64">> = { [ElementType.FLOAT]: "float32", [ElementType.DOUBLE]: "float64" };
  const feeds: Record<string, ort.Tensor> = {};
  for (const spec of signature.inputs) {
    const type = types[spec.elementType];
    const cols = layout.find((l) => l.input === spec.name)?.columns ?? [];
    if (!type || cols.some((c) => byName.get(c)?.values.case !== "numeric")) return undefined;
    const data = type === "float32" ? new Float32Array(rows * cols.length) : new Float64Array(rows * cols.length);
    cols.forEach((c, j) => {
      const values = (byName.get(c)!.values.value as { values: number[] }).values;
      for (let r = 0; r < rows; r++) data[r * cols.length + j] = values[r]!;
    });
    feeds[spec.name] = new ort.Tensor(type, data, (spec.shape?.dims.length ?? 2) === 1 ? [rows] : [rows, cols.length]);
  }
  const out = signature.outputs[0];
  if (!out) return undefined;
  const session = await ort.InferenceSession.create(modelPath);
  try {
    const result = (await session.run(feeds))[out.name];
    if (!result || !(result.data instanceof Float32Array || result.data instanceof Float64Array)) return undefined;
    const width = result.dims.length >= 2 ? Number(result.dims[result.dims.length - 1]) : 1;
    // A two-column output is [P(negative), P(positive)]: the positive class is the score.
    const col = width === 2 ? 1 : 0;
    const values = Array.from({ length: rows }, (_, r) => Number(result.data[r * width + col]));
    return { values, source: width > 1 ? `${out.name}[${col}]` : out.name };
  } catch {
    return undefined;
  } finally {
    await session.release().catch(() => undefined);
  }
}

/** Distributions from either kind of ReferenceInput. */
export async function resolveReference(input: ReferenceInput, signature: Signature, binding: FeatureBinding | undefined, modelPath: string, field: string): Promise<ReferenceDistributions> {
  switch (input.source.case) {
    case "distributions":
      return validateDistributions(input.source.value, signature, binding, `${field}.distributions`);
    case "sample":
      return distributionsFromSample(input.source.value, signature, binding, modelPath, `${field}.sample`);
    default:
      throw new ValidationError(field, "set distributions or sample");
  }
}
