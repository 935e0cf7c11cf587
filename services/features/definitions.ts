// Validation of view and feature-set definitions, and the diff that decides whether a
// re-apply is a no-op, a compatible change or a breaking one. A ref must keep meaning the
// same computation for as long as it exists, or training data and serving would diverge.

import { NotFoundError, PreconditionError, ValidationError } from "../../lib/errors.js";
import { parseRef, validateLabels, validateName, validateText } from "./names.js";
import type { TransformRegistry } from "./transforms.js";
import type { FeatureDef, FeatureSetDef, OnDemandDef, ValueKind, ViewDef } from "./types.js";

/** A view as a caller sends it: on-demand output types may be left for the transform to say. */
export type ViewInput = Omit<ViewDef, "onDemand"> & {
  readonly onDemand: ReadonlyArray<Omit<OnDemandDef, "type"> & { readonly type: ValueKind | undefined }>;
};

const MAX_FEATURES = 1000;

export function formatDuration(ms: number): string {
  if (ms === 0) return "none";
  const units: Array<[string, number]> = [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]];
  for (const [u, size] of units) if (ms % size === 0) return `${ms / size}${u}`;
  return `${ms}ms`;
}

/**
 * Validate the views of one apply call together (an on-demand input may refer to a view of
 * the same call). `stored` finds views already applied. Returns each view in canonical
 * form: features of a stored view keep their positions, new ones are appended.
 */
export function validateViews(
  inputs: readonly ViewInput[],
  stored: (name: string) => ViewDef | undefined,
  transforms: TransformRegistry,
): ViewDef[] {
  const seen = new Set<string>();
  inputs.forEach((v, i) => {
    validateName(v.name, `views[${i}].name`);
    if (seen.has(v.name)) throw new ValidationError(`views[${i}].name`, `${v.name} appears twice in this call`);
    seen.add(v.name);
  });
  // Stored features of every view visible to this call, for on-demand inputs.
  const inCall = new Map(inputs.map((v) => [v.name, v]));
  const storedFeature = (view: string, feature: string): FeatureDef | undefined =>
    (inCall.get(view) ?? stored(view))?.features.find((f) => f.name === feature);

  return inputs.map((v, i) => {
    const at = `views[${i}]`;
    const names = new Set<string>();
    const entities = v.entities.map((e, j) => {
      validateName(e.name, `${at}.entities[${j}].name`);
      if (names.has(e.name)) throw new ValidationError(`${at}.entities[${j}].name`, `${e.name} appears twice`);
      names.add(e.name);
      return { name: e.name, type: e.type, description: validateText(e.description, `${at}.entities[${j}].description`, 4096) };
    });
    if (v.features.length + v.onDemand.length > MAX_FEATURES) {
      throw new ValidationError(`${at}.features`, `at most ${MAX_FEATURES} features per view`);
    }
    if (entities.length === 0 && v.features.length > 0) {
      throw new ValidationError(`${at}.entities`, "at least one entity key is required for a view with stored features");
    }
    const features = v.features.map((f, j): FeatureDef => {
      const fat = `${at}.features[${j}]`;
      validateName(f.name, `${fat}.name`);
      if (names.has(f.name)) throw new ValidationError(`${fat}.name`, `${f.name} is already used by an entity or feature of ${v.name}`);
      names.add(f.name);
      if (f.vectorDimension < 0) throw new ValidationError(`${fat}.vector_dimension`, "must be >= 0");
      if (f.type !== "float_vector" && f.vectorDimension !== 0) {
        throw new ValidationError(`${fat}.vector_dimension`, "only float_vector features have a dimension");
      }
      return {
        name: f.name,
        type: f.type,
        vectorDimension: f.vectorDimension,
        pii: f.pii,
        description: validateText(f.description, `${fat}.description`, 4096),
        labels: validateLabels(f.labels, `${fat}.labels`),
      };
    });
    const fields = new Set<string>();
    const requestFields = v.requestFields.map((r, j) => {
      validateName(r.name, `${at}.request_fields[${j}].name`);
      if (fields.has(r.name)) throw new ValidationError(`${at}.request_fields[${j}].name`, `${r.name} appears twice`);
      fields.add(r.name);
      return { ...r, description: validateText(r.description, `${at}.request_fields[${j}].description`, 4096) };
    });
    const onDemand = v.onDemand.map((o, j): OnDemandDef => {
      const oat = `${at}.on_demand_features[${j}]`;
      validateName(o.name, `${oat}.name`);
      if (names.has(o.name)) throw new ValidationError(`${oat}.name`, `${o.name} is already used by an entity or feature of ${v.name}`);
      names.add(o.name);
      let pii = o.pii;
      const argTypes = o.inputs.map((input, k): ValueKind => {
        if ("featureRef" in input) {
          const ref = parseRef(input.featureRef, `${oat}.inputs[${k}].feature_ref`);
          if (!inCall.has(ref.view) && !stored(ref.view)) {
            throw new NotFoundError("feature view", ref.view, `referenced by ${oat}.inputs[${k}]; apply it first or in the same call`);
          }
          const f = storedFeature(ref.view, ref.feature);
          if (!f) {
            throw new ValidationError(`${oat}.inputs[${k}].feature_ref`, `${input.featureRef} is not a stored feature (on-demand features cannot feed other on-demand features)`);
          }
          pii ||= f.pii;
          return f.type;
        }
        const field = requestFields.find((r) => r.name === input.requestField);
        if (!field) throw new ValidationError(`${oat}.inputs[${k}].request_field`, `${v.name} has no request field ${JSON.stringify(input.requestField)}`);
        return field.type;
      });
      const use = transforms.checkUse(o.transform, argTypes, o.params, oat);
      if (o.type !== undefined && o.type !== use.outputType) {
        throw new ValidationError(`${oat}.type`, `${o.transform} yields ${use.outputType} for these inputs, not ${o.type}`);
      }
      return {
        name: o.name,
        transform: o.transform,
        inputs: o.inputs.map((x) => ("featureRef" in x ? { featureRef: x.featureRef } : { requestField: x.requestField })),
        params: use.params,
        type: use.outputType,
        pii,
        description: validateText(o.description, `${oat}.description`, 4096),
      };
    });
    if (!Number.isInteger(v.ttlMs) || v.ttlMs < 0) throw new ValidationError(`${at}.ttl`, "must be >= 0");
    const def: ViewDef = {
      name: v.name,
      entities,
      features,
      ttlMs: v.ttlMs,
      description: validateText(v.description, `${at}.description`, 64 * 1024),
      owner: validateText(v.owner, `${at}.owner`, 256),
      labels: validateLabels(v.labels, `${at}.labels`),
      onDemand,
      requestFields,
    };
    const old = stored(v.name);
    return old ? keepPositions(old, def) : def;
  });
}

