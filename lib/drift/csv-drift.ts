// The offline core of `mlmesh drift --reference REF.csv --current CUR.csv`: a streaming
// RFC 4180 CSV reader into columns, and per-column drift between two such column sets.

import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { ValidationError } from "../errors.js";
import { countNumeric } from "./histogram.js";
import { buildNumericReference } from "./reference.js";
import {
  alignCategoryCounts,
  binnedKlDivergence,
  chiSquareContingency,
  hellingerDistance,
  jensenShannonDistance,
  populationStabilityIndex,
  valueCounts,
  wassersteinDistance,
} from "./metrics.js";

// ---------------------------------------------------------------- CSV reading

/** A malformed CSV line; `line` is 1-based (the header is line 1), `column` the character. */
export class CsvFormatError extends ValidationError {
  constructor(
    readonly source: string,
    readonly line: number,
    readonly column: number | undefined,
    readonly problem: string,
  ) {
    super(column === undefined ? `${source}:${line}` : `${source}:${line}:${column}`, problem);
  }
}

type FieldState = "start" | "unquoted" | "quoted" | "quote-in-quoted";

/**
 * Incremental RFC 4180 record parser fed one physical line at a time (so it works under
 * node:readline): fields separated by `delimiter`, optionally in double quotes, `""` for a
 * quote inside quotes, and quoted fields spanning lines (rejoined with "\n"). A quote inside
 * an unquoted field, text after a closing quote and a quote left open are errors.
 */
export class CsvRecordParser {
  private fields: string[] = [];
  private field = "";
  private state: FieldState = "start";
  private startLine = 0;
  private quoteLine = 0;
  private quoteColumn = 0;

  constructor(
    private readonly source = "csv",
    private readonly delimiter = ",",
  ) {
    if (delimiter.length !== 1 || delimiter === '"' || delimiter === "\n" || delimiter === "\r") {
      throw new ValidationError("delimiter", `must be one character other than a quote or newline, got ${JSON.stringify(delimiter)}`);
    }
  }

  /** True while a quoted field is open across lines. */
  get pending(): boolean {
    return this.state === "quoted";
  }

  /** Feeds a line (without its line break); returns the record it completes, or null. */
  pushLine(line: string, lineNumber: number): string[] | null {
    if (this.state !== "quoted") {
      this.startLine = lineNumber;
      this.fields = [];
      this.field = "";
      this.state = "start";
    } else {
      this.field += "\n";
    }
    const d = this.delimiter;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i]!;
      switch (this.state) {
        case "start":
          if (ch === '"') {
            this.state = "quoted";
            this.quoteLine = lineNumber;
            this.quoteColumn = i + 1;
          } else if (ch === d) {
            this.fields.push("");
          } else {
            this.field = ch;
            this.state = "unquoted";
          }
          break;
        case "unquoted":
          if (ch === d) {
            this.endField();
          } else if (ch === '"') {
            throw new CsvFormatError(this.source, lineNumber, i + 1, "quote inside an unquoted field (quote the whole field and double the quote)");
          } else {
            this.field += ch;
          }
          break;
        case "quoted":
          if (ch === '"') this.state = "quote-in-quoted";
          else this.field += ch;
          break;
        case "quote-in-quoted":
          if (ch === '"') {
            this.field += '"';
            this.state = "quoted";
          } else if (ch === d) {
            this.endField();
          } else {
            throw new CsvFormatError(this.source, lineNumber, i + 1, `unexpected ${JSON.stringify(ch)} after a closing quote`);
          }
          break;
      }
    }
    if (this.state === "quoted") return null;
    this.fields.push(this.field);
    this.field = "";
    this.state = "start";
    return this.fields;
  }

  /** Line on which the record last returned (or pending) started. */
  get recordLine(): number {
    return this.startLine;
  }

  /** Call at end of input: throws if a quoted field was never closed. */
  finish(): void {
    if (this.state === "quoted") {
      throw new CsvFormatError(this.source, this.quoteLine, this.quoteColumn, "quoted field is never closed");
    }
  }

  private endField(): void {
    this.fields.push(this.field);
    this.field = "";
    this.state = "start";
  }
}

export interface CsvColumns {
  readonly header: string[];
  /** Column name -> its values in row order, as text. */
  readonly columns: Map<string, string[]>;
  readonly rows: number;
}

export interface ReadCsvOptions {
  readonly delimiter?: string;
}

