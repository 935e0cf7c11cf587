// The model-name rule every service applies: a model name is a path segment, the left side
// of `name@ref` and a NATS subject token, so it is held to a strict alphabet.

import { ValidationError } from "./errors.js";

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

export function validateModelName(name: string, field = "name"): string {
  if (!name) throw new ValidationError(field, "is required");
  if (!MODEL_NAME.test(name)) {
    throw new ValidationError(
      field,
      `${JSON.stringify(name.slice(0, 200))} is not a valid model name: use 1-128 letters, digits, '_' or '-', starting with a letter or digit (no '/', '.', '@', ':' or spaces)`,
    );
  }
  return name;
}
