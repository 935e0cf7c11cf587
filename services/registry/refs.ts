// Model refs: `name`, `name@<N>`, `name@<alias>`, `name@production|staging`, `name@latest`.
// Parsing only; the store resolves a parsed ref against the current state.

import { ValidationError } from "../../lib/errors.js";
import { validateModelName } from "./names.js";

export type RefTarget =
  | { readonly kind: "version"; readonly version: number }
  | { readonly kind: "latest" }
  /** A free alias or the stage-managed `production` / `staging`. */
  | { readonly kind: "alias"; readonly alias: string };

export interface ModelRef {
  readonly name: string;
  readonly target: RefTarget;
}

export const ALIAS = /^[a-z][a-z0-9_-]{0,62}$/;
/** Stage-managed aliases: held by whichever version is in that stage. */
export const STAGE_ALIASES = new Set(["production", "staging"]);
/** Never assignable: `latest` is computed, `none`/`archived` name stages holding many versions. */
export const RESERVED_ALIASES = new Set(["latest", "none", "archived"]);

export function parseModelRef(ref: string, field = "model_ref"): ModelRef {
  if (!ref) throw new ValidationError(field, "is required (e.g. churn, churn@production, churn@3, churn@champion)");
  const at = ref.indexOf("@");
  const name = validateModelName(at < 0 ? ref : ref.slice(0, at), field);
  if (at < 0) return { name, target: { kind: "alias", alias: "production" } };
  const right = ref.slice(at + 1);
  if (/^[0-9]+$/.test(right)) {
    const version = Number(right);
    if (!Number.isSafeInteger(version) || version < 1) throw new ValidationError(field, `version in ${JSON.stringify(ref)} must be >= 1`);
    return { name, target: { kind: "version", version } };
  }
  if (right === "latest") return { name, target: { kind: "latest" } };
  if (right === "none" || right === "archived") {
    throw new ValidationError(field, `${JSON.stringify(ref)}: stage ${right} holds many versions; refer to one by number (${name}@3)`);
  }
  if (!ALIAS.test(right)) {
    throw new ValidationError(field, `${JSON.stringify(ref.slice(0, 200))} is not a model ref: use name, name@<version>, name@<alias> (lowercase), name@production, name@staging or name@latest`);
  }
  return { name, target: { kind: "alias", alias: right } };
}

/** Validates an alias a caller wants to assign. */
export function validateAlias(alias: string, field = "alias"): string {
  if (!alias) throw new ValidationError(field, "is required");
  if (RESERVED_ALIASES.has(alias)) throw new ValidationError(field, `${JSON.stringify(alias)} is reserved (latest, none and archived cannot be assigned)`);
  if (!ALIAS.test(alias)) {
    throw new ValidationError(field, `${JSON.stringify(alias.slice(0, 100))} is not a valid alias: 1-63 lowercase letters, digits, '_' or '-', starting with a letter`);
  }
  return alias;
}

export function formatRef(name: string, target: RefTarget): string {
  return target.kind === "version" ? `${name}@${target.version}` : target.kind === "latest" ? `${name}@latest` : `${name}@${target.alias}`;
}