/**
 * Reads a CSV file with a header row into columns, streaming it line by line (the file is
 * never held as one string). Blank lines outside quoted fields are skipped; a leading UTF-8
 * byte order mark is dropped. Throws CsvFormatError naming file, line and column.
 */
export async function readCsvColumns(path: string, options: ReadCsvOptions = {}): Promise<CsvColumns> {
  let columns: string[][] = [];
  const { header, rows } = await forEachCsvRecord(
    path,
    (record, _line, hdr) => {
      if (columns.length === 0) columns = hdr.map(() => []);
      for (let i = 0; i < record.length; i++) columns[i]!.push(record[i]!);
    },
    options,
  );
  if (columns.length === 0) columns = header.map(() => []);
  return { header, columns: new Map(header.map((h, i) => [h, columns[i]!])), rows };
}

/**
 * Streams a CSV file with a header row record by record, calling `onRecord` with the fields
 * and the record's 1-based line number; nothing but the current record is held in memory.
 * Returns the header and the row count. Throws CsvFormatError naming file, line and column.
 */
export async function forEachCsvRecord(
  path: string,
  onRecord: (fields: readonly string[], line: number, header: readonly string[]) => void,
  options: ReadCsvOptions = {},
): Promise<{ header: string[]; rows: number }> {
  const parser = new CsvRecordParser(path, options.delimiter ?? ",");
  const input = createReadStream(path, { encoding: "utf8" });
  const lines = createInterface({ input, crlfDelay: Infinity });
  let header: string[] | undefined;
  let rows = 0;
  let lineNumber = 0;
  try {
    for await (const raw of lines) {
      lineNumber++;
      const line = lineNumber === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
      if (line.length === 0 && !parser.pending) continue;
      const record = parser.pushLine(line, lineNumber);
      if (record === null) continue;
      if (header === undefined) {
        header = checkHeader(record, path, parser.recordLine);
        continue;
      }
      if (record.length !== header.length) {
        throw new CsvFormatError(path, parser.recordLine, undefined, `expected ${header.length} fields as in the header, got ${record.length}`);
      }
      onRecord(record, parser.recordLine, header);
      rows++;
    }
    parser.finish();
  } finally {
    lines.close();
    input.destroy();
  }
  if (header === undefined) throw new CsvFormatError(path, 1, undefined, "file is empty; expected a header row");
  return { header, rows };
}

function checkHeader(record: string[], path: string, line: number): string[] {
  const seen = new Set<string>();
  record.forEach((name, i) => {
    if (name.trim() === "") throw new CsvFormatError(path, line, undefined, `header field ${i + 1} is empty`);
    if (seen.has(name)) throw new CsvFormatError(path, line, undefined, `header repeats column ${JSON.stringify(name)}`);
    seen.add(name);
  });
  return record;
}

// ---------------------------------------------------------------- drift per column

/** Text treated as a missing value (compared trimmed, case-insensitively), as pandas does. */
export const MISSING_TOKENS: ReadonlySet<string> = new Set(["", "na", "n/a", "nan", "null", "none"]);

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

export function isMissing(text: string): boolean {
  return MISSING_TOKENS.has(text.trim().toLowerCase());
}

/** The number a text holds if it is a plain decimal literal, else undefined. */
export function parseDecimal(text: string): number | undefined {
  const t = text.trim();
  return DECIMAL.test(t) ? Number(t) : undefined;
}

export type ColumnKind = "numeric" | "categorical";

export interface ColumnDrift {
  readonly column: string;
  readonly psi: number;
  readonly kl: number;
  readonly js: number;
  readonly hellinger: number;
  /** Sample Wasserstein-1 distance; null for categorical columns (no order, no distance). */
  readonly wasserstein: number | null;
  readonly drift: boolean;
  readonly kind: ColumnKind;
  /** chi2_contingency p-value of a categorical column; null for numeric ones. */
  readonly pValue: number | null;
}

export interface DriftReport {
  readonly columns: ColumnDrift[];
  readonly onlyInReference: string[];
  readonly onlyInCurrent: string[];
  /** Columns present in both but not comparable (no values on one side). */
  readonly skipped: { column: string; reason: string }[];
}

