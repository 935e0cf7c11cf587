// Promotion policy: validating rules, their canonical text (what the CLI accepts and what
// results show), and evaluating every rule for a candidate against the production version.
// Every rule is evaluated, not just up to the first failure, so a refusal lists them all.

import { create } from "@bufbuild/protobuf";
import {
  CardSection,
  Comparator,
  PromotionRuleResultSchema,
  PromotionRuleSchema,
  type ModelVersion,
  type PromotionRule,
  type PromotionRuleResult,
  type TensorSpec,
} from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { ValidationError } from "../../lib/errors.js";

const COMPARATOR_TEXT: Record<number, string> = {
  [Comparator.GREATER_THAN]: ">",
  [Comparator.GREATER_THAN_OR_EQUAL]: ">=",
  [Comparator.LESS_THAN]: "<",
  [Comparator.LESS_THAN_OR_EQUAL]: "<=",
};

/** Card sections by the names rules use (the ModelCard field names). */
export const CARD_SECTION_NAMES: Record<number, "intended_use" | "training_data" | "evaluation" | "limitations" | "ethical_considerations"> = {
  [CardSection.INTENDED_USE]: "intended_use",
  [CardSection.TRAINING_DATA]: "training_data",
  [CardSection.EVALUATION]: "evaluation",
  [CardSection.LIMITATIONS]: "limitations",
  [CardSection.ETHICAL_CONSIDERATIONS]: "ethical_considerations",
};

export const LINEAGE_FIELDS = ["params", "metrics", "datasets", "code_version", "code_repository", "training_start_time", "training_end_time", "creator"];
const METRIC_NAME = /^[A-Za-z0-9_.:/-]{1,128}$/;

function num(v: number): string {
  // Sums like 0.8315 - 0.005 print as 0.8265, not 0.8265000000000001.
  return String(Number(v.toPrecision(12)));
}

function compare(actual: number, cmp: Comparator, required: number): boolean {
  switch (cmp) {
    case Comparator.GREATER_THAN:
      return actual > required;
    case Comparator.GREATER_THAN_OR_EQUAL:
      return actual >= required;
    case Comparator.LESS_THAN:
      return actual < required;
    case Comparator.LESS_THAN_OR_EQUAL:
      return actual <= required;
    default:
      return false;
  }
}

/** The canonical text of a rule, e.g. "auc >= production.auc - 0.005". */
export function describeRule(rule: PromotionRule): string {
  const k = rule.kind;
  switch (k.case) {
    case "metricThreshold":
      return `${k.value.metric} ${COMPARATOR_TEXT[k.value.comparator] ?? "?"} ${num(k.value.value)}`;
    case "relativeToProduction": {
      const d = k.value.delta;
      const delta = d === 0 ? "" : d < 0 ? ` - ${num(-d)}` : ` + ${num(d)}`;
      return `${k.value.metric} ${COMPARATOR_TEXT[k.value.comparator] ?? "?"} production.${k.value.metric}${delta}${k.value.failWithoutBaseline ? " !" : ""}`;
    }
    case "requiredCardSections":
      return `card:${k.value.sections.map((s) => CARD_SECTION_NAMES[s] ?? "?").join(",")}`;
    case "signatureCompatible": {
      const extra = [k.value.requireSameOutputs ? "outputs" : "", k.value.requireSameFeatureBinding ? "features" : ""].filter(Boolean);
      return `signature:compatible${extra.map((e) => `+${e}`).join("")}`;
    }
    case "requiredLineageFields":
      return `lineage:${k.value.fields.join(",")}`;
    default:
      return "";
  }
}

