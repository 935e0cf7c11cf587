// Validation of what a client states about a version (ModelVersionSpec and the mutable
// parts UpdateModelVersion replaces): lengths, tag keys, finite metrics, dataset refs.
// Checks that need the signature (feature binding, reference columns) happen after upload.

import type { FeatureBinding, Lineage, ModelCard, ReferenceInput } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { ModelVersionSpec } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { validateTags, validateText } from "./names.js";

export interface ValidSpec {
  readonly description: string;
  readonly tags: Record<string, string>;
  readonly featureBinding: FeatureBinding | undefined;
  readonly lineage: Lineage | undefined;
  readonly card: ModelCard | undefined;
  readonly reference: ReferenceInput | undefined;
}

const KEY = /^[A-Za-z0-9_.:/-]{1,128}$/;

export function validateLineage(l: Lineage | undefined, field: string): Lineage | undefined {
  if (!l) return undefined;
  for (const [k, v] of Object.entries(l.params)) {
    if (!KEY.test(k)) throw new ValidationError(`${field}.params[${JSON.stringify(k)}]`, "key must be 1-128 letters, digits or _ . : / -");
    validateText(v, `${field}.params[${JSON.stringify(k)}]`, 4096);
  }
  for (const [k, v] of Object.entries(l.metrics)) {
    if (!KEY.test(k)) throw new ValidationError(`${field}.metrics[${JSON.stringify(k)}]`, "key must be 1-128 letters, digits or _ . : / -");
    if (!Number.isFinite(v)) throw new ValidationError(`${field}.metrics[${JSON.stringify(k)}]`, `must be a finite number, got ${v}`);
  }
  l.datasets.forEach((d, i) => {
    if (!d.uri) throw new ValidationError(`${field}.datasets[${i}].uri`, "is required");
    validateText(d.uri, `${field}.datasets[${i}].uri`, 2048);
    if (d.revision.case === "digest" && !/^[a-z0-9]+:[0-9a-fA-F]{8,128}$/.test(d.revision.value)) {
      throw new ValidationError(`${field}.datasets[${i}].digest`, "must be <algorithm>:<hex>, e.g. sha256:9f2c...");
    }
  });
  validateText(l.codeVersion, `${field}.code_version`, 256);
  validateText(l.codeRepository, `${field}.code_repository`, 2048);
  validateText(l.creator, `${field}.creator`, 256);
  return l;
}

export function validateCard(c: ModelCard | undefined, field: string): ModelCard | undefined {
  if (!c) return undefined;
  for (const k of ["intendedUse", "trainingData", "evaluation", "limitations", "ethicalConsiderations"] as const) validateText(c[k], `${field}.${k.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`)}`, 64 * 1024);
  c.additionalSections.forEach((s, i) => {
    if (!s.title.trim()) throw new ValidationError(`${field}.additional_sections[${i}].title`, "is required");
    validateText(s.markdown, `${field}.additional_sections[${i}].markdown`, 64 * 1024);
  });
  return c;
}

export function validateSpec(spec: ModelVersionSpec | undefined, field: string): ValidSpec {
  return {
    description: validateText(spec?.description ?? "", `${field}.description`, 64 * 1024),
    tags: validateTags(spec?.tags ?? {}, `${field}.tags`),
    featureBinding: spec?.featureBinding,
    lineage: validateLineage(spec?.lineage, `${field}.lineage`),
    card: validateCard(spec?.card, `${field}.card`),
    reference: spec?.reference,
  };
}