export interface CsvDriftOptions {
  /** Quantile bins of numeric reference columns; default 10. */
  readonly bins?: number;
  /** Numeric (and, with categoricalTest "psi", categorical) drift when PSI >= this; default 0.2. */
  readonly psiThreshold?: number;
  /** Categorical drift when the chi-square p-value < this; default 0.05. */
  readonly alpha?: number;
  /** How categorical drift is decided; default "chi2" as the monitoring issue specifies. */
  readonly categoricalTest?: "chi2" | "psi";
}

export const DEFAULT_PSI_THRESHOLD = 0.2;
export const DEFAULT_ALPHA = 0.05;

/**
 * Drift of each column present in both sets, in reference column order. Missing values are
 * dropped. A column is numeric when every remaining value on both sides is a decimal number,
 * else categorical. Numeric: reference quantile bins (see reference.ts), PSI, KL(ref || cur)
 * with empty bins filled, JS and Hellinger over the bins, Wasserstein-1 between the raw
 * samples; drift = PSI >= psiThreshold. Categorical: the same over category shares (union of
 * categories), no Wasserstein; drift = chi2_contingency p < alpha on the 2 x k count table.
 */
export function compareColumns(
  reference: ReadonlyMap<string, readonly string[]>,
  current: ReadonlyMap<string, readonly string[]>,
  options: CsvDriftOptions = {},
): DriftReport {
  const psiThreshold = options.psiThreshold ?? DEFAULT_PSI_THRESHOLD;
  const alpha = options.alpha ?? DEFAULT_ALPHA;
  const categoricalTest = options.categoricalTest ?? "chi2";
  const columns: ColumnDrift[] = [];
  const skipped: { column: string; reason: string }[] = [];
  for (const [column, refText] of reference) {
    const curText = current.get(column);
    if (curText === undefined) continue;
    const ref = refText.filter((t) => !isMissing(t));
    const cur = curText.filter((t) => !isMissing(t));
    if (ref.length === 0 || cur.length === 0) {
      skipped.push({ column, reason: `no values in the ${ref.length === 0 ? "reference" : "current"} data` });
      continue;
    }
    const refNum = ref.map(parseDecimal);
    const curNum = cur.map(parseDecimal);
    const numeric = refNum.every((v) => v !== undefined) && curNum.every((v) => v !== undefined);
    if (numeric) {
      columns.push(numericDrift(column, refNum as number[], curNum as number[], options.bins, psiThreshold));
    } else {
      columns.push(categoricalDrift(column, ref, cur, categoricalTest, psiThreshold, alpha));
    }
  }
  return {
    columns,
    onlyInReference: [...reference.keys()].filter((c) => !current.has(c)),
    onlyInCurrent: [...current.keys()].filter((c) => !reference.has(c)),
    skipped,
  };
}

/** Drift of one numeric column (see compareColumns). */
export function numericDrift(
  column: string,
  reference: readonly number[],
  current: readonly number[],
  bins: number | undefined,
  psiThreshold = DEFAULT_PSI_THRESHOLD,
): ColumnDrift {
  const ref = buildNumericReference(reference, bins === undefined ? {} : { bins });
  const cur = countNumeric(ref, current).counts;
  const psi = populationStabilityIndex(ref.counts, cur);
  return {
    column,
    psi,
    kl: binnedKlDivergence(ref.counts, cur),
    js: jensenShannonDistance(ref.counts, cur),
    hellinger: hellingerDistance(ref.counts, cur),
    wasserstein: wassersteinDistance(reference, current),
    drift: psi >= psiThreshold,
    kind: "numeric",
    pValue: null,
  };
}

/** Drift of one categorical column (see compareColumns). */
export function categoricalDrift(
  column: string,
  reference: Iterable<string>,
  current: Iterable<string>,
  test: "chi2" | "psi" = "chi2",
  psiThreshold = DEFAULT_PSI_THRESHOLD,
  alpha = DEFAULT_ALPHA,
): ColumnDrift {
  const a = alignCategoryCounts(valueCounts(reference), valueCounts(current));
  const psi = populationStabilityIndex(a.reference, a.current);
  const pValue = chiSquareContingency([a.reference, a.current]).pValue;
  return {
    column,
    psi,
    kl: binnedKlDivergence(a.reference, a.current),
    js: jensenShannonDistance(a.reference, a.current),
    hellinger: hellingerDistance(a.reference, a.current),
    wasserstein: null,
    drift: test === "chi2" ? pValue < alpha : psi >= psiThreshold,
    kind: "categorical",
    pValue,
  };
}
