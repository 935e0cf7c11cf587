// Reads: refs compiled once into a plan (which views, which stored positions, which
// transforms), then evaluated per entity by one function shared by online reads (as of
// now, from the online store) and historical reads (as of each row's time, from the
// offline store through the point-in-time join). Same plan, same code, same values.

import { NotFoundError, ResourceExhaustedError, ValidationError } from "../../lib/errors.js";
import { decodeValue, entityKeyOf } from "./codec.js";
import type { FeatureMetrics } from "./metrics.js";
import { parseRef } from "./names.js";
import type { OfflineStore } from "./offline-store.js";
import type { OnlineRecord, OnlineStore } from "./online-store.js";
import { isExpired, joinAsOf } from "./pit-join.js";
import type { DefinitionStore } from "./store.js";
import type { RegisteredTransform, TransformRegistry } from "./transforms.js";
import type { ReadValue, Scalar, StoredView, ValueKind, ValueStatus } from "./types.js";
import { counterChild, histogramChild, type HistogramChild } from "../../lib/metric-children.js";

type StoredSource = { readonly kind: "stored"; readonly slot: number; readonly index: number; readonly type: ValueKind };
type RequestSource = { readonly kind: "request"; readonly name: string; readonly required: boolean; readonly ref: string };

type Column =
  | StoredSource
  | {
      readonly kind: "on_demand";
      readonly ref: string;
      readonly type: ValueKind;
      readonly transform: RegisteredTransform;
      readonly params: Readonly<Record<string, unknown>>;
      readonly inputs: ReadonlyArray<StoredSource | RequestSource>;
    };

export interface ReadPlan {
  readonly refs: readonly string[];
  /** Views read from, each looked up once per entity. */
  readonly slots: readonly StoredView[];
  readonly columns: readonly Column[];
  /** Declared type of each column, for the response mapping. */
  readonly types: readonly ValueKind[];
  /** View each column is counted under in metrics. */
  readonly columnViews: readonly string[];
}

/** One entity's row in one slot: its event time and decoded-JSON values. */
export interface SlotRecord {
  readonly eventTime: number;
  readonly values: readonly unknown[];
}

/** The record's values, decoded once per record object (a cached record is read many times). */
function slotRecordOf(rec: OnlineRecord): SlotRecord {
  if (rec.values === undefined) rec.values = JSON.parse(rec.valuesJson) as unknown[];
  return rec as SlotRecord;
}

export interface ReadLimits {
  readonly maxEntitiesPerRead: number;
  readonly maxHistoricalRows: number;
}

export class ReadPlanner {
  private cache = new Map<string, ReadPlan>();

  constructor(
    private readonly defs: DefinitionStore,
    private readonly transforms: TransformRegistry,
  ) {
    defs.onChange(() => (this.cache = new Map()));
  }

  /** The plan for refs or a feature set (exactly one of them). */
  plan(refs: readonly string[], featureSet: string): ReadPlan {
    if ((refs.length === 0) === !featureSet) throw new ValidationError("refs", "set exactly one of refs and feature_set");
    const list = featureSet ? this.defs.requireSet(featureSet).refs : refs;
    const key = featureSet ? `set:${featureSet}` : list.join(",");
    let plan = this.cache.get(key);
    if (!plan) {
      plan = this.compile(list, featureSet ? `feature_set ${featureSet}` : "refs");
      // Bounded: a caller cycling through ref lists must not grow memory without end.
      if (this.cache.size > 1000) this.cache.clear();
      this.cache.set(key, plan);
    }
    return plan;
  }

