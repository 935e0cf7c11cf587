// The experiment definitions and their lifecycle (draft -> running -> stopped) over SQLite:
// every change is one transaction that also writes the audit record and the outbox events
// (ExperimentUpdated, ExperimentStatusChanged), so state, audit and events never disagree.

import { clone, create, fromJsonString, toJson, toJsonString } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type Database from "better-sqlite3";
import { ExperimentStatusChangedSchema, ExperimentUpdatedSchema } from "../../gen/mlmesh/events/v1/experiments_events_pb.js";
import {
  Decision,
  ExperimentSchema,
  ExperimentStatus,
  PhaseSchema,
  type Experiment,
} from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { AuditLog } from "../../lib/audit.js";
import { AbortedError, ConflictError, NotFoundError, PreconditionError, ValidationError } from "../../lib/errors.js";
import type { Outbox } from "../../lib/outbox.js";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/paging.js";
import { validateArms, validateCoverage, validateDefinition, validateKey } from "./definitions.js";

const DEFINITION_FIELDS = [
  "description", "hypothesis", "owner", "labels", "unit_type", "arms", "coverage_fraction", "salt", "layer",
  "targeting", "metrics", "alpha", "power", "mde", "mde_scale", "sequential", "expected_daily_units",
] as const;
const RUNNING_FIELDS = new Set(["arms", "coverage_fraction", "description", "hypothesis", "owner", "labels", "expected_daily_units"]);
const STOPPED_FIELDS = new Set(["description", "labels"]);

const camel = (path: string): string => path.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const json = (e: Experiment) => toJson(ExperimentSchema, e);

export interface Actor {
  readonly principal: string;
  readonly reason: string;
}

