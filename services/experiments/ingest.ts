// Exposure, outcome and covariate ingest into per-arm sufficient statistics. Each exposed
// unit's aggregates per metric are kept (unit_metrics) so a late outcome or covariate
// replaces that unit's contribution in O(1); the per-arm statistics (arm_stats) are what the
// analysis reads, so a report costs O(arms). A batch is one transaction: all or nothing.
// Hot path (issue #6 ingest rate): committed unit rows and exposures sit in bounded
// read-through caches (this class is their only writer, so they never go stale); a batch
// works on copies of statistics and exposures, changes cached unit rows in place with an undo
// list (restored if it fails), writes its rows with multi-row statements in its transaction,
// and only after the commit do the copies become the in-memory state. Reads a batch needs
// from SQLite (a redelivered outcome id, an uncached unit's exposures, a newly exposed unit's
// earlier outcomes) are indexed IN lookups of CHUNK keys, not a statement per key: SQLite's
// per-statement cost, not its b-tree, was most of their price.

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
import { exposureRow, outcomeColumns, type ExposureRow, type OutcomeColumns } from "./ingest-wire.js";
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

/** A unit_metrics row with its key parts, as the cache holds it. */
interface UnitRow extends UnitState {
  arm: string;
  /** metricKey(exp, metric). */
  readonly mk: string;
  readonly exp: string;
  readonly metric: string;
  readonly unit: string;
  /** The batch that last changed the row (Tx.epoch): a row joins a batch's dirty list once. */
  epoch: number;
}

/** How to take back one row change of a failed batch. */
interface UnitUndo {
  readonly row: UnitRow;
  /** The batch created the row: drop it from the cache. */
  readonly created: boolean;
  readonly num: number;
  readonly den: number;
  readonly cov: number | null;
}

/**
 * Unit rows keyed by (experiment, metric) then unit id: the unit id is the decoded message's
 * own string, hashed once, instead of a fresh concatenated key per outcome.
 */
class UnitRows {
  private readonly byMetric = new Map<string, Map<string, UnitRow>>();
  private entries = 0;

  constructor(private readonly limit: number) {}

  get(mk: string, unit: string): UnitRow | undefined {
    return this.byMetric.get(mk)?.get(unit);
  }

  set(row: UnitRow): void {
    let units = this.byMetric.get(row.mk);
    if (!units) this.byMetric.set(row.mk, (units = new Map()));
    if (!units.has(row.unit)) this.entries++;
    units.set(row.unit, row);
  }

  delete(row: UnitRow): void {
    const units = this.byMetric.get(row.mk);
    if (units?.get(row.unit) === row) {
      units.delete(row.unit);
      this.entries--;
    }
  }

  /** Drops everything past the bound; only between batches, so a batch never loses a row it changed. */
  trim(): void {
    if (this.entries <= this.limit) return;
    this.byMetric.clear();
    this.entries = 0;
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
  private readonly unitCache = new UnitRows(CACHE_ENTRIES);
  /** Numbers batches for UnitRow.epoch. */
  private epoch = 0;
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
    return this.logExposureRows(list.map(exposureRow));
  }

