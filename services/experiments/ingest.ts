// Exposure, outcome and covariate ingest into per-arm sufficient statistics. Each exposed
// unit's aggregates per metric are kept (unit_metrics) so a late outcome or covariate
// replaces that unit's contribution in O(1); the per-arm statistics (arm_stats) are what the
// analysis reads, so a report costs O(arms). A batch is one transaction: all or nothing.
// Hot path (issue #6 ingest rate): committed unit rows and exposures sit in bounded
// read-through caches (this class is their only writer, so they never go stale); a batch
// works on copies, writes its rows with multi-row statements at the end of its transaction,
// and only after the commit do the copies become the in-memory state. Reads a batch needs
// from SQLite (a redelivered outcome id, an uncached unit's exposures, a newly exposed unit's
// earlier outcomes) are indexed IN lookups of CHUNK keys, not a statement per key: SQLite's
// per-statement cost, not its b-tree, was most of their price.

import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type Database from "better-sqlite3";
import {
  ExperimentStatus,
  MetricType,
  type Covariate,
  type Experiment,
  type Exposure,
  type Metric,
  type Outcome,
} from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { NotFoundError, ResourceExhaustedError, ValidationError } from "../../lib/errors.js";
import type { ExperimentStore } from "./store.js";
import { addObservation, emptyStats, type ArmStats } from "./stats/sufficient-stats.js";

/** "cov": units with the metric's CUPED covariate; "plain": the others (and every non-CUPED metric). */
export type Part = "cov" | "plain";

interface UnitState {
  num: number;
  den: number;
  cov: number | null;
}

interface Contribution {
  readonly part: Part;
  readonly y: number;
  readonly x: number;
}

/** Removes one unit's (y, x) from running moments: the exact inverse of addObservation. */
export function removeObservation(s: ArmStats, y: number, x = 0): ArmStats {
  if (s.n <= 1) return Object.assign(s, emptyStats());
  const n = s.n - 1;
  const meanY = (s.meanY * s.n - y) / n;
  const meanX = (s.meanX * s.n - x) / n;
  s.m2Y = Math.max(0, s.m2Y - (y - meanY) * (y - s.meanY));
  s.m2X = Math.max(0, s.m2X - (x - meanX) * (x - s.meanX));
  s.cXY = s.cXY - (x - meanX) * (y - s.meanY);
  s.n = n;
  s.meanY = meanY;
  s.meanX = meanX;
  return s;
}

function contribution(m: Metric, u: UnitState): Contribution {
  if (m.type === MetricType.RATIO) return { part: "plain", y: u.num, x: u.den };
  const y = m.type === MetricType.PROPORTION ? (u.num > 0 ? 1 : 0) : u.num;
  return m.covariate !== "" && u.cov !== null ? { part: "cov", y, x: u.cov } : { part: "plain", y, x: 0 };
}

const metricKey = (exp: string, metric: string) => `${exp}\u0000${metric}`;

/** Outcome names a metric reads: [numerator-side, denominator-side]. */
function reads(m: Metric): [string, string] {
  return m.type === MetricType.RATIO ? [m.numerator, m.denominator] : [m.outcome || m.name, ""];
}

const statsKey = (exp: string, metric: string, arm: string, part: Part) => `${exp}\u0000${metric}\u0000${arm}\u0000${part}`;

/** One metric's map keys and read names, built once instead of a string concatenation per outcome. */
interface MetricKeys {
  /** metricKey(experiment, metric). */
  readonly mk: string;
  readonly num: string;
  readonly den: string;
  /** statsKey per arm and part. */
  readonly stats: Map<string, Record<Part, string>>;
}

// Keyed by the definition's Metric object: the store replaces a changed definition with a
// new object (clone, then change) and never edits a stored one, so an entry cannot go stale.
const metricKeys = new WeakMap<Metric, MetricKeys>();

function keysOf(e: Experiment, m: Metric): MetricKeys {
  let k = metricKeys.get(m);
  if (!k) {
    const [num, den] = reads(m);
    k = { mk: metricKey(e.key, m.name), num, den, stats: new Map() };
    metricKeys.set(m, k);
  }
  return k;
}

