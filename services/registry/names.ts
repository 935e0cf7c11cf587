// Validation of the names and tags users choose. A model name is a path segment, the left
// side of `name@ref` and a NATS subject token, so it is held to a strict alphabet.

import { ValidationError } from "../../lib/errors.js";

const TAG_KEY = /^[A-Za-z0-9_.-]{1,64}$/;

export { validateModelName } from "../../lib/model-name.js";

export function validateTags(tags: Record<string, string>, field = "tags"): Record<string, string> {
  const keys = Object.keys(tags);
  if (keys.length > 64) throw new ValidationError(field, `at most 64 tags, got ${keys.length}`);
  for (const k of keys) {
    if (!TAG_KEY.test(k)) throw new ValidationError(`${field}[${JSON.stringify(k)}]`, "key must match ^[A-Za-z0-9_.-]{1,64}$");
    if (tags[k]!.length > 1024) throw new ValidationError(`${field}[${JSON.stringify(k)}]`, "value longer than 1024 characters");
  }
  return tags;
}

export function validateText(value: string, field: string, max: number): string {
  if (value.length > max) throw new ValidationError(field, `longer than ${max} characters`);
  return value;
}
