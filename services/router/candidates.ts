// Candidate selection, apart from scoring: the candidate source (the request's list or a
// list stored in the features service) and business rules — exclusions and feature
// filters before scoring (they shrink the rows the model sees), boosts after scoring,
// per-category caps while the top-k is picked. Pure functions over already fetched values.

import { scalarOf, type Scalar } from "../../lib/values.js";
import type { BusinessRule, FeaturePredicate, RuleSet } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { PredicateOperator } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import type { Value } from "../../gen/mlmesh/types/v1/types_pb.js";

export { scalarOf };

/** A list of ids stored as a JSON array of strings or comma-separated text. */
export function parseIdList(v: Value | undefined): string[] {
  const s = scalarOf(v);
  if (typeof s !== "string") return [];
  const t = s.trim();
  if (t.startsWith("[")) {
    try {
      const arr = JSON.parse(t) as unknown;
      if (Array.isArray(arr)) return arr.map((x) => String(x)).filter((x) => x !== "");
    } catch {
      // Not JSON after all: treat as comma-separated.
    }
  }
  return t.split(",").map((x) => x.trim()).filter((x) => x !== "");
}

/** Candidate ids become values of the candidate entity key: integers when they look like ones. */
export function candidateKeyValue(id: string): Value {
  return /^-?\d{1,18}$/.test(id)
    ? ({ kind: { case: "int64Value", value: BigInt(id) } } as Value)
    : ({ kind: { case: "stringValue", value: id } } as Value);
}

function cmp(a: Scalar, b: Scalar): number | undefined {
  if (typeof a !== typeof b) return undefined;
  return a < b ? -1 : a > b ? 1 : 0;
}

export type Lookup = (ref: string) => Value | undefined;

function operandOf(p: FeaturePredicate, feature: Lookup, context: Readonly<Record<string, Value>>): Value | undefined {
  if (p.operand.case === "featureRef") return feature(p.operand.value);
  if (p.operand.case === "contextKey") return context[p.operand.value];
  return undefined;
}

export function describeValue(v: Value | undefined): string {
  const s = scalarOf(v);
  return s === undefined ? "null" : String(s);
}

/** Whether a predicate holds; a missing or NULL operand is false except for IS_NULL. */
export function predicateHolds(p: FeaturePredicate, feature: Lookup, context: Readonly<Record<string, Value>>): boolean {
  const left = scalarOf(operandOf(p, feature, context));
  if (p.operator === PredicateOperator.IS_NULL) return left === undefined;
  if (p.operator === PredicateOperator.IS_NOT_NULL) return left !== undefined;
  if (left === undefined) return false;
  if (p.operator === PredicateOperator.IN || p.operator === PredicateOperator.NOT_IN) {
    const hit = p.values.some((v) => {
      const s = scalarOf(v);
      return s !== undefined && cmp(left, s) === 0;
    });
    return p.operator === PredicateOperator.IN ? hit : !hit;
  }
  const right = scalarOf(p.valueContextKey ? context[p.valueContextKey] : p.value);
  if (right === undefined) return false;
  const c = cmp(left, right);
  if (c === undefined) return p.operator === PredicateOperator.NE;
  switch (p.operator) {
    case PredicateOperator.EQ:
      return c === 0;
    case PredicateOperator.NE:
      return c !== 0;
    case PredicateOperator.LT:
      return c < 0;
    case PredicateOperator.LE:
      return c <= 0;
    case PredicateOperator.GT:
      return c > 0;
    case PredicateOperator.GE:
      return c >= 0;
    default:
      return false;
  }
}

/** Why a predicate failed, e.g. "items:price 120 > context.max_price 100" (the negated operator). */
const NEGATED: Record<number, string> = {
  [PredicateOperator.EQ]: "!=",
  [PredicateOperator.NE]: "==",
  [PredicateOperator.LT]: ">=",
  [PredicateOperator.LE]: ">",
  [PredicateOperator.GT]: "<=",
  [PredicateOperator.GE]: "<",
  [PredicateOperator.IN]: "not in",
  [PredicateOperator.NOT_IN]: "in",
  [PredicateOperator.IS_NULL]: "is not null",
  [PredicateOperator.IS_NOT_NULL]: "is null",
};

function predicateText(p: FeaturePredicate, feature: Lookup, context: Readonly<Record<string, Value>>): string {
  const name = p.operand.case === "featureRef" ? p.operand.value : `context.${p.operand.value ?? ""}`;
  const op = NEGATED[p.operator] ?? "?";
  if (p.operator === PredicateOperator.IS_NULL || p.operator === PredicateOperator.IS_NOT_NULL) return `${name} ${op}`;
  const rhs = p.valueContextKey ? `context.${p.valueContextKey} ${describeValue(context[p.valueContextKey])}` : p.values.length ? `[${p.values.map(describeValue).join(", ")}]` : describeValue(p.value);
  return `${name} ${describeValue(operandOf(p, feature, context))} ${op} ${rhs}`;
}