function statsKeyOf(k: MetricKeys, e: Experiment, m: Metric, arm: string, part: Part): string {
  let byPart = k.stats.get(arm);
  if (!byPart) k.stats.set(arm, (byPart = { cov: statsKey(e.key, m.name, arm, "cov"), plain: statsKey(e.key, m.name, arm, "plain") }));
  return byPart[part];
}

function timeOf(field: string, t: Timestamp | undefined, fallback?: number): number {
  if (!t) {
    if (fallback !== undefined) return fallback;
    throw new ValidationError(field, "is required");
  }
  const ms = timestampMs(t);
  if (!Number.isFinite(ms)) throw new ValidationError(field, "is not a valid time");
  return ms;
}

export interface IngestResult {
  readonly accepted: number;
  readonly duplicates: number;
  readonly ignored: number;
}

/** A unit's first exposure to one experiment. */
interface ExposureRef {
  readonly experimentKey: string;
  readonly arm: string;
  readonly time: number;
}

interface UnitRow extends UnitState {
  arm: string;
}

/** A unit row with its key parts, as a batch holds it until it is written. */
interface TxUnit extends UnitRow {
  /** metricKey(exp, metric). */
  readonly mk: string;
  readonly exp: string;
  readonly metric: string;
  readonly unit: string;
}

/**
 * Unit rows keyed by (experiment, metric) then unit id: the unit id is the decoded message's
 * own string, hashed once, instead of a fresh concatenated key per outcome.
 */
class UnitRows<R extends UnitRow> {
  private readonly byMetric = new Map<string, Map<string, R>>();
  private entries = 0;

  constructor(private readonly limit = Infinity) {}

  get(mk: string, unit: string): R | undefined {
    return this.byMetric.get(mk)?.get(unit);
  }

  set(mk: string, unit: string, row: R): void {
    let units = this.byMetric.get(mk);
    if (!units) this.byMetric.set(mk, (units = new Map()));
    if (!units.has(unit)) {
      if (this.entries >= this.limit) {
        this.byMetric.clear();
        this.entries = 0;
        this.byMetric.set(mk, (units = new Map()));
      }
      this.entries++;
    }
    units.set(unit, row);
  }

  *values(): IterableIterator<R> {
    for (const units of this.byMetric.values()) yield* units.values();
  }
}

/**
 * Entries each read-through cache holds before it is dropped and refilled on demand. The
 * Ingestor is the only writer of exposures and unit_metrics, so the caches never go stale;
 * the bound only caps memory (~200 bytes an entry).
 */
const CACHE_ENTRIES = 1_000_000;
/** Rows per multi-row INSERT: fewer statement executions, far below SQLite's 32766 parameters. */
const CHUNK = 64;
const EMPTY: readonly ExposureRef[] = Object.freeze([]);

interface StoredOutcome {
  readonly metric: string;
  readonly value: number;
  readonly time: number;
  readonly experimentKey: string;
  readonly unitType: number;
}
const EMPTY_OUTCOMES: readonly StoredOutcome[] = Object.freeze([]);

