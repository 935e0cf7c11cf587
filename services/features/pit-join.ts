// The point-in-time join: for an entity row at time t, the latest value at or before t
// (ties broken by write order: the last written wins), EXPIRED when older than the TTL at
// t, never a value from after t. Pure maths, checked against pandas merge_asof.

/** Index of the last element of ascending `times` that is <= t, or -1 when none is. */
export function latestAtOrBefore(times: ArrayLike<number>, t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** A value of age `asOf - eventTime` is expired when a TTL is set and the age exceeds it. */
export function isExpired(eventTime: number, asOf: number, ttlMs: number): boolean {
  return ttlMs > 0 && asOf - eventTime > ttlMs;
}

export type JoinOutcome = { readonly status: "not_found" } | { readonly status: "present" | "expired"; readonly index: number };

/**
 * Join one entity row against that entity's history (event times ascending, equal times in
 * write order): which history row it takes, and whether that row is within the TTL.
 */
export function joinAsOf(times: ArrayLike<number>, asOf: number, ttlMs: number): JoinOutcome {
  const index = latestAtOrBefore(times, asOf);
  if (index < 0) return { status: "not_found" };
  return { status: isExpired(times[index]!, asOf, ttlMs) ? "expired" : "present", index };
}

export interface HistoryRow {
  readonly eventTime: number;
  /** Write order: breaks ties between equal event times. */
  readonly seq: number;
}

/** Sort history rows into the order joinAsOf expects (in place) and return their times. */
export function sortHistory<T extends HistoryRow>(rows: T[]): Float64Array {
  rows.sort((a, b) => a.eventTime - b.eventTime || a.seq - b.seq);
  const times = new Float64Array(rows.length);
  for (let i = 0; i < rows.length; i++) times[i] = rows[i]!.eventTime;
  return times;
}