  private compile(refs: readonly string[], field: string): ReadPlan {
    const slots: StoredView[] = [];
    const slotOf = (v: StoredView) => {
      let i = slots.indexOf(v);
      if (i < 0) i = slots.push(v) - 1;
      return i;
    };
    const stored = (ref: string, at: string): StoredSource => {
      const { view, feature } = parseRef(ref, at);
      const v = this.defs.view(view);
      if (!v) throw new NotFoundError("feature view", view, `named by ${at} (${ref})`);
      const index = v.features.findIndex((f) => f.name === feature);
      if (index < 0) throw new NotFoundError("feature", ref, `view ${view} has ${[...v.features, ...v.onDemand].map((f) => f.name).join(", ") || "no features"}`);
      return { kind: "stored", slot: slotOf(v), index, type: v.features[index]!.type };
    };
    const seen = new Set<string>();
    const columns = refs.map((ref, i): Column => {
      const at = `${field}[${i}]`;
      if (seen.has(ref)) throw new ValidationError(at, `${ref} appears twice`);
      seen.add(ref);
      const { view, feature } = parseRef(ref, at);
      const v = this.defs.view(view);
      const od = v?.onDemand.find((o) => o.name === feature);
      if (!v || !od) return stored(ref, at);
      const transform = this.transforms.get(od.transform);
      if (!transform) throw new NotFoundError("transform", od.transform, `${ref} was applied with it but this server does not register it`);
      return {
        kind: "on_demand",
        ref,
        type: od.type,
        transform,
        params: od.params,
        inputs: od.inputs.map((input) => {
          if ("featureRef" in input) return stored(input.featureRef, `${at} input`);
          const rf = v.requestFields.find((r) => r.name === input.requestField)!;
          return { kind: "request" as const, name: rf.name, required: rf.required, ref };
        }),
      };
    });
    return {
      refs: [...refs],
      slots,
      columns,
      types: columns.map((c) => c.type),
      columnViews: refs.map((r) => r.slice(0, r.indexOf(":"))),
    };
  }
}

/** Value of a stored feature from a slot record, as of `asOf`, under the view's TTL. */
function storedValue(rec: SlotRecord | undefined, src: StoredSource, ttlMs: number, asOf: number, out: ReadValue): ReadValue {
  if (!rec) {
    out.status = "not_found";
    out.value = null;
    out.eventTime = NaN;
    return out;
  }
  out.eventTime = rec.eventTime;
  if (isExpired(rec.eventTime, asOf, ttlMs)) {
    out.status = "expired";
    out.value = null;
    return out;
  }
  const raw = rec.values[src.index];
  if (raw === null || raw === undefined) {
    out.status = "null";
    out.value = null;
    return out;
  }
  out.status = "present";
  // A vector is an array of the record, which a cache and other rows share: a copy, so a
  // transform or the caller may not change what the next read returns.
  out.value = src.type === "float_vector" && Array.isArray(raw) ? (raw as number[]).slice() : decodeValue(raw, src.type);
  return out;
}

function coerceOutput(v: Scalar, type: ValueKind): Scalar {
  if (type === "int64" && typeof v === "number") return Number.isInteger(v) ? BigInt(v) : null;
  if ((type === "float64" || type === "float32") && typeof v === "bigint") return Number(v);
  if ((type === "float64" || type === "float32") && typeof v === "number" && Number.isNaN(v)) return null;
  return v;
}

/**
 * The values of one entity row for every column of the plan: the one function both read
 * paths call. `records[slot]` is that row's record per view (already chosen as of `asOf`);
 * request data comes from the row's own, else from the call's `shared` (plain records, not
 * a resolver closure: a closure per row cost more than the rest of a cached read).
 */
export function evaluateRow(
  plan: ReadPlan,
  records: ReadonlyArray<SlotRecord | undefined>,
  asOf: number,
  own: Readonly<Record<string, Scalar>> | undefined,
  shared: Readonly<Record<string, Scalar>>,
  field: string,
): ReadValue[] {
  const out = new Array<ReadValue>(plan.columns.length);
  for (let c = 0; c < plan.columns.length; c++) {
    const col = plan.columns[c]!;
    const value: ReadValue = { status: "null", value: null, eventTime: NaN };
    if (col.kind === "stored") {
      out[c] = storedValue(records[col.slot], col, plan.slots[col.slot]!.ttlMs, asOf, value);
      continue;
    }
    const args = new Array<Scalar>(col.inputs.length);
    let blocked: ValueStatus | undefined;
    let newest = NaN;
    for (let k = 0; k < col.inputs.length; k++) {
      const src = col.inputs[k]!;
      const acceptsNull = col.transform.arguments[Math.min(k, col.transform.arguments.length - 1)]!.acceptsNull;
      if (src.kind === "request") {
        const v = own?.[src.name] ?? shared[src.name];
        if (v === undefined && src.required) throw new ValidationError(`${field}.request_data.${src.name}`, `is required by ${src.ref}`);
        args[k] = v ?? null;
        if (args[k] === null && !acceptsNull && blocked === undefined) blocked = "null";
        continue;
      }
      const input = storedValue(records[src.slot], src, plan.slots[src.slot]!.ttlMs, asOf, { status: "null", value: null, eventTime: NaN });
      if (!(input.eventTime <= newest)) newest = Number.isNaN(input.eventTime) ? newest : input.eventTime;
      args[k] = input.value;
      if (input.status !== "present" && !acceptsNull) {
        // NOT_FOUND and EXPIRED say more than NULL, so the first of those wins.
        if (blocked === undefined || (blocked === "null" && input.status !== "null")) blocked = input.status;
      }
    }
    value.eventTime = newest;
    if (blocked !== undefined) {
      value.status = blocked;
    } else {
      const result = coerceOutput(col.transform.fn(args, col.params), col.type);
      value.status = result === null ? "null" : "present";
      value.value = result;
    }
    out[c] = value;
  }
  return out;
}