export class Ingestor {
  private readonly stats = new Map<string, ArmStats>();
  private readonly counts = new Map<string, number>();
  /** Committed exposures per unit (EMPTY: known to have none). */
  private readonly exposureCache = new Map<string, readonly ExposureRef[]>();
  /** Committed unit_metrics rows. */
  private readonly unitCache = new UnitRows<UnitRow>(CACHE_ENTRIES);
  private readonly st: Statements;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly defs: ExperimentStore,
    private readonly maxBatch: number,
    private readonly clock: () => number = Date.now,
  ) {
    for (const r of sqlite.prepare("SELECT experiment_key, metric, arm, part, stats_json FROM arm_stats").all() as Array<Record<string, string>>) {
      this.stats.set(statsKey(r.experiment_key!, r.metric!, r.arm!, r.part as Part), JSON.parse(r.stats_json!) as ArmStats);
    }
    for (const r of sqlite.prepare("SELECT experiment_key, phase, arm, units FROM exposure_counts").all() as Array<{ experiment_key: string; phase: number; arm: string; units: number }>) {
      this.counts.set(`${r.experiment_key}\u0000${r.phase}\u0000${r.arm}`, r.units);
    }
    this.st = prepare(sqlite);
  }

  /** Running statistics of one metric and arm, per part (copies). */
  armStats(experiment: string, metric: string, arm: string): Record<Part, ArmStats> {
    const get = (p: Part) => ({ ...(this.stats.get(statsKey(experiment, metric, arm, p)) ?? emptyStats()) });
    return { cov: get("cov"), plain: get("plain") };
  }

  /** Per-unit values of a MEAN/PROPORTION metric in one arm (the bootstrap reads them; O(units)). */
  unitValues(experiment: Experiment, metric: string, arm: string): number[] {
    const m = experiment.metrics.find((x) => x.name === metric);
    if (!m) return [];
    const rows = this.st.unitValues.all(experiment.key, metric, arm) as UnitState[];
    return rows.map((u) => contribution(m, u).y);
  }

  /** Deduplicated exposed units per phase of each arm. */
  exposureCounts(experiment: Experiment): Array<{ phase: number; arm: string; units: number }> {
    const out: Array<{ phase: number; arm: string; units: number }> = [];
    const phases = Math.max(1, experiment.phases.length);
    for (let phase = 0; phase < phases; phase++) {
      for (const a of experiment.arms) out.push({ phase, arm: a.name, units: this.counts.get(`${experiment.key}\u0000${phase}\u0000${a.name}`) ?? 0 });
    }
    return out;
  }

  private checkBatch(field: string, n: number): void {
    if (n > this.maxBatch) throw new ResourceExhaustedError(`${field}: ${n} entries exceed the limit of ${this.maxBatch} per call; split the batch`);
  }

  logExposures(list: readonly Exposure[]): IngestResult {
    this.checkBatch("exposures", list.length);
    const checked = list.map((x, i) => {
      const e = this.defs.find(x.experimentKey);
      if (!e) throw new NotFoundError("experiment", x.experimentKey, `exposures[${i}].experiment_key`);
      if (x.unitId === "") throw new ValidationError(`exposures[${i}].unit_id`, "must not be empty");
      if (!e.arms.some((a) => a.name === x.arm)) throw new ValidationError(`exposures[${i}].arm`, `${JSON.stringify(x.arm)} is not an arm of ${e.key} (${e.arms.map((a) => a.name).join(", ")})`);
      return { x, e, time: timeOf(`exposures[${i}].time`, x.time) };
    });
    return this.batch((tx) => {
      let accepted = 0;
      let duplicates = 0;
      let ignored = 0;
      const units = checked.map((c) => c.x.unitId);
      this.prefetchExposures(tx, units);
      const stored = this.storedOutcomes(units);
      for (const { x, e, time } of checked) {
        const prior = this.exposuresOf(tx, x.unitId).find((r) => r.experimentKey === e.key);
        if (prior !== undefined) {
          if (prior.arm === x.arm) duplicates++;
          else ignored++;
          continue;
        }
        if (e.status !== ExperimentStatus.RUNNING) {
          ignored++;
          continue;
        }
        const phase = Math.min(Math.max(0, x.phase), Math.max(0, e.phases.length - 1));
        tx.newExposures.push(e.key, x.unitId, x.arm, time, phase);
        tx.exposures.set(x.unitId, [...this.exposuresOf(tx, x.unitId), { experimentKey: e.key, arm: x.arm, time }]);
        tx.count(e.key, phase, x.arm);
        // Outcomes that arrived before the exposure (at or after its time) count for the unit.
        const pending = (stored.get(x.unitId) ?? EMPTY_OUTCOMES).filter(
          (o) => o.time >= time && (o.experimentKey === "" || o.experimentKey === e.key) && (o.unitType === 0 || o.unitType === e.unitType),
        );
        for (const m of e.metrics) {
          const keys = keysOf(e, m);
          const { num, den } = keys;
          const u: TxUnit = { num: 0, den: 0, cov: null, arm: x.arm, mk: keys.mk, exp: e.key, metric: m.name, unit: x.unitId };
          for (const o of pending) {
            if (o.metric === num) u.num += o.value;
            if (den !== "" && o.metric === den) u.den += o.value;
          }
          if (m.covariate !== "") u.cov = (this.st.covariate.get(x.unitId, m.covariate, e.key) as { value: number } | undefined)?.value ?? null;
          tx.units.set(keys.mk, x.unitId, u);
          const c = contribution(m, u);
          addObservation(tx.stats(statsKeyOf(keys, e, m, x.arm, c.part)), c.y, c.x);
        }
        accepted++;
      }
      return { accepted, duplicates, ignored };
    });
  }

  logOutcomes(list: readonly Outcome[]): { accepted: number; duplicates: number } {
    this.checkBatch("outcomes", list.length);
    const now = this.clock();
    const times = new Float64Array(list.length);
    for (let i = 0; i < list.length; i++) {
      const o = list[i]!;
      if (o.unitId === "") throw new ValidationError(`outcomes[${i}].unit_id`, "must not be empty");
      if (o.metric === "") throw new ValidationError(`outcomes[${i}].metric`, "must not be empty");
      if (!Number.isFinite(o.value)) throw new ValidationError(`outcomes[${i}].value`, `must be finite, got ${o.value}`);
      if (o.experimentKey !== "" && !this.defs.find(o.experimentKey)) throw new NotFoundError("experiment", o.experimentKey, `outcomes[${i}].experiment_key`);
      times[i] = timeOf(`outcomes[${i}].time`, o.time, now);
    }
    return this.batch((tx) => {
      // Repeats of an outcome_id inside the batch are dropped here; repeats of an earlier
      // batch's id are found in the unique index, CHUNK ids a lookup, in this transaction.
      const ids = new Set<string>();
      const fresh: number[] = [];
      for (let i = 0; i < list.length; i++) {
        const id = list[i]!.outcomeId;
        if (id !== "") {
          if (ids.has(id)) continue;
          ids.add(id);
        }
        fresh.push(i);
      }
      const stored = new Set<string>();
      const lookup = [...ids];
      for (let k = 0; k < lookup.length; k += CHUNK) {
        const part = lookup.slice(k, k + CHUNK);
        const st = part.length === CHUNK ? this.st.storedIds : this.sqlite.prepare(storedIdsSql(part.length)).pluck();
        for (const id of st.all(part) as string[]) stored.add(id);
      }
      this.prefetchExposures(tx, list.map((o) => o.unitId));
      const flat: Array<string | number> = [];
      let accepted = 0;
      for (const i of fresh) {
        const o = list[i]!;
        if (o.outcomeId !== "" && stored.has(o.outcomeId)) continue;
        accepted++;
        flat.push(o.unitId, o.unitType, o.metric, o.value, times[i]!, o.outcomeId, o.experimentKey);
        const time = times[i]!;
        for (const x of this.exposuresOf(tx, o.unitId)) {
          if (x.time > time) continue;
          if (o.experimentKey !== "" && o.experimentKey !== x.experimentKey) continue;
          const e = this.defs.find(x.experimentKey);
          if (!e || e.status !== ExperimentStatus.RUNNING) continue;
          if (o.unitType !== 0 && o.unitType !== e.unitType) continue;
          for (const m of e.metrics) {
            const { num, den } = keysOf(e, m);
            if (o.metric !== num && o.metric !== den) continue;
            this.replace(tx, e, m, o.unitId, o.metric === num ? o.value : 0, den !== "" && o.metric === den ? o.value : 0, undefined);
          }
        }
      }
      writeChunked(flat, 7, this.st.insertOutcomes, this.st.insertOutcome);
      return { accepted, duplicates: list.length - accepted };
    });
  }

  setCovariates(list: readonly Covariate[]): { accepted: number } {
    this.checkBatch("covariates", list.length);
    list.forEach((c, i) => {
      if (c.unitId === "") throw new ValidationError(`covariates[${i}].unit_id`, "must not be empty");
      if (c.name === "") throw new ValidationError(`covariates[${i}].name`, "must not be empty");
      if (!Number.isFinite(c.value)) throw new ValidationError(`covariates[${i}].value`, `must be finite, got ${c.value}`);
      if (c.experimentKey !== "" && !this.defs.find(c.experimentKey)) throw new NotFoundError("experiment", c.experimentKey, `covariates[${i}].experiment_key`);
    });
    return this.batch((tx) => {
      for (const c of list) {
        this.st.upsertCovariate.run(c.unitId, c.name, c.experimentKey, c.unitType, c.value);
        for (const x of this.exposuresOf(tx, c.unitId)) {
          const e = this.defs.find(x.experimentKey);
          if (!e || (c.experimentKey !== "" && c.experimentKey !== e.key)) continue;
          if (c.unitType !== 0 && c.unitType !== e.unitType) continue;
          for (const m of e.metrics) {
            if (m.covariate !== c.name) continue;
            const value = (this.st.covariate.get(c.unitId, c.name, e.key) as { value: number } | undefined)?.value ?? null;
            this.replace(tx, e, m, c.unitId, 0, 0, value);
          }
        }
      }
      return { accepted: list.length };
    });
  }

  /**
   * Reads the exposures of the units neither this batch nor the cache knows, CHUNK units a
   * statement, into the cache (read before the batch wrote anything for them: committed state).
   */
  private prefetchExposures(tx: Tx, units: readonly string[]): void {
    const missing: string[] = [];
    const seen = new Set<string>();
    for (const u of units) {
      if (seen.has(u) || tx.exposures.has(u) || this.exposureCache.has(u)) continue;
      seen.add(u);
      missing.push(u);
    }
    for (let i = 0; i < missing.length; i += CHUNK) {
      const part = missing.slice(i, i + CHUNK);
      const st = part.length === CHUNK ? this.st.exposuresOfUnits : this.sqlite.prepare(unitsInSql(EXPOSURES_OF, part.length));
      const found = new Map<string, ExposureRef[]>();
      for (const r of st.all(part) as Array<{ unit_id: string; experiment_key: string; arm: string; time: number }>) {
        let rows = found.get(r.unit_id);
        if (!rows) found.set(r.unit_id, (rows = []));
        rows.push({ experimentKey: r.experiment_key, arm: r.arm, time: r.time });
      }
      for (const u of part) cachePut(this.exposureCache, u, found.get(u) ?? EMPTY);
    }
  }

  /** Stored outcomes of the given units, by unit, CHUNK units a statement. */
  private storedOutcomes(units: readonly string[]): Map<string, StoredOutcome[]> {
    const out = new Map<string, StoredOutcome[]>();
    const distinct = [...new Set(units)];
    for (let i = 0; i < distinct.length; i += CHUNK) {
      const part = distinct.slice(i, i + CHUNK);
      const st = part.length === CHUNK ? this.st.outcomesOfUnits : this.sqlite.prepare(unitsInSql(OUTCOMES_OF, part.length));
      for (const r of st.all(part) as Array<{ unit_id: string; metric: string; value: number; time: number; experiment_key: string; unit_type: number }>) {
        let rows = out.get(r.unit_id);
        if (!rows) out.set(r.unit_id, (rows = []));
        rows.push({ metric: r.metric, value: r.value, time: r.time, experimentKey: r.experiment_key, unitType: r.unit_type });
      }
    }
    return out;
  }

  /** The unit's exposures as this transaction sees them (its own new ones included). */
  private exposuresOf(tx: Tx, unitId: string): readonly ExposureRef[] {
    const own = tx.exposures.get(unitId);
    if (own) return own;
    let rows = this.exposureCache.get(unitId);
    if (rows === undefined) {
      const found = this.st.exposuresOfUnit.all(unitId) as Array<{ experiment_key: string; arm: string; time: number }>;
      rows = found.length === 0 ? EMPTY : found.map((r) => ({ experimentKey: r.experiment_key, arm: r.arm, time: r.time }));
      // Read before this transaction wrote anything for the unit (its writes live in tx until
      // commit), so this is the committed state and safe to cache even if the batch fails.
      cachePut(this.exposureCache, unitId, rows);
    }
    return rows;
  }

  /**
   * Replaces one unit's contribution to its arm's statistics after adding dNum/dDen to its
   * sums and, unless `cov` is undefined, setting its covariate.
   */
  private replace(tx: Tx, e: Experiment, m: Metric, unitId: string, dNum: number, dDen: number, cov: number | null | undefined): void {
    const keys = keysOf(e, m);
    const mk = keys.mk;
    let u = tx.units.get(mk, unitId);
    if (!u) {
      let committed = this.unitCache.get(mk, unitId);
      if (committed === undefined) {
        committed = this.st.unitMetric.get(e.key, m.name, unitId) as UnitRow | undefined;
        if (!committed) return;
        this.unitCache.set(mk, unitId, committed);
      }
      u = { num: committed.num, den: committed.den, cov: committed.cov, arm: committed.arm, mk, exp: e.key, metric: m.name, unit: unitId };
      tx.units.set(mk, unitId, u);
    }
    const before = contribution(m, u);
    u.num += dNum;
    u.den += dDen;
    if (cov !== undefined) u.cov = cov;
    const after = contribution(m, u);
    removeObservation(tx.stats(statsKeyOf(keys, e, m, u.arm, before.part)), before.y, before.x);
    addObservation(tx.stats(statsKeyOf(keys, e, m, u.arm, after.part)), after.y, after.x);
  }

  /**
   * Runs `work` in one transaction over copies of everything it changes (statistics, counts,
   * unit rows, exposures), writes the changed rows in multi-row statements at the end, and
   * only after the commit makes the copies the in-memory state: a failed batch leaves memory
   * and disk as they were, and an acknowledged batch is on disk.
   */
  private batch<T>(work: (tx: Tx) => T): T {
    const touched = new Map<string, ArmStats>();
    const counted = new Map<string, number>();
    const tx: Tx = {
      units: new UnitRows<TxUnit>(),
      exposures: new Map(),
      newExposures: [],
      stats: (k) => {
        let s = touched.get(k);
        if (!s) {
          s = { ...(this.stats.get(k) ?? emptyStats()) };
          touched.set(k, s);
        }
        return s;
      },
      count: (exp, phase, arm) => {
        const k = `${exp}\u0000${phase}\u0000${arm}`;
        counted.set(k, (counted.get(k) ?? this.counts.get(k) ?? 0) + 1);
      },
    };
    const result = this.sqlite.transaction(() => {
      const r = work(tx);
      writeChunked(tx.newExposures, 5, this.st.insertExposures, this.st.insertExposure);
      const flat: Array<string | number | null> = [];
      for (const u of tx.units.values()) flat.push(u.exp, u.metric, u.unit, u.arm, u.num, u.den, u.cov);
      writeChunked(flat, 7, this.st.upsertUnitMetrics, this.st.upsertUnitMetric);
      for (const [k, s] of touched) {
        const [exp, metric, arm, part] = k.split("\u0000");
        this.st.upsertStats.run(exp, metric, arm, part, JSON.stringify(s));
      }
      for (const [k, n] of counted) {
        const [exp, phase, arm] = k.split("\u0000");
        this.st.upsertCount.run(exp, Number(phase), arm, n);
      }
      return r;
    })();
    for (const [k, s] of touched) this.stats.set(k, s);
    for (const [k, n] of counted) this.counts.set(k, n);
    for (const u of tx.units.values()) this.unitCache.set(u.mk, u.unit, u);
    for (const [unit, rows] of tx.exposures) cachePut(this.exposureCache, unit, rows);
    return result;
  }
}

