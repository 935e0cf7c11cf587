// The history of every comparison, one snapshot per analysis at most every `minIntervalMs`:
// it feeds the report's charts and makes the mSPRT p-value the running minimum over looks,
// which is what keeps it valid however often the report is watched.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type Database from "better-sqlite3";
import { ComparisonSnapshotSchema, type ComparisonSnapshot, type ExperimentReport } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";

interface Row {
  time: number;
  n: number;
  diff: number;
  p_value: number;
  sequential_p_value: number;
}

export class ComparisonHistory {
  private readonly insert: Database.Statement;
  private readonly last: Database.Statement;
  private readonly min: Database.Statement;
  private readonly rows: Database.Statement;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly minIntervalMs = 60_000,
  ) {
    this.insert = sqlite.prepare(
      "INSERT OR IGNORE INTO comparison_history (experiment_key, metric, arm, time, n, diff, p_value, sequential_p_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.last = sqlite.prepare("SELECT max(time) AS t FROM comparison_history WHERE experiment_key = ?");
    this.min = sqlite.prepare("SELECT min(sequential_p_value) AS p FROM comparison_history WHERE experiment_key = ? AND metric = ? AND arm = ?");
    this.rows = sqlite.prepare(
      "SELECT time, n, diff, p_value, sequential_p_value FROM comparison_history WHERE experiment_key = ? AND metric = ? AND arm = ? ORDER BY time",
    );
  }

  /** The smallest always-valid p-value of earlier looks, if any. */
  priorSequentialP(experiment: string, metric: string, arm: string): number | undefined {
    const p = (this.min.get(experiment, metric, arm) as { p: number | null }).p;
    return p ?? undefined;
  }

  list(experiment: string, metric: string, arm: string): ComparisonSnapshot[] {
    return (this.rows.all(experiment, metric, arm) as Row[]).map((r) =>
      create(ComparisonSnapshotSchema, { time: timestampFromMs(r.time), n: BigInt(r.n), diff: r.diff, pValue: r.p_value, sequentialPValue: r.sequential_p_value }),
    );
  }

  /** Stores the report's computable comparisons, unless the last snapshot is too recent. */
  record(report: ExperimentReport, now: number): void {
    const last = (this.last.get(report.experimentKey) as { t: number | null }).t;
    if (last !== null && now - last < this.minIntervalMs) return;
    const units = new Map(report.arms.map((a) => [a.arm, Number(a.units)]));
    this.sqlite.transaction(() => {
      for (const m of report.metrics) {
        for (const c of m.comparisons) {
          if (c.unavailableReason !== "" || !c.sequential) continue;
          const n = (units.get(c.arm) ?? 0) + (units.get(c.controlArm) ?? 0);
          this.insert.run(report.experimentKey, m.metric, c.arm, now, n, c.diff, c.pValue, c.sequential.pValue);
        }
      }
    })();
  }
}
