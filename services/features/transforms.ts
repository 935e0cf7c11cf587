// On-demand transforms: pure functions registered by name and computed at read time. The
// same registered function serves online reads and every row of a historical read, so a
// model trained on historical values sees the same computation when it serves.

import { createHash } from "node:crypto";
import { ValidationError } from "../../lib/errors.js";
import type { Scalar, ValueKind } from "./types.js";

export type ParamJsonType = "number" | "string" | "boolean" | "number[]" | "string[]";

export interface TransformArgumentSpec {
  readonly name: string;
  /** Empty: any type. */
  readonly acceptedTypes: readonly ValueKind[];
  /** The function handles a NULL input itself; otherwise a missing input's status propagates. */
  readonly acceptsNull: boolean;
  readonly description: string;
}

export interface TransformParameterSpec {
  readonly name: string;
  readonly jsonType: ParamJsonType;
  readonly required: boolean;
  readonly defaultValue?: unknown;
  readonly description: string;
}

export interface TransformSpec {
  readonly name: string;
  readonly description: string;
  readonly arguments: readonly TransformArgumentSpec[];
  readonly variadic: boolean;
  readonly parameters: readonly TransformParameterSpec[];
  /** Undefined: the type of the first argument. */
  readonly outputType?: ValueKind;
  /** Extra checks on the parameters at apply time; throw a message to refuse. */
  readonly checkParams?: (params: Readonly<Record<string, unknown>>) => string | undefined;
  /** Must be pure: same inputs, same output; null means "no value" (status NULL). */
  readonly fn: (args: readonly Scalar[], params: Readonly<Record<string, unknown>>) => Scalar;
}

export interface RegisteredTransform extends TransformSpec {
  readonly builtin: boolean;
  readonly sourceSha256: string;
}

const NUMERIC: readonly ValueKind[] = ["float32", "float64", "int64"];

function num(v: Scalar): number {
  return typeof v === "bigint" ? Number(v) : (v as number);
}

export const BUILTIN_TRANSFORMS: readonly TransformSpec[] = [
  {
    name: "ratio",
    description: "numerator / denominator as float64; NULL when the denominator is 0",
    arguments: [
      { name: "numerator", acceptedTypes: NUMERIC, acceptsNull: false, description: "" },
      { name: "denominator", acceptedTypes: NUMERIC, acceptsNull: false, description: "" },
    ],
    variadic: false,
    parameters: [],
    outputType: "float64",
    fn: ([a, b]) => {
      const d = num(b!);
      return d === 0 ? null : num(a!) / d;
    },
  },
  {
    name: "log1p",
    description: "ln(1 + x) as float64; NULL for x <= -1",
    arguments: [{ name: "x", acceptedTypes: NUMERIC, acceptsNull: false, description: "" }],
    variadic: false,
    parameters: [],
    outputType: "float64",
    fn: ([x]) => {
      const v = num(x!);
      return v <= -1 ? null : Math.log1p(v);
    },
  },
  {
    name: "bucketize",
    description: "index of the bucket x falls in: the number of boundaries <= x (int64, 0..len(boundaries))",
    arguments: [{ name: "x", acceptedTypes: NUMERIC, acceptsNull: false, description: "" }],
    variadic: false,
    parameters: [{ name: "boundaries", jsonType: "number[]", required: true, description: "strictly increasing bucket boundaries" }],
    outputType: "int64",
    checkParams: (p) => {
      const b = p.boundaries as number[];
      if (b.length === 0) return "boundaries: at least one boundary";
      for (let i = 1; i < b.length; i++) if (!(b[i]! > b[i - 1]!)) return "boundaries: must be strictly increasing";
      return undefined;
    },
    fn: ([x], p) => {
      const v = num(x!);
      const b = p.boundaries as number[];
      // Binary search for the first boundary > v.
      let lo = 0;
      let hi = b.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (b[mid]! <= v) lo = mid + 1;
        else hi = mid;
      }
      return BigInt(lo);
    },
  },
];

