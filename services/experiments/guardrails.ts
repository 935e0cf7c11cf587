// GuardrailBreached: published once per transition of a (metric, treatment arm) guardrail
// into FAILED, not at every analysis. The last status is kept in SQLite, written in the same
// transaction as the outbox event, so a restart neither repeats nor loses a breach.

import { create } from "@bufbuild/protobuf";
import type Database from "better-sqlite3";
import { GuardrailBreachedSchema } from "../../gen/mlmesh/events/v1/experiments_events_pb.js";
import { ExperimentStatus, GuardrailStatus, type ExperimentReport } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import type { Outbox } from "../../lib/outbox.js";

export class GuardrailWatch {
  private readonly select: Database.Statement;
  private readonly upsert: Database.Statement;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly outbox: Outbox,
  ) {
    this.select = sqlite.prepare("SELECT status FROM guardrail_states WHERE experiment_key = ? AND metric = ? AND arm = ?");
    this.upsert = sqlite.prepare(
      "INSERT INTO guardrail_states (experiment_key, metric, arm, status) VALUES (?, ?, ?, ?) ON CONFLICT(experiment_key, metric, arm) DO UPDATE SET status = excluded.status",
    );
  }

  /** Records the report's guardrail statuses; returns how many breaches were published. */
  observe(report: ExperimentReport): number {
    if (report.status !== ExperimentStatus.RUNNING) return 0;
    const units = new Map(report.arms.map((a) => [a.arm, a.units]));
    const control = report.arms.find((a) => a.control)?.units ?? 0n;
    let breaches = 0;
    this.sqlite.transaction(() => {
      for (const g of report.guardrails) {
        const before = (this.select.get(report.experimentKey, g.metric, g.arm) as { status: number } | undefined)?.status;
        if (before === g.status) continue;
        this.upsert.run(report.experimentKey, g.metric, g.arm, g.status);
        if (g.status !== GuardrailStatus.FAILED) continue;
        this.outbox.record(
          `mlmesh.experiments.guardrail_breached.${report.experimentKey}`,
          GuardrailBreachedSchema,
          create(GuardrailBreachedSchema, {
            experimentKey: report.experimentKey,
            guardrail: g,
            armUnits: units.get(g.arm) ?? 0n,
            controlUnits: control,
            revision: report.revision,
          }),
        );
        breaches++;
      }
    })();
    if (breaches > 0) this.outbox.flush();
    return breaches;
  }
}
