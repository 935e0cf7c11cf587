// Types of csv-chunk.mjs (plain JS so worker threads can load it without the TS loader).

import type { DType, TypedData } from "../../services/inference/tensors.js";

export interface ChunkInput {
  /** Graph input name. */
  readonly name: string;
  readonly type: DType;
  /** [rows, width] when true, else [rows]. */
  readonly matrix: boolean;
  readonly columns: ReadonlyArray<{ readonly name: string; readonly file: number }>;
}

export interface ChunkPlan {
  /** Fields per record (the header's). */
  readonly fields: number;
  readonly inputs: readonly ChunkInput[];
  readonly allowNonFinite: boolean;
  readonly skipBadRows: boolean;
}

export interface ChunkBadRow {
  /** 0-based line within the chunk. */
  readonly line: number;
  readonly column: string;
  readonly problem: string;
}

export interface ParsedChunk {
  readonly rows: number;
  readonly data: TypedData[];
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  readonly rejects: Array<ChunkBadRow & { readonly cells: string[] }>;
  readonly bad: ChunkBadRow | undefined;
  /** Line breaks in the chunk. */
  readonly lines: number;
}

export interface OutColumn {
  readonly output: string;
  /** Element of the row's slice, or -1 for all of it joined by spaces. */
  readonly element: number;
  readonly column: string;
}

export function lastRecordEnd(bytes: Uint8Array, end: number): number;
export function headerEnd(bytes: Uint8Array, from: number): { end: number; lines: number } | undefined;
export function numberOfText(cell: string, type: DType, column: string, allowNonFinite: boolean): number;
export class ChunkFormatError extends Error {
  readonly line: number;
  readonly column: number | undefined;
  readonly problem: string;
}
/** `data` arrays hold at least rows × width values (reused between chunks: use the first rows × width). */
export function chunkParser(plan: ChunkPlan): ((bytes: Uint8Array) => ParsedChunk) & { release(parsed: ParsedChunk): void };
export function formatRows(
  bytes: Uint8Array,
  parsed: ParsedChunk,
  prefix: string,
  outCols: readonly OutColumn[],
  outputs: Record<string, { dims: readonly number[]; data: TypedData }>,
): Uint8Array;
