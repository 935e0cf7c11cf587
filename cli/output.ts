// How the CLI talks to people and scripts: results on stdout (a table or --json), logs and
// diagnostics on stderr, and exit codes that mean something.

export const EXIT = {
  OK: 0,
  /** The operation failed (server answered with an error, a check failed). */
  FAILED: 1,
  /** The command line was wrong. */
  USAGE: 2,
  /** A server could not be reached. */
  UNAVAILABLE: 69,
  /** An MLMESH_* variable is invalid (sysexits EX_CONFIG). */
  CONFIG: 78,
} as const;

export class UsageError extends Error {}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}\n`);
}

export function printTable(rows: ReadonlyArray<Record<string, string | number>>, columns: readonly string[]): void {
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? "").length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  process.stdout.write(`${line(columns.map((c) => c.toUpperCase()))}\n`);
  for (const r of rows) process.stdout.write(`${line(columns.map((c) => String(r[c] ?? "")))}\n`);
}

export function printError(message: string): void {
  process.stderr.write(`mlmesh: ${message}\n`);
}