export interface EntityInput {
  readonly keys: Readonly<Record<string, Scalar>>;
  readonly request: Readonly<Record<string, Scalar>> | undefined;
}

export class OnlineReader {
  /** The read-duration series of this store, bound on first use. */
  private readDuration: HistogramChild | undefined;
  private readonly counters = new WeakMap<ReadPlan, Array<Record<ValueStatus, { inc(n: number): void }>>>();
  /**
   * Values per column and status of the read being counted, reused: a fresh Int32Array per
   * read cost ~0.7 µs, a quarter of a cached one-entity read. The counting stretch of
   * `read` is synchronous, so reads never share it at once.
   */
  private counts = new Int32Array(64);

  constructor(
    private readonly online: OnlineStore,
    private readonly metrics: FeatureMetrics,
    private readonly limits: ReadLimits,
  ) {}

  /** Values for each entity (in order) and column, as of `now`. */
  async read(plan: ReadPlan, entities: readonly EntityInput[], shared: Readonly<Record<string, Scalar>>, now: number): Promise<ReadValue[][]> {
    if (entities.length > this.limits.maxEntitiesPerRead) {
      throw new ResourceExhaustedError(`at most ${this.limits.maxEntitiesPerRead} entities per call, got ${entities.length}`);
    }
    const started = performance.now();
    const perSlot: Array<ReadonlyArray<SlotRecord | undefined>> = [];
    for (const view of plan.slots) {
      const keys = new Array<string>(entities.length);
      for (let i = 0; i < entities.length; i++) keys[i] = entityKeyOf(view.entities, entities[i]!.keys, entityField(i), false, view.name);
      const found = await this.online.readMany(view.name, keys);
      // Decoded in place: each record then serves as its own SlotRecord.
      for (let i = 0; i < found.length; i++) if (found[i] !== undefined) slotRecordOf(found[i]!);
      perSlot.push(found as ReadonlyArray<SlotRecord | undefined>);
    }
    (this.readDuration ??= histogramChild(this.metrics.onlineReadDuration, { store: this.online.kind })).observe((performance.now() - started) / 1000);
    const records = new Array<SlotRecord | undefined>(plan.slots.length);
    const rows = new Array<ReadValue[]>(entities.length);
    const n = plan.columns.length * 4;
    if (this.counts.length < n) this.counts = new Int32Array(n);
    const counts = this.counts;
    counts.fill(0, 0, n);
    for (let i = 0; i < entities.length; i++) {
      for (let s = 0; s < perSlot.length; s++) records[s] = perSlot[s]![i];
      const values = evaluateRow(plan, records, now, entities[i]!.request, shared, entityField(i));
      for (let c = 0; c < values.length; c++) counts[c * 4 + STATUS_INDEX[values[c]!.status]]! += 1;
      rows[i] = values;
    }
    this.count(plan, counts);
    return rows;
  }

  /** Metric increments once per column and status, not per value. */
  private count(plan: ReadPlan, counts: Int32Array): void {
    let children = this.counters.get(plan);
    if (!children) {
      children = plan.columnViews.map((view) => ({
        present: counterChild(this.metrics.onlineValues, { view, status: "present" }),
        not_found: counterChild(this.metrics.onlineValues, { view, status: "not_found" }),
        expired: counterChild(this.metrics.onlineValues, { view, status: "expired" }),
        null: counterChild(this.metrics.onlineValues, { view, status: "null" }),
      }));
      this.counters.set(plan, children);
    }
    for (let c = 0; c < children.length; c++) {
      const ch = children[c]!;
      if (counts[c * 4]) ch.present.inc(counts[c * 4]!);
      if (counts[c * 4 + 1]) ch.not_found.inc(counts[c * 4 + 1]!);
      if (counts[c * 4 + 2]) ch.expired.inc(counts[c * 4 + 2]!);
      if (counts[c * 4 + 3]) ch.null.inc(counts[c * 4 + 3]!);
    }
  }
}