/** Stored features keep their index (rows are stored positionally); new ones go last. */
function keepPositions(old: ViewDef, next: ViewDef): ViewDef {
  const byName = new Map(next.features.map((f) => [f.name, f]));
  const kept = old.features.map((f) => byName.get(f.name)).filter((f): f is FeatureDef => f !== undefined);
  const added = next.features.filter((f) => !old.features.some((o) => o.name === f.name));
  const odByName = new Map(next.onDemand.map((f) => [f.name, f]));
  const odKept = old.onDemand.map((f) => odByName.get(f.name)).filter((f): f is OnDemandDef => f !== undefined);
  const odAdded = next.onDemand.filter((f) => !old.onDemand.some((o) => o.name === f.name));
  return { ...next, features: [...kept, ...added], onDemand: [...odKept, ...odAdded] };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Compare a stored view with a new definition of it. Throws PreconditionError naming the
 * view and every breaking change; otherwise returns the compatible changes (empty: same).
 */
export function diffViews(old: ViewDef, next: ViewDef): string[] {
  const breaking: string[] = [];
  const changes: string[] = [];
  const keys = (v: ViewDef) => v.entities.map((e) => `${e.name}:${e.type}`).join(", ");
  if (keys(old) !== keys(next)) breaking.push(`entities [${keys(old)}] -> [${keys(next)}]`);
  for (const f of old.features) {
    const n = next.features.find((x) => x.name === f.name);
    if (!n) {
      breaking.push(`feature ${f.name} removed`);
      continue;
    }
    if (n.type !== f.type) breaking.push(`feature ${f.name} type ${f.type} -> ${n.type}`);
    else if (n.vectorDimension !== f.vectorDimension) breaking.push(`feature ${f.name} vector_dimension ${f.vectorDimension} -> ${n.vectorDimension}`);
    if (n.pii !== f.pii) changes.push(`feature ${f.name} pii ${f.pii} -> ${n.pii}`);
    if (n.description !== f.description) changes.push(`feature ${f.name} description changed`);
    if (!same(n.labels, f.labels)) changes.push(`feature ${f.name} labels changed`);
  }
  for (const f of next.features) if (!old.features.some((o) => o.name === f.name)) changes.push(`added feature ${f.name}`);
  for (const o of old.onDemand) {
    const n = next.onDemand.find((x) => x.name === o.name);
    if (!n) {
      breaking.push(`on-demand feature ${o.name} removed`);
      continue;
    }
    if (n.transform !== o.transform || !same(n.inputs, o.inputs) || !same(n.params, o.params) || n.type !== o.type) {
      breaking.push(`on-demand feature ${o.name} computation changed (${o.transform} -> ${n.transform})`);
    }
    if (n.pii !== o.pii) changes.push(`on-demand feature ${o.name} pii ${o.pii} -> ${n.pii}`);
    if (n.description !== o.description) changes.push(`on-demand feature ${o.name} description changed`);
  }
  for (const o of next.onDemand) if (!old.onDemand.some((x) => x.name === o.name)) changes.push(`added on-demand feature ${o.name}`);
  if (old.ttlMs !== next.ttlMs) changes.push(`ttl ${formatDuration(old.ttlMs)} -> ${formatDuration(next.ttlMs)}`);
  if (old.description !== next.description) changes.push("description changed");
  if (old.owner !== next.owner) changes.push(`owner ${JSON.stringify(old.owner)} -> ${JSON.stringify(next.owner)}`);
  if (!same(old.labels, next.labels)) changes.push("labels changed");
  if (!same(old.requestFields, next.requestFields)) changes.push("request fields changed");
  if (breaking.length > 0) {
    throw new PreconditionError(
      `breaking change to feature view ${JSON.stringify(old.name)}; apply it under a new name instead`,
      breaking.map((b) => ({ subject: old.name, description: b })),
    );
  }
  return changes;
}

/** Validate feature sets; `resolve` throws NotFound for a ref that does not exist. */
export function validateFeatureSets(inputs: readonly FeatureSetDef[], resolve: (ref: string, field: string) => void): FeatureSetDef[] {
  const seen = new Set<string>();
  return inputs.map((s, i) => {
    const at = `feature_sets[${i}]`;
    validateName(s.name, `${at}.name`);
    if (seen.has(s.name)) throw new ValidationError(`${at}.name`, `${s.name} appears twice in this call`);
    seen.add(s.name);
    if (s.refs.length === 0) throw new ValidationError(`${at}.refs`, "at least one ref is required");
    const refs = new Set<string>();
    s.refs.forEach((ref, j) => {
      parseRef(ref, `${at}.refs[${j}]`);
      if (refs.has(ref)) throw new ValidationError(`${at}.refs[${j}]`, `${ref} appears twice`);
      refs.add(ref);
      resolve(ref, `${at}.refs[${j}]`);
    });
    return {
      name: s.name,
      refs: [...s.refs],
      description: validateText(s.description, `${at}.description`, 64 * 1024),
      owner: validateText(s.owner, `${at}.owner`, 256),
      labels: validateLabels(s.labels, `${at}.labels`),
    };
  });
}

export function diffFeatureSets(old: FeatureSetDef, next: FeatureSetDef): string[] {
  if (!same(old.refs, next.refs)) {
    throw new PreconditionError(`the refs of feature set ${JSON.stringify(old.name)} cannot change (a bound model depends on their order and types); create a new set`, [
      { subject: old.name, description: `refs [${old.refs.join(", ")}] -> [${next.refs.join(", ")}]` },
    ]);
  }
  const changes: string[] = [];
  if (old.description !== next.description) changes.push("description changed");
  if (old.owner !== next.owner) changes.push(`owner ${JSON.stringify(old.owner)} -> ${JSON.stringify(next.owner)}`);
  if (!same(old.labels, next.labels)) changes.push("labels changed");
  return changes;
}