function cachePut<V>(cache: Map<string, V>, k: string, v: V): void {
  if (cache.size >= CACHE_ENTRIES && !cache.has(k)) cache.clear();
  cache.set(k, v);
}

/** Writes rows given flat (`columns` values each) with the CHUNK-row statement, the remainder one row at a time. */
function writeChunked(flat: ReadonlyArray<string | number | null>, columns: number, many: Database.Statement, one: Database.Statement): void {
  const size = CHUNK * columns;
  let i = 0;
  for (; i + size <= flat.length; i += size) many.run(flat.slice(i, i + size));
  for (; i < flat.length; i += columns) one.run(flat.slice(i, i + columns));
}

interface Tx {
  /** Unit rows this batch changed or created (written at the end). */
  readonly units: UnitRows<TxUnit>;
  /** Exposures per unit as they stand inside this batch. */
  readonly exposures: Map<string, readonly ExposureRef[]>;
  /** New exposure rows, flat: experiment, unit, arm, time, phase. */
  readonly newExposures: Array<string | number>;
  /** The batch's copy of the statistics under a statsKey. */
  stats(key: string): ArmStats;
  count(exp: string, phase: number, arm: string): void;
}

const EXPOSURES_OF = "SELECT unit_id, experiment_key, arm, time FROM exposures";
const OUTCOMES_OF = "SELECT unit_id, metric, value, time, experiment_key, unit_type FROM outcomes";
/** `<select> WHERE unit_id IN (n placeholders)`: served by the unit_id indexes. */
const unitsInSql = (select: string, n: number) => `${select} WHERE unit_id IN (${Array(n).fill("?").join(", ")})`;
/** Which of n outcome ids are stored; the `<> ''` lets SQLite use the partial unique index. */
const storedIdsSql = (n: number) => `SELECT outcome_id FROM outcomes WHERE outcome_id IN (${Array(n).fill("?").join(", ")}) AND outcome_id <> ''`;

