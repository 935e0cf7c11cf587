// Exposure, outcome and covariate ingest into per-arm sufficient statistics. Each exposed
// unit's aggregates per metric are kept (unit_metrics) so a late outcome or covariate
// replaces that unit's contribution in O(1); the per-arm statistics (arm_stats) are what the
// analysis reads, so a report costs O(arms). A batch is one transaction: all or nothing.

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

/** Outcome names a metric reads: [numerator-side, denominator-side]. */
function reads(m: Metric): [string, string] {
  return m.type === MetricType.RATIO ? [m.numerator, m.denominator] : [m.outcome || m.name, ""];
}

const statsKey = (exp: string, metric: string, arm: string, part: Part) => `${exp}\u0000${metric}\u0000${arm}\u0000${part}`;

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

export class Ingestor {
  private readonly stats = new Map<string, ArmStats>();
  private readonly counts = new Map<string, number>();
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
    const rows = this.sqlite.prepare("SELECT num, den, cov FROM unit_metrics WHERE experiment_key = ? AND metric = ? AND arm = ?").all(experiment.key, metric, arm) as UnitState[];
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
      const seen = new Map<string, string>();
      for (const { x, e, time } of checked) {
        const id = `${e.key}\u0000${x.unitId}`;
        const prior = seen.get(id) ?? (this.st.exposure.get(e.key, x.unitId) as { arm: string } | undefined)?.arm;
        if (prior !== undefined) {
          if (prior === x.arm) duplicates++;
          else ignored++;
          continue;
        }
        if (e.status !== ExperimentStatus.RUNNING) {
          ignored++;
          continue;
        }
        const phase = Math.min(Math.max(0, x.phase), Math.max(0, e.phases.length - 1));
        this.st.insertExposure.run(e.key, x.unitId, x.arm, time, phase);
        seen.set(id, x.arm);
        tx.count(e.key, phase, x.arm);
        const pending = this.st.outcomesOfUnit.all(x.unitId, time, e.key, e.unitType) as Array<{ metric: string; value: number }>;
        for (const m of e.metrics) {
          const [num, den] = reads(m);
          const u: UnitState = { num: 0, den: 0, cov: null };
          for (const o of pending) {
            if (o.metric === num) u.num += o.value;
            if (den !== "" && o.metric === den) u.den += o.value;
          }
          if (m.covariate !== "") u.cov = (this.st.covariate.get(x.unitId, m.covariate, e.key) as { value: number } | undefined)?.value ?? null;
          this.st.upsertUnitMetric.run(e.key, m.name, x.unitId, x.arm, u.num, u.den, u.cov);
          const c = contribution(m, u);
          addObservation(tx.stats(e.key, m.name, x.arm, c.part), c.y, c.x);
        }
        accepted++;
      }
      return { accepted, duplicates, ignored };
    });
  }

  logOutcomes(list: readonly Outcome[]): { accepted: number; duplicates: number } {
    this.checkBatch("outcomes", list.length);
    const now = this.clock();
    const checked = list.map((o, i) => {
      if (o.unitId === "") throw new ValidationError(`outcomes[${i}].unit_id`, "must not be empty");
      if (o.metric === "") throw new ValidationError(`outcomes[${i}].metric`, "must not be empty");
      if (!Number.isFinite(o.value)) throw new ValidationError(`outcomes[${i}].value`, `must be finite, got ${o.value}`);
      if (o.experimentKey !== "" && !this.defs.find(o.experimentKey)) throw new NotFoundError("experiment", o.experimentKey, `outcomes[${i}].experiment_key`);
      return { o, time: timeOf(`outcomes[${i}].time`, o.time, now) };
    });
    return this.batch((tx) => {
      let accepted = 0;
      let duplicates = 0;
      const ids = new Set<string>();
      for (const { o, time } of checked) {
        if (o.outcomeId !== "") {
          if (ids.has(o.outcomeId) || this.st.outcomeSeen.get(o.outcomeId)) {
            duplicates++;
            continue;
          }
          ids.add(o.outcomeId);
        }
        this.st.insertOutcome.run(o.unitId, o.unitType, o.metric, o.value, time, o.outcomeId, o.experimentKey);
        accepted++;
        for (const x of this.st.exposuresOfUnit.all(o.unitId) as Array<{ experiment_key: string; arm: string; time: number }>) {
          const e = this.defs.find(x.experiment_key);
          if (!e || e.status !== ExperimentStatus.RUNNING || x.time > time) continue;
          if (o.experimentKey !== "" && o.experimentKey !== e.key) continue;
          if (o.unitType !== 0 && o.unitType !== e.unitType) continue;
          for (const m of e.metrics) {
            const [num, den] = reads(m);
            if (o.metric !== num && o.metric !== den) continue;
            this.replace(tx, e, m, o.unitId, x.arm, (u) => {
              if (o.metric === num) u.num += o.value;
              if (den !== "" && o.metric === den) u.den += o.value;
            });
          }
        }
      }
      return { accepted, duplicates };
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
        for (const x of this.st.exposuresOfUnit.all(c.unitId) as Array<{ experiment_key: string; arm: string }>) {
          const e = this.defs.find(x.experiment_key);
          if (!e || (c.experimentKey !== "" && c.experimentKey !== e.key)) continue;
          if (c.unitType !== 0 && c.unitType !== e.unitType) continue;
          for (const m of e.metrics) {
            if (m.covariate !== c.name) continue;
            const value = (this.st.covariate.get(c.unitId, c.name, e.key) as { value: number } | undefined)?.value ?? null;
            this.replace(tx, e, m, c.unitId, x.arm, (u) => {
              u.cov = value;
            });
          }
        }
      }
      return { accepted: list.length };
    });
  }

  /** Replaces one unit's contribution to its arm's statistics after `change`. */
  private replace(tx: Tx, e: Experiment, m: Metric, unitId: string, arm: string, change: (u: UnitState) => void): void {
    const row = this.st.unitMetric.get(e.key, m.name, unitId) as UnitState | undefined;
    if (!row) return;
    const before = contribution(m, row);
    const u = { ...row };
    change(u);
    const after = contribution(m, u);
    this.st.upsertUnitMetric.run(e.key, m.name, unitId, arm, u.num, u.den, u.cov);
    removeObservation(tx.stats(e.key, m.name, arm, before.part), before.y, before.x);
    addObservation(tx.stats(e.key, m.name, arm, after.part), after.y, after.x);
  }

  /** Runs `work` in one transaction over copies of the touched statistics; commits them together. */
  private batch<T>(work: (tx: Tx) => T): T {
    const touched = new Map<string, ArmStats>();
    const counted = new Map<string, number>();
    const tx: Tx = {
      stats: (exp, metric, arm, part) => {
        const k = statsKey(exp, metric, arm, part);
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
    return result;
  }
}

interface Tx {
  stats(exp: string, metric: string, arm: string, part: Part): ArmStats;
  count(exp: string, phase: number, arm: string): void;
}

function prepare(sqlite: Database.Database) {
  return {
    exposure: sqlite.prepare("SELECT arm FROM exposures WHERE experiment_key = ? AND unit_id = ?"),
    insertExposure: sqlite.prepare("INSERT INTO exposures (experiment_key, unit_id, arm, time, phase) VALUES (?, ?, ?, ?, ?)"),
    exposuresOfUnit: sqlite.prepare("SELECT experiment_key, arm, time FROM exposures WHERE unit_id = ?"),
    outcomesOfUnit: sqlite.prepare(
      "SELECT metric, value FROM outcomes WHERE unit_id = ? AND time >= ? AND (experiment_key = '' OR experiment_key = ?) AND (unit_type = 0 OR unit_type = ?)",
    ),
    outcomeSeen: sqlite.prepare("SELECT 1 FROM outcomes WHERE outcome_id = ? LIMIT 1"),
    insertOutcome: sqlite.prepare(
      "INSERT INTO outcomes (unit_id, unit_type, metric, value, time, outcome_id, experiment_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
    ),
    covariate: sqlite.prepare("SELECT value FROM covariates WHERE unit_id = ? AND name = ? AND experiment_key IN (?, '') ORDER BY experiment_key DESC LIMIT 1"),
    upsertCovariate: sqlite.prepare(
      "INSERT INTO covariates (unit_id, name, experiment_key, unit_type, value) VALUES (?, ?, ?, ?, ?) ON CONFLICT(unit_id, name, experiment_key) DO UPDATE SET value = excluded.value, unit_type = excluded.unit_type",
    ),
    unitMetric: sqlite.prepare("SELECT num, den, cov FROM unit_metrics WHERE experiment_key = ? AND metric = ? AND unit_id = ?"),
    upsertUnitMetric: sqlite.prepare(
      "INSERT INTO unit_metrics (experiment_key, metric, unit_id, arm, num, den, cov) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(experiment_key, metric, unit_id) DO UPDATE SET num = excluded.num, den = excluded.den, cov = excluded.cov",
    ),
    upsertStats: sqlite.prepare(
      "INSERT INTO arm_stats (experiment_key, metric, arm, part, stats_json) VALUES (?, ?, ?, ?, ?) ON CONFLICT(experiment_key, metric, arm, part) DO UPDATE SET stats_json = excluded.stats_json",
    ),
    upsertCount: sqlite.prepare(
      "INSERT INTO exposure_counts (experiment_key, phase, arm, units) VALUES (?, ?, ?, ?) ON CONFLICT(experiment_key, phase, arm) DO UPDATE SET units = excluded.units",
    ),
  };
}

type Statements = ReturnType<typeof prepare>;