/** Validates rules for SetPromotionPolicy and returns them with canonical descriptions. */
export function validateRules(rules: readonly PromotionRule[], field = "policy.rules"): PromotionRule[] {
  if (rules.length > 100) throw new ValidationError(field, `at most 100 rules, got ${rules.length}`);
  return rules.map((r, i) => {
    const f = `${field}[${i}]`;
    const k = r.kind;
    switch (k.case) {
      case "metricThreshold":
      case "relativeToProduction": {
        if (!METRIC_NAME.test(k.value.metric)) throw new ValidationError(`${f}.metric`, "must be a metric name (letters, digits, _ . : / -)");
        if (!COMPARATOR_TEXT[k.value.comparator]) throw new ValidationError(`${f}.comparator`, "must be one of >, >=, <, <= (not UNSPECIFIED)");
        const v = k.case === "metricThreshold" ? k.value.value : k.value.delta;
        if (!Number.isFinite(v)) throw new ValidationError(`${f}.${k.case === "metricThreshold" ? "value" : "delta"}`, `must be a finite number, got ${v}`);
        break;
      }
      case "requiredCardSections":
        if (k.value.sections.length === 0) throw new ValidationError(`${f}.sections`, "name at least one card section");
        k.value.sections.forEach((s, j) => {
          if (!CARD_SECTION_NAMES[s]) throw new ValidationError(`${f}.sections[${j}]`, "must be a card section (not UNSPECIFIED)");
        });
        break;
      case "signatureCompatible":
        break;
      case "requiredLineageFields":
        if (k.value.fields.length === 0) throw new ValidationError(`${f}.fields`, "name at least one lineage field");
        k.value.fields.forEach((name, j) => {
          const ok = LINEAGE_FIELDS.includes(name) || /^(params|metrics)\.[^\s]{1,128}$/.test(name);
          if (!ok) throw new ValidationError(`${f}.fields[${j}]`, `unknown lineage field ${JSON.stringify(name)}; use one of ${LINEAGE_FIELDS.join(", ")}, params.<key> or metrics.<key>`);
        });
        break;
      default:
        throw new ValidationError(f, "has no kind: set one of metric_threshold, relative_to_production, required_card_sections, signature_compatible, required_lineage_fields");
    }
    const out = create(PromotionRuleSchema, { kind: r.kind });
    out.description = describeRule(out);
    return out;
  });
}

/**
 * Parses the CLI's rule syntax (also the canonical descriptions):
 *   auc>=0.80                 metric threshold (>, >=, <, <=)
 *   auc>=production.auc-0.005 relative to the production version; a trailing `!` fails
 *                             when there is no production baseline
 *   card:intended_use,evaluation   required model card sections
 *   signature | signature:compatible[+outputs][+features]
 *   lineage:code_version,datasets,metrics.auc   required lineage fields
 */
export function parseRuleText(text: string): PromotionRule {
  const t = text.replace(/\s+/g, "");
  const bad = (why: string) => new ValidationError("rule", `${JSON.stringify(text)}: ${why}`);
  if (t.startsWith("card:")) {
    const names = t.slice(5).split(",").filter(Boolean);
    const byName = Object.fromEntries(Object.entries(CARD_SECTION_NAMES).map(([n, s]) => [s, Number(n) as CardSection]));
    const sections = names.map((n) => {
      const s = byName[n];
      if (s === undefined) throw bad(`unknown card section ${JSON.stringify(n)}; use ${Object.values(CARD_SECTION_NAMES).join(", ")}`);
      return s;
    });
    if (!sections.length) throw bad("name at least one card section");
    return create(PromotionRuleSchema, { kind: { case: "requiredCardSections", value: { sections } } });
  }
  if (t === "signature" || t.startsWith("signature:")) {
    const parts = t === "signature" ? ["compatible"] : t.slice(10).split("+");
    if (parts[0] !== "compatible" || parts.slice(1).some((p) => p !== "outputs" && p !== "features")) throw bad("use signature, signature:compatible, +outputs, +features");
    return create(PromotionRuleSchema, {
      kind: { case: "signatureCompatible", value: { requireSameOutputs: parts.includes("outputs"), requireSameFeatureBinding: parts.includes("features") } },
    });
  }
  if (t.startsWith("lineage:")) {
    const fields = t.slice(8).split(",").filter(Boolean);
    return validateRules([create(PromotionRuleSchema, { kind: { case: "requiredLineageFields", value: { fields } } })], "rule")[0]!;
  }
  const m = /^([A-Za-z0-9_.:/-]+?)(>=|<=|>|<)(.+)$/.exec(t);
  if (!m) throw bad("expected METRIC>=VALUE, METRIC>=production.METRIC-DELTA, card:SECTION,..., signature or lineage:FIELD,...");
  const [, metric, op, rhs] = m as unknown as [string, string, string, string];
  const comparator = Number(Object.entries(COMPARATOR_TEXT).find(([, s]) => s === op)![0]) as Comparator;
  const rel = /^production\.([A-Za-z0-9_.:/-]+?)(?:([+-])([0-9.eE+-]+))?(!)?$/.exec(rhs);
  if (rel) {
    if (rel[1] !== metric) throw bad(`compare ${metric} with production.${metric}, not production.${rel[1]}`);
    const delta = rel[3] === undefined ? 0 : Number(rel[3]) * (rel[2] === "-" ? -1 : 1);
    if (!Number.isFinite(delta)) throw bad(`${rel[3]} is not a number`);
    return create(PromotionRuleSchema, { kind: { case: "relativeToProduction", value: { metric, comparator, delta, failWithoutBaseline: rel[4] === "!" } } });
  }
  const value = Number(rhs);
  if (rhs === "" || !Number.isFinite(value)) throw bad(`${JSON.stringify(rhs)} is not a number`);
  return create(PromotionRuleSchema, { kind: { case: "metricThreshold", value: { metric, comparator, value } } });
}