const values = (columns: number, rows: number) => Array.from({ length: rows }, () => `(${Array(columns).fill("?").join(", ")})`).join(", ");

function prepare(sqlite: Database.Database) {
  const outcomeInsert = (rows: number) =>
    sqlite.prepare(
      `INSERT INTO outcomes (unit_id, unit_type, metric, value, time, outcome_id, experiment_key) VALUES ${values(7, rows)}`,
    );
  const exposureInsert = (rows: number) => sqlite.prepare(`INSERT INTO exposures (experiment_key, unit_id, arm, time, phase) VALUES ${values(5, rows)}`);
  const unitUpsert = (rows: number) =>
    sqlite.prepare(
      `INSERT INTO unit_metrics (experiment_key, metric, unit_id, arm, num, den, cov) VALUES ${values(7, rows)} ON CONFLICT(experiment_key, metric, unit_id) DO UPDATE SET num = excluded.num, den = excluded.den, cov = excluded.cov`,
    );
  return {
    insertExposure: exposureInsert(1),
    insertExposures: exposureInsert(CHUNK),
    exposuresOfUnit: sqlite.prepare("SELECT experiment_key, arm, time FROM exposures WHERE unit_id = ?"),
    exposuresOfUnits: sqlite.prepare(unitsInSql(EXPOSURES_OF, CHUNK)),
    outcomesOfUnits: sqlite.prepare(unitsInSql(OUTCOMES_OF, CHUNK)),
    storedIds: sqlite.prepare(storedIdsSql(CHUNK)).pluck(),
    insertOutcome: outcomeInsert(1),
    insertOutcomes: outcomeInsert(CHUNK),
    covariate: sqlite.prepare("SELECT value FROM covariates WHERE unit_id = ? AND name = ? AND experiment_key IN (?, '') ORDER BY experiment_key DESC LIMIT 1"),
    upsertCovariate: sqlite.prepare(
      "INSERT INTO covariates (unit_id, name, experiment_key, unit_type, value) VALUES (?, ?, ?, ?, ?) ON CONFLICT(unit_id, name, experiment_key) DO UPDATE SET value = excluded.value, unit_type = excluded.unit_type",
    ),
    unitMetric: sqlite.prepare("SELECT num, den, cov, arm FROM unit_metrics WHERE experiment_key = ? AND metric = ? AND unit_id = ?"),
    unitValues: sqlite.prepare("SELECT num, den, cov FROM unit_metrics WHERE experiment_key = ? AND metric = ? AND arm = ?"),
    upsertUnitMetric: unitUpsert(1),
    upsertUnitMetrics: unitUpsert(CHUNK),
    upsertStats: sqlite.prepare(
      "INSERT INTO arm_stats (experiment_key, metric, arm, part, stats_json) VALUES (?, ?, ?, ?, ?) ON CONFLICT(experiment_key, metric, arm, part) DO UPDATE SET stats_json = excluded.stats_json",
    ),
    upsertCount: sqlite.prepare(
      "INSERT INTO exposure_counts (experiment_key, phase, arm, units) VALUES (?, ?, ?, ?) ON CONFLICT(experiment_key, phase, arm) DO UPDATE SET units = excluded.units",
    ),
  };
}

type Statements = ReturnType<typeof prepare>;