/** Feature refs the rules read per candidate, and per user (exclusion lists). */
export function ruleRefs(rs: RuleSet | undefined): { candidate: string[]; user: string[] } {
  const candidate = new Set<string>();
  const user = new Set<string>();
  const preds = (ps: readonly FeaturePredicate[]) => ps.forEach((p) => p.operand.case === "featureRef" && candidate.add(p.operand.value));
  for (const r of rs?.rules ?? []) {
    if (r.rule.case === "filter") preds(r.rule.value.allOf);
    else if (r.rule.case === "boost") preds(r.rule.value.when);
    else if (r.rule.case === "categoryCap") candidate.add(r.rule.value.categoryFeatureRef);
    else if (r.rule.case === "exclusion" && r.rule.value.featureRef) user.add(r.rule.value.featureRef);
  }
  return { candidate: [...candidate], user: [...user] };
}

export interface Excluded {
  readonly id: string;
  readonly rule: string;
  readonly reason: string;
}

/** Exclusions by id (fixed, context list, user feature list): run before any feature fetch. */
export function applyExclusions(rs: RuleSet | undefined, ids: readonly string[], context: Readonly<Record<string, Value>>, user: Lookup): { kept: string[]; excluded: Excluded[] } {
  const excludedBy = new Map<string, string>();
  for (const r of rs?.rules ?? []) {
    if (r.rule.case !== "exclusion") continue;
    const e = r.rule.value;
    const ids2 = [...e.candidateIds, ...(e.contextKey ? parseIdList(context[e.contextKey]) : []), ...(e.featureRef ? parseIdList(user(e.featureRef)) : [])];
    for (const id of ids2) if (!excludedBy.has(id)) excludedBy.set(id, r.name);
  }
  const kept: string[] = [];
  const excluded: Excluded[] = [];
  for (const id of ids) {
    const rule = excludedBy.get(id);
    if (rule) excluded.push({ id, rule, reason: `${id} is on the exclusion list` });
    else kept.push(id);
  }
  return { kept, excluded };
}

/** Filters (all predicates must hold) on fetched candidate features; returns surviving indices. */
export function applyFilters(
  rs: RuleSet | undefined,
  ids: readonly string[],
  feature: (i: number) => Lookup,
  context: Readonly<Record<string, Value>>,
): { kept: number[]; excluded: Excluded[] } {
  const filters = (rs?.rules ?? []).filter((r): r is BusinessRule & { rule: { case: "filter" } } => r.rule.case === "filter");
  const kept: number[] = [];
  const excluded: Excluded[] = [];
  ids.forEach((id, i) => {
    const look = feature(i);
    for (const f of filters) {
      const failed = f.rule.value.allOf.find((p) => !predicateHolds(p, look, context));
      if (failed) {
        excluded.push({ id, rule: f.name, reason: predicateText(failed, look, context) });
        return;
      }
    }
    kept.push(i);
  });
  return { kept, excluded };
}

export interface Scored {
  readonly id: string;
  readonly index: number;
  score: number;
  readonly modelScore: number;
  readonly boosts: string[];
  category: string;
}

/** Boosts, in rule order, on the calibrated score. */
export function applyBoosts(rs: RuleSet | undefined, items: Scored[], feature: (i: number) => Lookup, context: Readonly<Record<string, Value>>): void {
  for (const r of rs?.rules ?? []) {
    if (r.rule.case !== "boost") continue;
    const b = r.rule.value;
    for (const it of items) {
      const look = feature(it.index);
      if (!b.when.every((p) => predicateHolds(p, look, context))) continue;
      if (b.effect.case === "multiply") it.score *= b.effect.value;
      else if (b.effect.case === "add") it.score += b.effect.value;
      it.boosts.push(r.name);
    }
  }
}

/** Sort by final score (ties by id for determinism) and pick k under the category caps. */
export function pickTop(rs: RuleSet | undefined, items: Scored[], k: number, feature: (i: number) => Lookup): { picked: Scored[]; skipped: Excluded[] } {
  items.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const caps = (rs?.rules ?? []).filter((r): r is BusinessRule & { rule: { case: "categoryCap" } } => r.rule.case === "categoryCap");
  const limit = k > 0 ? k : items.length;
  if (caps.length === 0) return { picked: items.slice(0, limit), skipped: [] };
  const counts = caps.map(() => new Map<string, number>());
  const picked: Scored[] = [];
  const skipped: Excluded[] = [];
  for (const it of items) {
    if (picked.length >= limit) break;
    let blocked: Excluded | undefined;
    const cats: string[] = [];
    caps.forEach((c, ci) => {
      const cat = describeValue(feature(it.index)(c.rule.value.categoryFeatureRef));
      cats.push(cat);
      const cap = c.rule.value.perCategory[cat] ?? c.rule.value.maxPerCategory;
      if (!blocked && cap > 0 && (counts[ci]!.get(cat) ?? 0) >= cap) blocked = { id: it.id, rule: c.name, reason: `category ${cat} already has ${cap}` };
    });
    if (blocked) {
      skipped.push(blocked);
      continue;
    }
    caps.forEach((_c, ci) => counts[ci]!.set(cats[ci]!, (counts[ci]!.get(cats[ci]!) ?? 0) + 1));
    it.category = cats[0] ?? "";
    picked.push(it);
  }
  return { picked, skipped };
}