function result(rule: PromotionRule, passed: boolean, actual: string, required: string, message: string, nums: { actual?: number; required?: number } = {}): PromotionRuleResult {
  return create(PromotionRuleResultSchema, {
    rule,
    passed,
    actual,
    required,
    message,
    actualValue: nums.actual,
    requiredValue: nums.required,
  });
}

function specText(s: TensorSpec): string {
  const dims = s.shape ? `[${s.shape.dims.map((d) => (d.value.case === "size" ? String(d.value.value) : d.value.case === "symbol" ? d.value.value : "?")).join(", ")}]` : "[unknown rank]";
  return `${s.typeDescription || `kind ${s.kind} type ${s.elementType}`} ${dims}`;
}

/** Differences that make `candidate` specs unable to replace `baseline` specs. */
export function specMismatches(what: "input" | "output", candidate: readonly TensorSpec[], baseline: readonly TensorSpec[]): string[] {
  const out: string[] = [];
  const byName = new Map(candidate.map((s) => [s.name, s]));
  for (const b of baseline) {
    const c = byName.get(b.name);
    if (!c) {
      out.push(`${what} '${b.name}' is missing`);
      continue;
    }
    if (c.kind !== b.kind || c.elementType !== b.elementType) {
      out.push(`${what} '${b.name}' is ${specText(c)}, production has ${specText(b)}`);
      continue;
    }
    const cd = c.shape?.dims;
    const bd = b.shape?.dims;
    if (!cd || !bd) continue;
    const dimsDiffer =
      cd.length !== bd.length ||
      cd.some((d, i) => {
        const e = bd[i]!;
        // A symbolic dim matches any symbolic dim; fixed dims must be equal.
        if (d.value.case === "size" || e.value.case === "size") return !(d.value.case === "size" && e.value.case === "size" && d.value.value === e.value.value);
        return false;
      });
    if (dimsDiffer) out.push(`${what} '${b.name}' is ${specText(c)}, production has ${specText(b)}`);
  }
  for (const c of candidate) if (!baseline.some((b) => b.name === c.name)) out.push(`${what} '${c.name}' is not in production`);
  return out;
}

function lineageFieldMissing(v: ModelVersion, field: string): string | undefined {
  const l = v.lineage;
  if (field.startsWith("params.")) return l?.params[field.slice(7)] ? undefined : field;
  if (field.startsWith("metrics.")) return l && field.slice(8) in l.metrics ? undefined : field;
  switch (field) {
    case "params":
      return l && Object.keys(l.params).length ? undefined : field;
    case "metrics":
      return l && Object.keys(l.metrics).length ? undefined : field;
    case "datasets":
      if (!l || l.datasets.length === 0) return field;
      return l.datasets.every((d) => d.revision.case !== undefined && d.revision.value !== "") ? undefined : "datasets (a dataset without version or digest)";
    case "code_version":
      return l?.codeVersion ? undefined : field;
    case "code_repository":
      return l?.codeRepository ? undefined : field;
    case "training_start_time":
      return l?.trainingStartTime ? undefined : field;
    case "training_end_time":
      return l?.trainingEndTime ? undefined : field;
    case "creator":
      return l?.creator ? undefined : field;
    default:
      return field;
  }
}