export class ExperimentStore {
  readonly audit: AuditLog;
  private readonly cache = new Map<string, Experiment>();
  private readonly upsert: Database.Statement;
  private readonly clock: () => number;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly outbox: Outbox,
    clock: () => number = Date.now,
  ) {
    this.clock = clock;
    this.audit = new AuditLog(sqlite);
    this.upsert = sqlite.prepare(
      `INSERT INTO experiments (key, status, layer, unit_type, revision, def_json) VALUES (@key, @status, @layer, @unitType, @revision, @defJson)
       ON CONFLICT(key) DO UPDATE SET status = excluded.status, layer = excluded.layer, unit_type = excluded.unit_type,
         revision = excluded.revision, def_json = excluded.def_json`,
    );
    for (const row of sqlite.prepare("SELECT def_json FROM experiments").all() as Array<{ def_json: string }>) {
      const e = fromJsonString(ExperimentSchema, row.def_json);
      this.cache.set(e.key, e);
    }
  }

  /** The stored definition (a copy callers may not mutate: treat as read-only). */
  get(key: string): Experiment {
    const e = this.cache.get(key);
    if (!e) throw new NotFoundError("experiment", key, "list experiments to see the keys");
    return e;
  }

  find(key: string): Experiment | undefined {
    return this.cache.get(key);
  }

  all(): Experiment[] {
    return [...this.cache.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  list(q: { pageSize?: number; pageToken?: string; status?: ExperimentStatus; layer?: string }): { experiments: Experiment[]; nextPageToken: string } {
    const size = pageSize(q.pageSize, "page_size");
    const after = decodePageToken(q.pageToken, "page_token");
    const rows = this.all().filter(
      (e) => (after === undefined || e.key > String(after)) && (!q.status || e.status === q.status) && (!q.layer || e.layer?.name === q.layer),
    );
    const page = rows.slice(0, size);
    return { experiments: page, nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.key) : "" };
  }

  create(input: Experiment, actor: Actor): Experiment {
    const now = this.clock();
    const e = create(ExperimentSchema, {
      ...input,
      status: ExperimentStatus.DRAFT,
      revision: 1n,
      phases: [],
      createTime: timestampFromMs(now),
      updateTime: timestampFromMs(now),
      startTime: undefined,
      stopTime: undefined,
      stopReason: "",
      shippedArm: "",
    });
    validateDefinition(e);
    if (this.cache.has(e.key)) throw new ConflictError(`experiment ${JSON.stringify(e.key)} already exists; pick another key or update it`);
    this.commit(undefined, e, "experiment.create", actor, { created: true, changed: [] });
    return e;
  }

  update(input: Experiment, paths: readonly string[], expectedRevision: bigint, actor: Actor): Experiment {
    validateKey("experiment.key", input.key);
    if (paths.length === 0) throw new ValidationError("update_mask", "names no field; list the fields to change, e.g. \"arms\"");
    const before = this.get(input.key);
    this.checkRevision(before, expectedRevision);
    const allowed = before.status === ExperimentStatus.DRAFT ? new Set<string>(DEFINITION_FIELDS) : before.status === ExperimentStatus.RUNNING ? RUNNING_FIELDS : STOPPED_FIELDS;
    for (const [i, p] of paths.entries()) {
      if (!(DEFINITION_FIELDS as readonly string[]).includes(p)) throw new ValidationError(`update_mask.paths[${i}]`, `${JSON.stringify(p)} is not a changeable field of Experiment`);
      if (!allowed.has(p)) throw new PreconditionError(`${p} cannot change while the experiment is ${ExperimentStatus[before.status]}`);
    }
    const after = clone(ExperimentSchema, before);
    const target = after as unknown as Record<string, unknown>;
    const source = input as unknown as Record<string, unknown>;
    for (const p of paths) target[camel(p)] = source[camel(p)];
    if (before.status === ExperimentStatus.DRAFT) validateDefinition(after);
    else if (before.status === ExperimentStatus.RUNNING) {
      validateArms(after);
      validateCoverage(after);
      if (paths.includes("arms")) {
        if (after.arms.length !== before.arms.length) throw new PreconditionError("a running experiment's arms are fixed: only weights may change (a ramp)");
        after.arms.forEach((a, i) => {
          const b = before.arms[i]!;
          if (a.name !== b.name || a.control !== b.control) throw new PreconditionError(`arms[${i}]: a running experiment's arm names, order and control are fixed; only weights may change`);
          if (toJsonString(ExperimentSchema, create(ExperimentSchema, { arms: [{ ...a, weight: 0 }] })) !== toJsonString(ExperimentSchema, create(ExperimentSchema, { arms: [{ ...b, weight: 0 }] }))) {
            throw new PreconditionError(`arms[${i}]: a running experiment's arm description and payload are fixed; only weights may change`);
          }
        });
      }
    }
    const now = this.clock();
    const ramp =
      before.status === ExperimentStatus.RUNNING &&
      (before.arms.some((a, i) => a.weight !== after.arms[i]!.weight) || (before.coverageFraction ?? 1) !== (after.coverageFraction ?? 1));
    if (ramp) this.appendPhase(after, now);
    after.revision = before.revision + 1n;
    after.updateTime = timestampFromMs(now);
    this.commit(before, after, "experiment.update", actor, { created: false, changed: [...paths] });
    return after;
  }

  start(key: string, expectedRevision: bigint, actor: Actor): Experiment {
    const before = this.get(key);
    this.checkRevision(before, expectedRevision);
    if (before.status !== ExperimentStatus.DRAFT) throw new PreconditionError(`experiment ${key} is ${ExperimentStatus[before.status]}; only a DRAFT can start`);
    if (before.layer) {
      const { name, startFraction: s, endFraction: t } = before.layer;
      for (const other of this.cache.values()) {
        if (other.key === key || other.status !== ExperimentStatus.RUNNING || other.layer?.name !== name) continue;
        if (s < other.layer.endFraction && other.layer.startFraction < t) {
          throw new PreconditionError(
            `layer ${name} slice [${s}, ${t}) overlaps running experiment ${other.key} [${other.layer.startFraction}, ${other.layer.endFraction}); stop it or pick a disjoint slice`,
          );
        }
      }
    }
    const now = this.clock();
    const after = clone(ExperimentSchema, before);
    after.status = ExperimentStatus.RUNNING;
    after.startTime = timestampFromMs(now);
    this.appendPhase(after, now);
    after.revision = before.revision + 1n;
    after.updateTime = timestampFromMs(now);
    this.commit(before, after, "experiment.start", actor, { created: false, changed: ["status"] });
    return after;
  }

  stop(key: string, shippedArm: string, decision: Decision, actor: Actor): Experiment {
    const before = this.get(key);
    if (actor.reason.trim() === "") throw new ValidationError("reason", "is required: say why the experiment stops");
    if (before.status !== ExperimentStatus.RUNNING) throw new PreconditionError(`experiment ${key} is ${ExperimentStatus[before.status]}; only a RUNNING experiment can stop`);
    if (shippedArm !== "" && !before.arms.some((a) => a.name === shippedArm)) {
      throw new ValidationError("shipped_arm", `${JSON.stringify(shippedArm)} is not an arm of ${key} (${before.arms.map((a) => a.name).join(", ")})`);
    }
    const now = this.clock();
    const after = clone(ExperimentSchema, before);
    after.status = ExperimentStatus.STOPPED;
    after.stopTime = timestampFromMs(now);
    after.stopReason = actor.reason;
    after.shippedArm = shippedArm;
    const current = after.phases[after.phases.length - 1];
    if (current) current.endTime = timestampFromMs(now);
    after.revision = before.revision + 1n;
    after.updateTime = timestampFromMs(now);
    this.commit(before, after, "experiment.stop", actor, { created: false, changed: ["status"], decision });
    return after;
  }

  private checkRevision(e: Experiment, expected: bigint): void {
    if (expected !== 0n && expected !== e.revision) {
      throw new AbortedError(`experiment ${e.key} is at revision ${e.revision}, not ${expected}: someone changed it first; re-read and retry`);
    }
  }

  private appendPhase(e: Experiment, now: number): void {
    const current = e.phases[e.phases.length - 1];
    if (current) current.endTime = timestampFromMs(now);
    e.phases.push(
      create(PhaseSchema, {
        index: e.phases.length,
        startTime: timestampFromMs(now),
        coverageFraction: e.coverageFraction ?? 1,
        armWeights: Object.fromEntries(e.arms.map((a) => [a.name, a.weight])),
      }),
    );
  }

  private commit(
    before: Experiment | undefined,
    after: Experiment,
    action: string,
    actor: Actor,
    event: { created: boolean; changed: string[]; decision?: Decision },
  ): void {
    this.sqlite.transaction(() => {
      this.upsert.run({
        key: after.key,
        status: after.status,
        layer: after.layer?.name ?? "",
        unitType: after.unitType,
        revision: Number(after.revision),
        defJson: toJsonString(ExperimentSchema, after),
      });
      this.audit.record({
        principal: actor.principal,
        action,
        resource: `experiments/${after.key}`,
        scope: after.key,
        before: before ? json(before) : undefined,
        after: json(after),
        reason: actor.reason,
      });
      this.outbox.record(
        `mlmesh.experiments.experiment_updated.${after.key}`,
        ExperimentUpdatedSchema,
        create(ExperimentUpdatedSchema, { experiment: after, created: event.created, changedFields: event.changed, reason: actor.reason }),
        actor.principal,
      );
      if (before && before.status !== after.status) {
        this.outbox.record(
          `mlmesh.experiments.experiment_status_changed.${after.key}`,
          ExperimentStatusChangedSchema,
          create(ExperimentStatusChangedSchema, {
            experimentKey: after.key,
            previousStatus: before.status,
            status: after.status,
            revision: after.revision,
            reason: actor.reason,
            shippedArm: after.shippedArm,
            decision: event.decision ?? Decision.UNSPECIFIED,
          }),
          actor.principal,
        );
      }
    })();
    this.cache.set(after.key, after);
    this.outbox.flush();
  }
}