const STATUS_INDEX: Record<ValueStatus, number> = { present: 0, not_found: 1, expired: 2, null: 3 };

/** `entities[i]`, the field an error about entity i names; built once for common indexes. */
const ENTITY_FIELDS = Array.from({ length: 1024 }, (_, i) => `entities[${i}]`);
function entityField(i: number): string {
  return ENTITY_FIELDS[i] ?? `entities[${i}]`;
}

export interface HistoricalInput {
  readonly keys: Readonly<Record<string, Scalar>>;
  readonly asOf: number;
  readonly request: Readonly<Record<string, Scalar>>;
}

export interface HistoricalRow {
  readonly index: number;
  readonly values: ReadValue[];
}

export class HistoricalReader {
  constructor(
    private readonly offline: OfflineStore,
    private readonly metrics: FeatureMetrics,
    private readonly limits: ReadLimits,
  ) {}

  /**
   * The point-in-time join of `rows` (request order kept), in chunks so memory stays
   * bounded by the chunk, not the entity dataframe.
   */
  async *read(plan: ReadPlan, rows: readonly HistoricalInput[], chunkSize = 1000): AsyncGenerator<HistoricalRow[]> {
    if (rows.length > this.limits.maxHistoricalRows) {
      throw new ResourceExhaustedError(`at most ${this.limits.maxHistoricalRows} entity rows per call, got ${rows.length}; split the entity dataframe`);
    }
    // Check every key before streaming anything: a bad row fails the call, not half of it.
    const keysBySlot = plan.slots.map((view) => rows.map((r, i) => entityKeyOf(view.entities, r.keys, `entity_rows[${i}].entity_key`, false, view.name)));
    for (let start = 0; start < rows.length; start += chunkSize) {
      const end = Math.min(rows.length, start + chunkSize);
      const perSlot = plan.slots.map((view, s) => this.joinChunk(view, keysBySlot[s]!, rows, start, end));
      const out: HistoricalRow[] = [];
      const records = new Array<SlotRecord | undefined>(plan.slots.length);
      for (let i = start; i < end; i++) {
        for (let s = 0; s < perSlot.length; s++) records[s] = perSlot[s]![i - start];
        const r = rows[i]!;
        out.push({ index: i, values: evaluateRow(plan, records, r.asOf, undefined, r.request, `entity_rows[${i}]`) });
      }
      for (const view of plan.slots) this.metrics.historicalRows.inc({ view: view.name }, end - start);
      yield out;
      // Let other calls run between chunks of a large join.
      await new Promise((r) => setImmediate(r));
    }
  }

  /** For rows [start, end): the offline row each takes from `view` as of its time. */
  private joinChunk(view: StoredView, keys: readonly string[], rows: readonly HistoricalInput[], start: number, end: number): Array<SlotRecord | undefined> {
    // Group the chunk's rows by entity so each entity's history is read once.
    const byKey = new Map<string, number[]>();
    for (let i = start; i < end; i++) {
      const list = byKey.get(keys[i]!);
      if (list) list.push(i);
      else byKey.set(keys[i]!, [i]);
    }
    const out = new Array<SlotRecord | undefined>(end - start);
    for (const [key, idx] of byKey) {
      let lo = Infinity;
      let hi = -Infinity;
      for (const i of idx) {
        lo = Math.min(lo, rows[i]!.asOf);
        hi = Math.max(hi, rows[i]!.asOf);
      }
      // With a TTL only [lo - ttl, hi] can be PRESENT; the one row before that window is
      // enough to tell EXPIRED from NOT_FOUND.
      const from = view.ttlMs > 0 ? lo - view.ttlMs : -Number.MAX_SAFE_INTEGER;
      const history = this.offline.history(view.name, key, from, hi);
      if (view.ttlMs > 0) {
        const before = this.offline.latestBefore(view.name, key, from);
        if (before) history.unshift(before);
      }
      const times = new Float64Array(history.length);
      for (let h = 0; h < history.length; h++) times[h] = history[h]!.eventTime;
      const decoded = new Array<SlotRecord | undefined>(history.length);
      for (const i of idx) {
        const j = joinAsOf(times, rows[i]!.asOf, 0);
        if (j.status === "not_found") continue;
        // TTL is applied by evaluateRow, exactly as on the online path.
        out[i - start] = decoded[j.index] ??= { eventTime: history[j.index]!.eventTime, values: JSON.parse(history[j.index]!.valuesJson) as unknown[] };
      }
    }
    return out;
  }
}