/** Evaluates every rule, in policy order, for `candidate` against `production` (if any). */
export function evaluatePolicy(rules: readonly PromotionRule[], candidate: ModelVersion, production: ModelVersion | undefined): PromotionRuleResult[] {
  const metrics = candidate.lineage?.metrics ?? {};
  return rules.map((rule) => {
    const k = rule.kind;
    switch (k.case) {
      case "metricThreshold": {
        const op = COMPARATOR_TEXT[k.value.comparator]!;
        const required = `${op} ${num(k.value.value)}`;
        const a = metrics[k.value.metric];
        if (a === undefined) return result(rule, false, "missing", required, `metric ${k.value.metric} is not in the version's lineage; add it (--metric ${k.value.metric}=VALUE)`, { required: k.value.value });
        const ok = compare(a, k.value.comparator, k.value.value);
        return result(rule, ok, num(a), required, ok ? `${k.value.metric} ${num(a)} ${op} ${num(k.value.value)}` : `${k.value.metric} is ${num(a)}, needs ${required}`, { actual: a, required: k.value.value });
      }
      case "relativeToProduction": {
        const op = COMPARATOR_TEXT[k.value.comparator]!;
        const a = metrics[k.value.metric];
        const base = production?.lineage?.metrics[k.value.metric];
        if (!production || base === undefined) {
          const why = production ? `production v${production.version} has no ${k.value.metric}` : "no production version";
          const ok = !k.value.failWithoutBaseline;
          return result(rule, ok, a === undefined ? "missing" : num(a), `no baseline (${why})`, ok ? `passes without a baseline (${why})` : `needs a production baseline, but there is ${why}`, a === undefined ? {} : { actual: a });
        }
        const need = base + k.value.delta;
        const d = k.value.delta;
        const required = `${op} ${num(need)} (production v${production.version} ${k.value.metric} ${num(base)}${d === 0 ? "" : d < 0 ? ` - ${num(-d)}` : ` + ${num(d)}`})`;
        if (a === undefined) return result(rule, false, "missing", required, `metric ${k.value.metric} is not in the version's lineage`, { required: need });
        const ok = compare(a, k.value.comparator, need);
        return result(rule, ok, num(a), required, ok ? `${k.value.metric} ${num(a)} ${op} ${num(need)}` : `${k.value.metric} is ${num(a)}, needs ${required}`, { actual: a, required: need });
      }
      case "requiredCardSections": {
        const names = k.value.sections.map((s) => CARD_SECTION_NAMES[s]!);
        const missing = names.filter((n) => {
          const key = n.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()) as "intendedUse";
          return !(candidate.card?.[key] ?? "").trim();
        });
        const ok = missing.length === 0;
        return result(rule, ok, ok ? "present" : `missing: ${missing.join(", ")}`, `non-empty ${names.join(", ")}`, ok ? "card sections present" : `fill in the model card section(s) ${missing.join(", ")}`);
      }
      case "signatureCompatible": {
        if (!production) return result(rule, true, "no production version", "same inputs as production", "passes: no production version to compare with");
        const problems = specMismatches("input", candidate.signature?.inputs ?? [], production.signature?.inputs ?? []);
        if (k.value.requireSameOutputs) problems.push(...specMismatches("output", candidate.signature?.outputs ?? [], production.signature?.outputs ?? []));
        if (k.value.requireSameFeatureBinding) {
          const norm = (v: ModelVersion) => JSON.stringify({ i: [...(v.featureBinding?.inputs ?? [])].map((b) => [b.inputName, b.features]).sort(), e: v.featureBinding?.entityKeys ?? [] });
          if (norm(candidate) !== norm(production)) problems.push("feature binding differs from production's");
        }
        const ok = problems.length === 0;
        const required = `compatible with production v${production.version}`;
        return result(rule, ok, ok ? "compatible" : problems.join("; "), required, ok ? `signature compatible with production v${production.version}` : `signature not compatible with production v${production.version}: ${problems.join("; ")}`);
      }
      case "requiredLineageFields": {
        const missing = k.value.fields.map((f) => lineageFieldMissing(candidate, f)).filter((m): m is string => m !== undefined);
        const ok = missing.length === 0;
        return result(rule, ok, ok ? "present" : `missing: ${missing.join(", ")}`, `non-empty ${k.value.fields.join(", ")}`, ok ? "lineage fields present" : `record the lineage field(s) ${missing.join(", ")}`);
      }
      default:
        return result(rule, false, "", "", "rule has no kind");
    }
  });
}
