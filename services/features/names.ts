// Names and refs. View, feature, entity and request-field names appear in NATS subjects,
// SQL, CSV headers and Redis keys, so they are held to one strict alphabet.

import { ValidationError } from "../../lib/errors.js";

const NAME = /^[a-z][a-z0-9_]{0,62}$/;

export function validateName(name: string, field: string): string {
  if (!name) throw new ValidationError(field, "is required");
  if (!NAME.test(name)) {
    throw new ValidationError(
      field,
      `${JSON.stringify(name.slice(0, 100))} is not a valid name: use 1-63 lower-case letters, digits or '_', starting with a letter`,
    );
  }
  return name;
}

export interface ParsedRef {
  readonly view: string;
  readonly feature: string;
}

/** `view:feature` -> its parts; anything else is INVALID_ARGUMENT on `field`. */
export function parseRef(ref: string, field: string): ParsedRef {
  const colon = ref.indexOf(":");
  if (colon <= 0 || colon !== ref.lastIndexOf(":") || !NAME.test(ref.slice(0, colon)) || !NAME.test(ref.slice(colon + 1))) {
    throw new ValidationError(field, `${JSON.stringify(ref.slice(0, 200))} is not a feature ref; expected view:feature, e.g. user_stats:views_7d`);
  }
  return { view: ref.slice(0, colon), feature: ref.slice(colon + 1) };
}

export function validateText(value: string, field: string, max: number): string {
  if (value.length > max) throw new ValidationError(field, `longer than ${max} characters`);
  return value;
}

const LABEL_KEY = /^[A-Za-z0-9_.-]{1,64}$/;

export function validateLabels(labels: Readonly<Record<string, string>>, field: string): Record<string, string> {
  const keys = Object.keys(labels).sort();
  if (keys.length > 64) throw new ValidationError(field, `at most 64 labels, got ${keys.length}`);
  const out: Record<string, string> = {};
  for (const k of keys) {
    if (!LABEL_KEY.test(k)) throw new ValidationError(`${field}[${JSON.stringify(k)}]`, "key must match ^[A-Za-z0-9_.-]{1,64}$");
    if (labels[k]!.length > 1024) throw new ValidationError(`${field}[${JSON.stringify(k)}]`, "value longer than 1024 characters");
    out[k] = labels[k]!;
  }
  return out;
}
