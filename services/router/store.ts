// The router's repository over schema.ts: endpoints with their live serving plan (and its
// monotonic revision) and rollouts. Every mutation writes its audit record and its events
// (transactional outbox) in the same SQLite transaction as the state.

import { clone, create, equals, fromBinary, toBinary, toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type Database from "better-sqlite3";
import {
  EndpointAppliedSchema,
  EndpointDeletedSchema,
  ServingPlanChangeCause,
  ServingPlanChangedSchema,
} from "../../gen/mlmesh/events/v1/router_events_pb.js";
import {
  EndpointSchema,
  EndpointStatusSchema,
  RolloutSchema,
  RolloutState,
  ServingPlanSchema,
  type Endpoint,
  type Rollout,
  type ServingPlan,
} from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import { AuditLog } from "../../lib/audit.js";
import { AbortedError, NotFoundError, PreconditionError, ValidationError } from "../../lib/errors.js";
import type { Outbox } from "../../lib/outbox.js";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/paging.js";

export const SUBJECTS = {
  endpointApplied: (e: string) => `mlmesh.router.endpoint_applied.${e}`,
  endpointDeleted: (e: string) => `mlmesh.router.endpoint_deleted.${e}`,
  planChanged: (e: string) => `mlmesh.router.serving_plan_changed.${e}`,
  rolloutStarted: (e: string) => `mlmesh.router.rollout_started.${e}`,
  rolloutStepChanged: (e: string) => `mlmesh.router.rollout_step_changed.${e}`,
  rolloutHeld: (e: string) => `mlmesh.router.rollout_held.${e}`,
  rolloutPaused: (e: string) => `mlmesh.router.rollout_paused.${e}`,
  rolloutResumed: (e: string) => `mlmesh.router.rollout_resumed.${e}`,
  rolloutPromoted: (e: string) => `mlmesh.router.rollout_promoted.${e}`,
  rolloutRolledBack: (e: string) => `mlmesh.router.rollout_rolled_back.${e}`,
  rolloutAborted: (e: string) => `mlmesh.router.rollout_aborted.${e}`,
} as const;

export const CONTROLLER_PRINCIPAL = "system:rollout-controller";

/** An endpoint as stored: spec (no status, no plan) and the live plan with its revision. */
export interface EndpointRecord {
  readonly spec: Endpoint;
  readonly generation: number;
  readonly plan: ServingPlan;
  readonly planRevision: number;
  readonly planUpdateTime: number;
  readonly activeRolloutId: string;
  readonly createTime: number;
  readonly updateTime: number;
}

interface EndpointRowRaw {
  name: string;
  model: string;
  spec: Buffer;
  generation: number;
  plan: Buffer;
  plan_revision: number;
  plan_update_time: number;
  active_rollout_id: string;
  create_time: number;
  update_time: number;
}

const TERMINAL = new Set([RolloutState.PROMOTED, RolloutState.ROLLED_BACK, RolloutState.ABORTED]);
export const isTerminal = (s: RolloutState): boolean => TERMINAL.has(s);

/** The endpoint as clients see it: spec + live plan + status. */
export function endpointView(r: EndpointRecord): Endpoint {
  const e = clone(EndpointSchema, r.spec);
  e.servingPlan = r.plan;
  e.status = create(EndpointStatusSchema, {
    generation: BigInt(r.generation),
    createTime: timestampFromMs(r.createTime),
    updateTime: timestampFromMs(r.updateTime),
    planRevision: BigInt(r.planRevision),
    activeRolloutId: r.activeRolloutId,
  });
  return e;
}

const json = <D extends DescMessage>(schema: D, m: MessageShape<D>) => toJson(schema, m);

export class RouterStore {
  readonly audit: AuditLog;
  private readonly getStmt: Database.Statement;
  private readonly upsertStmt: Database.Statement;
  private readonly deleteStmt: Database.Statement;
  private readonly planStmt: Database.Statement;
  private readonly rolloutGet: Database.Statement;
  private readonly rolloutPut: Database.Statement;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly outbox: Outbox,
    private readonly clock: () => number = Date.now,
  ) {
    this.audit = new AuditLog(sqlite);
    this.getStmt = sqlite.prepare("SELECT * FROM endpoints WHERE name = ?");
    this.upsertStmt = sqlite.prepare(
      `INSERT INTO endpoints (name, model, spec, generation, plan, plan_revision, plan_update_time, active_rollout_id, create_time, update_time)
       VALUES (@name, @model, @spec, @generation, @plan, @plan_revision, @plan_update_time, @active_rollout_id, @create_time, @update_time)
       ON CONFLICT(name) DO UPDATE SET model = excluded.model, spec = excluded.spec, generation = excluded.generation, plan = excluded.plan,
         plan_revision = excluded.plan_revision, plan_update_time = excluded.plan_update_time, active_rollout_id = excluded.active_rollout_id,
         update_time = excluded.update_time`,
    );
    this.deleteStmt = sqlite.prepare("DELETE FROM endpoints WHERE name = ?");
    this.planStmt = sqlite.prepare("UPDATE endpoints SET plan = ?, plan_revision = ?, plan_update_time = ?, active_rollout_id = ? WHERE name = ?");
    this.rolloutGet = sqlite.prepare("SELECT rollout FROM rollouts WHERE id = ?");
    this.rolloutPut = sqlite.prepare(
      `INSERT INTO rollouts (id, endpoint, state, terminal, rollout, create_time) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET state = excluded.state, terminal = excluded.terminal, rollout = excluded.rollout`,
    );
  }

  /** Run `fn` in one transaction, then nudge the outbox relay. */
  tx<T>(fn: () => T): T {
    const out = this.sqlite.transaction(fn)();
    this.outbox.flush();
    return out;
  }

  get outboxRef(): Outbox {
    return this.outbox;
  }

  get(name: string): EndpointRecord | undefined {
    const row = this.getStmt.get(name) as EndpointRowRaw | undefined;
    return row ? decodeRow(row) : undefined;
  }

  require(name: string): EndpointRecord {
    const r = this.get(name);
    if (!r) throw new NotFoundError("endpoint", name, "create it with `mlmesh endpoints apply FILE.json`");
    return r;
  }

  all(): EndpointRecord[] {
    return (this.sqlite.prepare("SELECT * FROM endpoints ORDER BY name").all() as EndpointRowRaw[]).map(decodeRow);
  }

  list(q: { model?: string; pageSize?: number; pageToken?: string }): { records: EndpointRecord[]; nextPageToken: string } {
    const size = pageSize(q.pageSize, "page_size");
    const after = decodePageToken(q.pageToken, "page_token");
    if (after !== undefined && typeof after !== "string") throw new ValidationError("page_token", "is not a token returned by a previous page");
    const rows = this.sqlite
      .prepare(`SELECT * FROM endpoints WHERE name > ? ${q.model ? "AND model = ?" : ""} ORDER BY name LIMIT ?`)
      .all(...[after ?? "", ...(q.model ? [q.model] : []), size + 1]) as EndpointRowRaw[];
    const page = rows.slice(0, size).map(decodeRow);
    return { records: page, nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.spec.name) : "" };
  }

  /**
   * Create or update an endpoint. `plan` undefined keeps the live plan (or `initialPlan` for a
   * new endpoint). Identical spec and plan: nothing is written.
   */
  apply(a: { spec: Endpoint; plan: ServingPlan | undefined; initialPlan: ServingPlan; principal: string; reason: string }): {
    record: EndpointRecord;
    created: boolean;
    changed: boolean;
  } {
    return this.tx(() => {
      const before = this.get(a.spec.name);
      const now = this.clock();
      const specChanged = !before || !equals(EndpointSchema, before.spec, a.spec);
      const newPlan = a.plan ?? before?.plan ?? a.initialPlan;
      const planChanged = !before || !equals(ServingPlanSchema, before.plan, newPlan);
      if (!specChanged && !planChanged) return { record: before!, created: false, changed: false };
      if (before && planChanged && before.activeRolloutId) {
        throw new PreconditionError(`endpoint ${a.spec.name} has an active rollout ${before.activeRolloutId}; promote or roll it back before changing its serving plan (or apply without serving_plan)`);
      }
      const record: EndpointRecord = {
        spec: a.spec,
        generation: (before?.generation ?? 0) + (specChanged ? 1 : 0),
        plan: newPlan,
        planRevision: (before?.planRevision ?? 0) + (planChanged ? 1 : 0),
        planUpdateTime: planChanged ? now : before!.planUpdateTime,
        activeRolloutId: before?.activeRolloutId ?? "",
        createTime: before?.createTime ?? now,
        updateTime: now,
      };
      this.write(record);
      const view = endpointView(record);
      this.audit.record({
        principal: a.principal,
        action: "endpoint.apply",
        resource: `endpoints/${a.spec.name}`,
        scope: a.spec.name,
        before: before ? json(EndpointSchema, endpointView(before)) : undefined,
        after: json(EndpointSchema, view),
        reason: a.reason,
      });
      this.outbox.record(SUBJECTS.endpointApplied(a.spec.name), EndpointAppliedSchema, create(EndpointAppliedSchema, { endpoint: view, created: !before, reason: a.reason }), a.principal);
      if (planChanged) {
        this.outbox.record(
          SUBJECTS.planChanged(a.spec.name),
          ServingPlanChangedSchema,
          create(ServingPlanChangedSchema, {
            endpoint: a.spec.name,
            plan: newPlan,
            revision: BigInt(record.planRevision),
            previousPlan: before?.plan,
            previousRevision: BigInt(before?.planRevision ?? 0),
            cause: ServingPlanChangeCause.ENDPOINT_APPLIED,
            reason: a.reason,
          }),
          a.principal,
        );
      }
      return { record, created: !before, changed: true };
    });
  }

  delete(name: string, a: { principal: string; reason: string; abort?: (rolloutId: string) => void }): EndpointRecord {
    return this.tx(() => {
      const before = this.require(name);
      if (before.activeRolloutId) {
        if (!a.abort) throw new PreconditionError(`endpoint ${name} has an active rollout ${before.activeRolloutId}; promote or roll it back first, or delete with force`);
        a.abort(before.activeRolloutId);
      }
      this.deleteStmt.run(name);
      this.audit.record({ principal: a.principal, action: "endpoint.delete", resource: `endpoints/${name}`, scope: name, before: json(EndpointSchema, endpointView(before)), reason: a.reason });
      this.outbox.record(
        SUBJECTS.endpointDeleted(name),
        EndpointDeletedSchema,
        create(EndpointDeletedSchema, { endpoint: name, generation: BigInt(before.generation), reason: a.reason, abortedRolloutId: before.activeRolloutId }),
        a.principal,
      );
      return before;
    });
  }

  /**
   * Replace the live plan (must run inside tx). Identical plan: unchanged. `rolloutId`
   * undefined keeps the active rollout id; "" clears it.
   */
  setPlanInTx(a: {
    endpoint: string;
    plan: ServingPlan;
    cause: ServingPlanChangeCause;
    principal: string;
    reason: string;
    expectedRevision?: number;
    rolloutId?: string;
    auditAction?: string;
  }): { record: EndpointRecord; changed: boolean } {
    const before = this.require(a.endpoint);
    if (a.expectedRevision && a.expectedRevision !== before.planRevision) {
      throw new AbortedError(`plan revision of ${a.endpoint} is ${before.planRevision}, not ${a.expectedRevision}; re-read and retry`);
    }
    const activeRolloutId = a.rolloutId ?? before.activeRolloutId;
    if (equals(ServingPlanSchema, before.plan, a.plan) && activeRolloutId === before.activeRolloutId) return { record: before, changed: false };
    const now = this.clock();
    const record: EndpointRecord = { ...before, plan: a.plan, planRevision: before.planRevision + 1, planUpdateTime: now, activeRolloutId };
    this.planStmt.run(Buffer.from(toBinary(ServingPlanSchema, a.plan)), record.planRevision, now, activeRolloutId, a.endpoint);
    if (a.auditAction) {
      this.audit.record({
        principal: a.principal,
        action: a.auditAction,
        resource: `endpoints/${a.endpoint}/plan`,
        scope: a.endpoint,
        before: json(ServingPlanSchema, before.plan),
        after: json(ServingPlanSchema, a.plan),
        reason: a.reason,
      });
    }
    this.outbox.record(
      SUBJECTS.planChanged(a.endpoint),
      ServingPlanChangedSchema,
      create(ServingPlanChangedSchema, {
        endpoint: a.endpoint,
        plan: a.plan,
        revision: BigInt(record.planRevision),
        previousPlan: before.plan,
        previousRevision: BigInt(before.planRevision),
        cause: a.cause,
        rolloutId: activeRolloutId || (a.rolloutId ?? ""),
        reason: a.reason,
      }),
      a.principal,
    );
    return { record, changed: true };
  }

  /** Apply a plan replicated from another replica when it is newer than ours. */
  applyReplicatedPlan(endpoint: string, plan: ServingPlan, revision: number, rolloutId: string): boolean {
    const before = this.get(endpoint);
    if (!before || revision <= before.planRevision) return false;
    this.planStmt.run(Buffer.from(toBinary(ServingPlanSchema, plan)), revision, this.clock(), rolloutId, endpoint);
    return true;
  }

  /**
   * Apply an endpoint replicated from another replica (EndpointApplied) when it is newer
   * than ours by generation or plan revision. No audit or event: the origin recorded them.
   */
  applyReplicatedEndpoint(e: Endpoint): boolean {
    const st = e.status;
    if (!st || !e.servingPlan) return false;
    const before = this.get(e.name);
    const generation = Number(st.generation);
    const revision = Number(st.planRevision);
    if (before && generation <= before.generation && revision <= before.planRevision) return false;
    const spec = clone(EndpointSchema, e);
    spec.status = undefined;
    spec.servingPlan = undefined;
    const ms = (t: typeof st.createTime) => (t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) : this.clock());
    const newerPlan = !before || revision > before.planRevision;
    this.write({
      spec,
      generation: Math.max(generation, before?.generation ?? 0),
      plan: newerPlan ? e.servingPlan : before.plan,
      planRevision: newerPlan ? revision : before.planRevision,
      planUpdateTime: newerPlan ? ms(st.updateTime) : before.planUpdateTime,
      activeRolloutId: newerPlan ? st.activeRolloutId : before.activeRolloutId,
      createTime: ms(st.createTime),
      updateTime: ms(st.updateTime),
    });
    return true;
  }

  /** Drop an endpoint deleted on another replica (unless ours is newer). */
  applyReplicatedDelete(name: string, generation: number): boolean {
    const before = this.get(name);
    if (!before || before.generation > generation) return false;
    this.deleteStmt.run(name);
    return true;
  }

  // ---- rollouts -------------------------------------------------------------------------

  getRollout(id: string): Rollout | undefined {
    const row = this.rolloutGet.get(id) as { rollout: Buffer } | undefined;
    return row ? fromBinary(RolloutSchema, row.rollout) : undefined;
  }

  latestRollout(endpoint: string): Rollout | undefined {
    const row = this.sqlite.prepare("SELECT rollout FROM rollouts WHERE endpoint = ? ORDER BY create_time DESC, id DESC LIMIT 1").get(endpoint) as { rollout: Buffer } | undefined;
    return row ? fromBinary(RolloutSchema, row.rollout) : undefined;
  }

  activeRollouts(): Rollout[] {
    return (this.sqlite.prepare("SELECT rollout FROM rollouts WHERE terminal = 0 ORDER BY create_time").all() as Array<{ rollout: Buffer }>).map((r) =>
      fromBinary(RolloutSchema, r.rollout),
    );
  }

  /** Insert or update a rollout (must run inside tx). */
  putRolloutInTx(r: Rollout): void {
    r.updateTime = timestampFromMs(this.clock());
    this.rolloutPut.run(r.id, r.endpoint, r.state, isTerminal(r.state) ? 1 : 0, Buffer.from(toBinary(RolloutSchema, r)), Number(r.createTime?.seconds ?? 0n) * 1000 + Math.floor((r.createTime?.nanos ?? 0) / 1e6));
  }

  listRollouts(q: { endpoint?: string; states?: readonly RolloutState[]; pageSize?: number; pageToken?: string }): { rollouts: Rollout[]; nextPageToken: string } {
    const size = pageSize(q.pageSize, "page_size");
    const after = decodePageToken(q.pageToken, "page_token");
    if (after !== undefined && typeof after !== "string") throw new ValidationError("page_token", "is not a token returned by a previous page");
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.endpoint) {
      where.push("endpoint = ?");
      args.push(q.endpoint);
    }
    if (q.states?.length) {
      where.push(`state IN (${q.states.map(() => "?").join(",")})`);
      args.push(...q.states);
    }
    if (after !== undefined) {
      where.push("id < ?");
      args.push(after);
    }
    // Ids are ULIDs: ordering by id is ordering by creation time.
    const rows = this.sqlite.prepare(`SELECT rollout FROM rollouts ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`).all(...args, size + 1) as Array<{ rollout: Buffer }>;
    const page = rows.slice(0, size).map((r) => {
      const ro = fromBinary(RolloutSchema, r.rollout);
      ro.history = [];
      return ro;
    });
    return { rollouts: page, nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.id) : "" };
  }

  private write(r: EndpointRecord): void {
    this.upsertStmt.run({
      name: r.spec.name,
      model: r.spec.model,
      spec: Buffer.from(toBinary(EndpointSchema, r.spec)),
      generation: r.generation,
      plan: Buffer.from(toBinary(ServingPlanSchema, r.plan)),
      plan_revision: r.planRevision,
      plan_update_time: r.planUpdateTime,
      active_rollout_id: r.activeRolloutId,
      create_time: r.createTime,
      update_time: r.updateTime,
    });
  }
}

function decodeRow(row: EndpointRowRaw): EndpointRecord {
  return {
    spec: fromBinary(EndpointSchema, row.spec),
    generation: row.generation,
    plan: fromBinary(ServingPlanSchema, row.plan),
    planRevision: row.plan_revision,
    planUpdateTime: row.plan_update_time,
    activeRolloutId: row.active_rollout_id,
    createTime: row.create_time,
    updateTime: row.update_time,
  };
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID: 48-bit ms time + 80 random bits, Crockford base32; sorts by creation time. */
export function newUlid(now = Date.now()): string {
  let t = now;
  let time = "";
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32]! + time;
    t = Math.floor(t / 32);
  }
  const rnd = crypto.getRandomValues(new Uint8Array(16));
  let rand = "";
  for (let i = 0; i < 16; i++) rand += CROCKFORD[rnd[i]! % 32];
  return time + rand;
}
