// Page sizes and opaque page tokens for List RPCs. A token is the last key of the previous
// page, base64url-encoded so clients treat it as opaque.

import { ValidationError } from "./errors.js";

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function pageSize(requested: number | undefined, field: string): number {
  if (requested === undefined || requested === 0) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(requested) || requested < 0) throw new ValidationError(field, `must be >= 0, got ${requested}`);
  return Math.min(requested, MAX_PAGE_SIZE);
}

export function encodePageToken(lastKey: string | number): string {
  return Buffer.from(JSON.stringify({ k: lastKey })).toString("base64url");
}

export function decodePageToken(token: string | undefined, field: string): string | number | undefined {
  if (!token) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { k?: unknown };
    if (typeof parsed.k === "string" || typeof parsed.k === "number") return parsed.k;
  } catch {
    // fall through
  }
  throw new ValidationError(field, "is not a token returned by a previous page; start again without it");
}