function matchesJsonType(v: unknown, t: ParamJsonType): boolean {
  switch (t) {
    case "number":
      return typeof v === "number" && Number.isFinite(v);
    case "string":
      return typeof v === "string";
    case "boolean":
      return typeof v === "boolean";
    case "number[]":
      return Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isFinite(x));
    case "string[]":
      return Array.isArray(v) && v.every((x) => typeof x === "string");
  }
}

/** The transforms this service knows: the built-ins plus user-defined ones given at start. */
export class TransformRegistry {
  private readonly byName = new Map<string, RegisteredTransform>();

  constructor(userDefined: readonly TransformSpec[] = []) {
    for (const t of BUILTIN_TRANSFORMS) this.add(t, true);
    for (const t of userDefined) this.add(t, false);
  }

  private add(spec: TransformSpec, builtin: boolean): void {
    if (!/^[a-z][a-z0-9_]{0,62}$/.test(spec.name)) throw new Error(`transform name ${JSON.stringify(spec.name)} is not a valid name`);
    if (this.byName.has(spec.name)) throw new Error(`transform ${JSON.stringify(spec.name)} is registered twice`);
    // The hash of the source makes a change of transform code between training and serving visible.
    const sourceSha256 = createHash("sha256").update(spec.fn.toString()).digest("hex");
    this.byName.set(spec.name, Object.freeze({ ...spec, builtin, sourceSha256 }));
  }

  get(name: string): RegisteredTransform | undefined {
    return this.byName.get(name);
  }

  list(): RegisteredTransform[] {
    return [...this.byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /**
   * Check a use of transform `name` with inputs of `argTypes` and `params` (at apply time).
   * Returns its output type and the parameters with defaults filled in.
   */
  checkUse(
    name: string,
    argTypes: readonly ValueKind[],
    params: Readonly<Record<string, unknown>>,
    field: string,
  ): { outputType: ValueKind; params: Record<string, unknown> } {
    const t = this.byName.get(name);
    if (!t) {
      throw new ValidationError(`${field}.transform`, `unknown transform ${JSON.stringify(name)}; known: ${[...this.byName.keys()].sort().join(", ")}`);
    }
    const n = t.arguments.length;
    if (t.variadic ? argTypes.length < n : argTypes.length !== n) {
      throw new ValidationError(`${field}.inputs`, `${name} takes ${t.variadic ? "at least " : ""}${n} input(s) (${t.arguments.map((a) => a.name).join(", ")}), got ${argTypes.length}`);
    }
    argTypes.forEach((type, i) => {
      const spec = t.arguments[Math.min(i, n - 1)]!;
      if (spec.acceptedTypes.length > 0 && !spec.acceptedTypes.includes(type)) {
        throw new ValidationError(`${field}.inputs[${i}]`, `${name} argument ${spec.name} accepts ${spec.acceptedTypes.join("/")}, got ${type}`);
      }
    });
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(params)) {
      if (!t.parameters.some((p) => p.name === key)) {
        throw new ValidationError(`${field}.params.${key}`, `${name} has no parameter ${key}${t.parameters.length ? `; known: ${t.parameters.map((p) => p.name).join(", ")}` : ""}`);
      }
    }
    for (const p of t.parameters) {
      const v = params[p.name];
      if (v === undefined || v === null) {
        if (p.required) throw new ValidationError(`${field}.params.${p.name}`, `is required by ${name} (${p.jsonType})`);
        if (p.defaultValue !== undefined) out[p.name] = p.defaultValue;
        continue;
      }
      if (!matchesJsonType(v, p.jsonType)) throw new ValidationError(`${field}.params.${p.name}`, `expected ${p.jsonType}`);
      out[p.name] = v;
    }
    const problem = t.checkParams?.(out);
    if (problem) throw new ValidationError(`${field}.params`, problem);
    return { outputType: t.outputType ?? argTypes[0] ?? "float64", params: out };
  }
}