  /** logExposures over rows (what the gRPC port's decoder reads straight from the bytes). */
  logExposureRows(list: readonly ExposureRow[]): IngestResult {
    this.checkBatch("exposures", list.length);
    const checked = list.map((x, i) => {
      const e = this.defs.find(x.experimentKey);
      if (!e) throw new NotFoundError("experiment", x.experimentKey, `exposures[${i}].experiment_key`);
      if (x.unitId === "") throw new ValidationError(`exposures[${i}].unit_id`, "must not be empty");
      if (!e.arms.some((a) => a.name === x.arm)) throw new ValidationError(`exposures[${i}].arm`, `${JSON.stringify(x.arm)} is not an arm of ${e.key} (${e.arms.map((a) => a.name).join(", ")})`);
      if (Number.isNaN(x.timeMs)) throw new ValidationError(`exposures[${i}].time`, "is required");
      if (!Number.isFinite(x.timeMs)) throw new ValidationError(`exposures[${i}].time`, "is not a valid time");
      return { x, e, time: x.timeMs };
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
          const u: UnitRow = { num: 0, den: 0, cov: null, arm: x.arm, mk: keys.mk, exp: e.key, metric: m.name, unit: x.unitId, epoch: tx.epoch };
          for (const o of pending) {
            if (o.metric === num) u.num += o.value;
            if (den !== "" && o.metric === den) u.den += o.value;
          }
          if (m.covariate !== "") u.cov = (this.st.covariate.get(x.unitId, m.covariate, e.key) as { value: number } | undefined)?.value ?? null;
          // Not exposed before (checked above), so no row exists for the unit and metric.
          this.unitCache.set(u);
          tx.dirty.push(u);
          tx.undo.push({ row: u, created: true, num: 0, den: 0, cov: null });
          const c = contribution(m, u);
          addObservation(tx.stats(statsKeyOf(keys, e, m, x.arm, c.part)), c.y, c.x);
        }
        accepted++;
      }
      return { accepted, duplicates, ignored };
    });
  }

  logOutcomes(list: readonly Outcome[]): { accepted: number; duplicates: number } {
    return this.logOutcomeColumns(outcomeColumns(list));
  }

  /** logOutcomes over a batch in columns (what the gRPC port's decoder reads straight from the bytes). */
  logOutcomeColumns(c: OutcomeColumns): { accepted: number; duplicates: number } {
    const n = c.length;
    this.checkBatch("outcomes", n);
    const now = this.clock();
    const { unitId, unitType, metric, value, outcomeId, experimentKey } = c;
    const times = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      if (unitId[i] === "") throw new ValidationError(`outcomes[${i}].unit_id`, "must not be empty");
      if (metric[i] === "") throw new ValidationError(`outcomes[${i}].metric`, "must not be empty");
      if (!Number.isFinite(value[i])) throw new ValidationError(`outcomes[${i}].value`, `must be finite, got ${value[i]}`);
      const key = experimentKey[i]!;
      if (key !== "" && !this.defs.find(key)) throw new NotFoundError("experiment", key, `outcomes[${i}].experiment_key`);
      const t = c.timeMs[i]!;
      if (Number.isNaN(t)) times[i] = now;
      else if (!Number.isFinite(t)) throw new ValidationError(`outcomes[${i}].time`, "is not a valid time");
      else times[i] = t;
    }
    return this.batch((tx) => {
      // Repeats of an outcome_id inside the batch are dropped here; repeats of an earlier
      // batch's id are found in the unique index, CHUNK ids a lookup, in this transaction.
      const ids = new Set<string>();
      const fresh: number[] = [];
      for (let i = 0; i < n; i++) {
        const id = outcomeId[i]!;
        if (id !== "") {
          if (ids.has(id)) continue;
          ids.add(id);
        }
        fresh.push(i);
      }
      const stored = new Set<string>();
      const lookup = [...ids];
      for (let k = 0; k < lookup.length; k += CHUNK) {
        const part = lookup.length - k >= CHUNK ? lookup.slice(k, k + CHUNK) : lookup.slice(k);
        const st = part.length === CHUNK ? this.st.storedIds : this.sqlite.prepare(storedIdsSql(part.length)).pluck();
        for (const id of st.all(part) as string[]) stored.add(id);
      }
      this.prefetchExposures(tx, unitId);
      const rows = new RowWriter(7, this.st.insertOutcomes, this.st.insertOutcome);
      let accepted = 0;
      for (let f = 0; f < fresh.length; f++) {
        const i = fresh[f]!;
        const id = outcomeId[i]!;
        if (id !== "" && stored.has(id)) continue;
        accepted++;
        const unit = unitId[i]!;
        const type = unitType[i]!;
        const name = metric[i]!;
        const v = value[i]!;
        const time = times[i]!;
        const key = experimentKey[i]!;
        rows.add7(unit, type, name, v, time, id, key);
        const exposures = this.exposuresOf(tx, unit);
        for (let x = 0; x < exposures.length; x++) {
          const ex = exposures[x]!;
          if (ex.time > time) continue;
          if (key !== "" && key !== ex.experimentKey) continue;
          const e = this.defs.find(ex.experimentKey);
          if (!e || e.status !== ExperimentStatus.RUNNING) continue;
          if (type !== 0 && type !== e.unitType) continue;
          for (const m of e.metrics) {
            const { num, den } = keysOf(e, m);
            if (name !== num && name !== den) continue;
            this.replace(tx, e, m, unit, name === num ? v : 0, den !== "" && name === den ? v : 0, undefined);
          }
        }
      }
      rows.flush();
      return { accepted, duplicates: n - accepted };
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
    // Built only once a unit is missing: in steady state every unit is cached.
    let seen: Set<string> | undefined;
    for (let i = 0; i < units.length; i++) {
      const u = units[i]!;
      if (this.exposureCache.has(u) || tx.exposures.has(u)) continue;
      seen ??= new Set();
      if (seen.has(u)) continue;
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
    let u = this.unitCache.get(mk, unitId);
    if (u === undefined) {
      // Not cached, so not changed by this batch either (a batch's rows stay cached until it ends): committed state.
      const r = this.st.unitMetric.get(e.key, m.name, unitId) as UnitState & { arm: string } | undefined;
      if (!r) return;
      u = { num: r.num, den: r.den, cov: r.cov, arm: r.arm, mk, exp: e.key, metric: m.name, unit: unitId, epoch: 0 };
      this.unitCache.set(u);
    }
    if (u.epoch !== tx.epoch) {
      u.epoch = tx.epoch;
      tx.dirty.push(u);
      tx.undo.push({ row: u, created: false, num: u.num, den: u.den, cov: u.cov });
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
   * Runs `work` in one transaction over copies of the statistics, counts and exposures it
   * changes, writes the changed rows in multi-row statements at the end, and only after the
   * commit makes the copies the in-memory state. Unit rows are changed in place in the cache
   * (a copy per row was a large share of the cost per outcome) with an undo list that
   * restores them if the batch fails: a failed batch leaves memory and disk as they were,
   * and an acknowledged batch is on disk.
   */
  private batch<T>(work: (tx: Tx) => T): T {
    const touched = new Map<string, ArmStats>();
    const counted = new Map<string, number>();
    const tx: Tx = {
      epoch: ++this.epoch,
      dirty: [],
      undo: [],
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
    let result: T;
    try {
      result = this.sqlite.transaction(() => {
        const r = work(tx);
        writeChunked(tx.newExposures, 5, this.st.insertExposures, this.st.insertExposure);
        const units = new RowWriter(7, this.st.upsertUnitMetrics, this.st.upsertUnitMetric);
        for (const u of tx.dirty) units.add7(u.exp, u.metric, u.unit, u.arm, u.num, u.den, u.cov);
        units.flush();
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
    } catch (err) {
      for (let i = tx.undo.length - 1; i >= 0; i--) {
        const d = tx.undo[i]!;
        if (d.created) {
          this.unitCache.delete(d.row);
        } else {
          d.row.num = d.num;
          d.row.den = d.den;
          d.row.cov = d.cov;
        }
      }
      this.unitCache.trim();
      throw err;
    }
    for (const [k, s] of touched) this.stats.set(k, s);
    for (const [k, n] of counted) this.counts.set(k, n);
    this.unitCache.trim();
    for (const [unit, rows] of tx.exposures) cachePut(this.exposureCache, unit, rows);
    return result;
  }
}

function cachePut<V>(cache: Map<string, V>, k: string, v: V): void {
  if (cache.size >= CACHE_ENTRIES && !cache.has(k)) cache.clear();
  cache.set(k, v);
}

/**
 * Rows written as they are added, CHUNK rows a statement, through one reused parameter
 * array (no flat array of the whole batch and no slice per statement); flush() writes the
 * remainder one row at a time.
 */
class RowWriter {
  private readonly params: Array<string | number | null>;
  private fill = 0;

  constructor(
    private readonly columns: number,
    private readonly many: Database.Statement,
    private readonly one: Database.Statement,
  ) {
    this.params = new Array<string | number | null>(CHUNK * columns);
  }

  add7(a: string | number | null, b: string | number | null, c: string | number | null, d: string | number | null, e: string | number | null, f: string | number | null, g: string | number | null): void {
    const p = this.params;
    let k = this.fill;
    p[k++] = a;
    p[k++] = b;
    p[k++] = c;
    p[k++] = d;
    p[k++] = e;
    p[k++] = f;
    p[k++] = g;
    this.fill = k;
    if (k === p.length) {
      this.many.run(p);
      this.fill = 0;
    }
  }

  flush(): void {
    for (let i = 0; i < this.fill; i += this.columns) this.one.run(this.params.slice(i, i + this.columns));
    this.fill = 0;
  }
}

/** Writes rows given flat (`columns` values each) with the CHUNK-row statement, the remainder one row at a time. */
function writeChunked(flat: ReadonlyArray<string | number | null>, columns: number, many: Database.Statement, one: Database.Statement): void {
  const size = CHUNK * columns;
  let i = 0;
  for (; i + size <= flat.length; i += size) many.run(flat.slice(i, i + size));
  for (; i < flat.length; i += columns) one.run(flat.slice(i, i + columns));
}

interface Tx {
  /** This batch's number (UnitRow.epoch). */
  readonly epoch: number;
  /** Unit rows this batch changed or created, each once (written at the end). */
  readonly dirty: UnitRow[];
  /** What restores the cached unit rows if the batch fails, in the order of the changes. */
  readonly undo: UnitUndo[];
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
  // REPLACE rather than ON CONFLICT DO UPDATE: every column is written (a row is the whole
  // unit state), the table has no other index, trigger or foreign key, so the result is the
  // same, and it measured about 1 µs a row cheaper (bench/experiments.ts, issue #6).
  const unitUpsert = (rows: number) => sqlite.prepare(`REPLACE INTO unit_metrics (experiment_key, metric, unit_id, arm, num, den, cov) VALUES ${values(7, rows)}`);
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
