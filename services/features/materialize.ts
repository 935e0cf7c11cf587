// Materialization: copying offline rows to the online store. A backfill copies, per
// entity, the newest row with an event time in [start, end); an incremental job copies
// what arrived since the view's watermark (event time at or past it, or written after the
// previous job). Every copy goes through OnlineStore.writeLatest, the same newest-wins
// merge as WriteFeatures, so an older offline row never overwrites a newer online value
// and re-running a job is harmless.
//
// Jobs run one at a time on a queue in this process, page by page (a page is a range of
// entity keys); after each page the job, with its cursor, is saved, and the event loop is
// released. A job interrupted by a restart is picked up again at start from its cursor.

import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type Database from "better-sqlite3";
import { MaterializationCompletedSchema } from "../../gen/mlmesh/events/v1/features_events_pb.js";
import { MaterializationState } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import { NotFoundError, ValidationError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import type { Outbox } from "../../lib/outbox.js";
import type { FeatureMetrics } from "./metrics.js";
import type { OnlineStore } from "./online-store.js";
import type { DefinitionStore } from "./store.js";
import type { CheckedRow } from "./types.js";
import type { WriteGate } from "./write-gate.js";

export type JobState = "pending" | "running" | "succeeded" | "failed";

export interface ViewProgress {
  readonly view: string;
  state: JobState;
  /** Event-time range copied for this view: [start, end); start null = the beginning. */
  start: number | null;
  end: number;
  /** Incremental: rows written after this offline seq are copied whatever their time. */
  sinceSeq: number | null;
  /** The offline seq high-water mark when the view started (its next watermark). */
  maxSeq: number;
  rowsRead: number;
  rowsWritten: number;
  /** Last entity key done; null: none yet. */
  cursor: string | null;
}

export interface Job {
  readonly jobId: string;
  readonly views: readonly string[];
  /** As requested: null start = the beginning (or each view's watermark when incremental). */
  readonly start: number | null;
  readonly end: number;
  readonly incremental: boolean;
  state: JobState;
  progress: ViewProgress[];
  error: string;
  readonly createTime: number;
  startTime: number | null;
  finishTime: number | null;
}

export interface MaterializeInput {
  readonly views: readonly string[];
  readonly start: number | null;
  readonly end: number | null;
  readonly incremental: boolean;
}

/** Entities per page: one read transaction and one online merge each. */
const PAGE_ENTITIES = 2000;
/** An open bound for event times and offline seqs (both are integers well below it). */
const NO_SEQ_BOUND = Number.MAX_SAFE_INTEGER;

type OfflinePick = { entityKey: string; eventTime: number; seq: number; valuesJson: string };

export class Materializer {
  private readonly stmts;
  private readonly queue: string[] = [];
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Jobs in flight, so status reads are served from memory while they run. */
  private readonly live = new Map<string, Job>();

  constructor(
    private readonly sqlite: Database.Database,
    private readonly defs: DefinitionStore,
    private readonly online: OnlineStore,
    private readonly outbox: Outbox,
    private readonly metrics: FeatureMetrics,
    private readonly logger: Logger,
    private readonly clock: () => number,
    private readonly gate: WriteGate,
    private readonly pageEntities = PAGE_ENTITIES,
  ) {
    this.stmts = {
      insertJob: sqlite.prepare("INSERT INTO materialization_jobs (job_id, state, job_json, create_time, update_time) VALUES (?, ?, ?, ?, ?)"),
      saveJob: sqlite.prepare("UPDATE materialization_jobs SET state = ?, job_json = ?, update_time = ? WHERE job_id = ?"),
      getJob: sqlite.prepare("SELECT job_json FROM materialization_jobs WHERE job_id = ?").pluck(),
      unfinished: sqlite.prepare("SELECT job_id FROM materialization_jobs WHERE state IN ('pending', 'running') ORDER BY create_time, job_id").pluck(),
      watermark: sqlite.prepare("SELECT event_time AS eventTime, seq FROM materialization_watermarks WHERE view = ?"),
      setWatermark: sqlite.prepare(
        `INSERT INTO materialization_watermarks (view, event_time, seq, job_id, update_time) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (view) DO UPDATE SET event_time = excluded.event_time, seq = excluded.seq, job_id = excluded.job_id, update_time = excluded.update_time`,
      ),
      maxSeq: sqlite.prepare("SELECT coalesce(max(seq), 0) FROM offline_rows").pluck(),
      // The last key of the next page of distinct entity keys (index offline_rows_entity_idx).
      pageEndFirst: sqlite.prepare(
        "SELECT max(entity_key) FROM (SELECT DISTINCT entity_key FROM offline_rows WHERE view = ? AND entity_key >= ? ORDER BY entity_key LIMIT ?)",
      ).pluck(),
      pageEnd: sqlite.prepare(
        "SELECT max(entity_key) FROM (SELECT DISTINCT entity_key FROM offline_rows WHERE view = ? AND entity_key > ? ORDER BY entity_key LIMIT ?)",
      ).pluck(),
      // Rows of the page's entities in the job's window, oldest first per entity: the last
      // one of each entity is its newest (equal times: the later write).
      rowsFirst: sqlite.prepare(
        `SELECT entity_key AS entityKey, event_time AS eventTime, seq, values_json AS valuesJson FROM offline_rows
         WHERE view = ? AND entity_key >= ? AND entity_key <= ? AND event_time < ? AND (event_time >= ? OR seq > ?)
         ORDER BY entity_key, event_time, seq`,
      ),
      rows: sqlite.prepare(
        `SELECT entity_key AS entityKey, event_time AS eventTime, seq, values_json AS valuesJson FROM offline_rows
         WHERE view = ? AND entity_key > ? AND entity_key <= ? AND event_time < ? AND (event_time >= ? OR seq > ?)
         ORDER BY entity_key, event_time, seq`,
      ),
    };
  }

  /** Resume jobs a previous process left unfinished (call once at start). */
  resume(): void {
    for (const id of this.stmts.unfinished.all() as string[]) {
      this.logger.info({ job_id: id }, "features: resuming materialization job");
      this.queue.push(id);
    }
    this.kick();
  }

  /** Validate, store the job PENDING and queue it. */
  async start(input: MaterializeInput): Promise<Job> {
    if (input.incremental && input.start !== null) {
      throw new ValidationError("time_range.start_time", "leave it unset with incremental: each view starts at its own watermark");
    }
    const now = this.clock();
    const end = input.end ?? now;
    if (input.start !== null && end <= input.start) throw new ValidationError("time_range.end_time", "must be after start_time");
    const views = input.views.length
      ? input.views.map((v, i) => {
          if (input.views.indexOf(v) !== i) throw new ValidationError(`views[${i}]`, `${v} appears twice`);
          return this.defs.requireView(v).name;
        })
      : this.defs.viewNames();
    const job: Job = {
      jobId: randomUUID(),
      views,
      start: input.start,
      end,
      incremental: input.incremental,
      state: "pending",
      progress: views.map((view) => ({ view, state: "pending", start: input.start, end, sinceSeq: null, maxSeq: 0, rowsRead: 0, rowsWritten: 0, cursor: null })),
      error: "",
      createTime: now,
      startTime: null,
      finishTime: null,
    };
    await this.gate.run(() => this.stmts.insertJob.run(job.jobId, job.state, JSON.stringify(job), now, now));
    this.live.set(job.jobId, job);
    this.queue.push(job.jobId);
    this.kick();
    return job;
  }

  get(jobId: string): Job {
    const live = this.live.get(jobId);
    if (live) return live;
    const json = this.stmts.getJob.get(jobId) as string | undefined;
    if (!json) throw new NotFoundError("materialization job", jobId, "Materialize returns the job id");
    return JSON.parse(json) as Job;
  }

  /** Stop after the current page; an unfinished job resumes at the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private kick(): void {
    if (this.running || this.stopped || this.queue.length === 0) return;
    this.running = (async () => {
      // Start on the next tick: Materialize answers with the job as PENDING first.
      await new Promise((r) => setImmediate(r));
      try {
        while (this.queue.length && !this.stopped) await this.run(this.queue.shift()!);
      } finally {
        this.running = undefined;
      }
    })();
  }

  private save(job: Job): void {
    this.stmts.saveJob.run(job.state, JSON.stringify(job), this.clock(), job.jobId);
  }

  private async run(jobId: string): Promise<void> {
    const job = this.get(jobId);
    this.live.set(jobId, job);
    if (job.state === "pending") {
      job.state = "running";
      job.startTime = this.clock();
      await this.gate.run(() => this.save(job));
    }
    try {
      for (const p of job.progress) {
        if (p.state === "succeeded") continue;
        if (this.stopped) return;
        await this.runView(job, p);
        if (this.stopped && (p.state as JobState) !== "succeeded") return;
      }
      job.state = "succeeded";
    } catch (err) {
      job.state = "failed";
      job.error = err instanceof Error ? err.message : String(err);
      for (const p of job.progress) if (p.state === "running") p.state = "failed";
      this.logger.error({ err, job_id: jobId }, "features: materialization failed");
    }
    job.finishTime = this.clock();
    await this.gate.run(() =>
      this.sqlite.transaction(() => {
        this.save(job);
        this.outbox.record("mlmesh.features.materialization_completed", MaterializationCompletedSchema, create(MaterializationCompletedSchema, { job: this.toProto(job) }));
      })(),
    );
    this.outbox.flush();
    this.live.delete(jobId);
  }

  private async runView(job: Job, p: ViewProgress): Promise<void> {
    // Every step reads offline rows and writes on the shared connection: under the gate.
    await this.gate.run(() => this.startView(job, p));
    for (;;) {
      if (this.stopped) return;
      const more = await this.gate.run(() => this.page(job, p));
      if (!more) break;
      // Let reads and writes run between pages.
      await new Promise((r) => setImmediate(r));
    }
    await this.gate.run(() => this.finishView(job, p));
  }

  private startView(job: Job, p: ViewProgress): void {
    this.defs.requireView(p.view);
    if (p.state === "pending") {
      // Fix the window once, so a resumed job copies exactly what it set out to.
      p.maxSeq = this.stmts.maxSeq.get() as number;
      if (job.incremental) {
        const wm = this.stmts.watermark.get(p.view) as { eventTime: number; seq: number } | undefined;
        p.start = wm ? wm.eventTime : null;
        p.sinceSeq = wm ? wm.seq : null;
      }
      p.state = "running";
      this.save(job);
    }
  }

  /** Copy one page of entities; false when there is none left. */
  private async page(job: Job, p: ViewProgress): Promise<boolean> {
    const view = this.defs.requireView(p.view);
    const from = p.start ?? -NO_SEQ_BOUND;
    // Backfill: the event-time window only. Incremental: also anything written since.
    const sinceSeq = job.incremental && p.sinceSeq !== null ? p.sinceSeq : NO_SEQ_BOUND;
    {
      const first = p.cursor === null;
      const last = (first ? this.stmts.pageEndFirst.get(view.name, "", this.pageEntities) : this.stmts.pageEnd.get(view.name, p.cursor, this.pageEntities)) as string | null;
      if (last === null) return false;
      const rows = (first ? this.stmts.rowsFirst.all(view.name, "", last, p.end, from, sinceSeq) : this.stmts.rows.all(view.name, p.cursor, last, p.end, from, sinceSeq)) as OfflinePick[];
      const newest: CheckedRow[] = [];
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i]!;
        const next = rows[i + 1];
        if (!next || next.entityKey !== r.entityKey) newest.push({ entityKey: r.entityKey, eventTime: r.eventTime, valuesJson: r.valuesJson });
      }
      // The view may have been deleted meanwhile: stop rather than resurrect its online rows.
      this.defs.requireView(view.name);
      const written = newest.length ? await this.online.writeLatest(view.name, newest, this.clock()) : 0;
      p.rowsRead += rows.length;
      p.rowsWritten += written;
      p.cursor = last;
      this.metrics.materializedRows.inc({ view: view.name }, written);
      this.save(job);
      return true;
    }
  }

  private finishView(job: Job, p: ViewProgress): void {
    p.state = "succeeded";
    // Only a job that covered everything before its end may move the watermark: an
    // incremental one, or a backfill from the beginning.
    if (job.incremental || p.start === null) {
      const wm = this.stmts.watermark.get(p.view) as { eventTime: number; seq: number } | undefined;
      if (!wm || (p.end >= wm.eventTime && p.maxSeq >= wm.seq)) this.stmts.setWatermark.run(p.view, p.end, p.maxSeq, job.jobId, this.clock());
    }
    this.save(job);
  }

  /** The job in the shape of mlmesh.features.v1.MaterializationJob. */
  toProto(job: Job) {
    const ts = (ms: number | null) => (ms === null ? undefined : { seconds: BigInt(Math.floor(ms / 1000)), nanos: (((ms % 1000) + 1000) % 1000) * 1e6 });
    return {
      jobId: job.jobId,
      views: [...job.views],
      timeRange: { startTime: ts(job.start), endTime: ts(job.end) },
      incremental: job.incremental,
      state: STATE_NUMBER[job.state],
      progress: job.progress.map((p) => ({
        view: p.view,
        state: STATE_NUMBER[p.state],
        timeRange: { startTime: ts(p.start), endTime: ts(p.end) },
        rowsRead: BigInt(p.rowsRead),
        rowsWritten: BigInt(p.rowsWritten),
      })),
      error: job.error,
      createTime: ts(job.createTime),
      startTime: ts(job.startTime),
      finishTime: ts(job.finishTime),
    };
  }
}

const STATE_NUMBER: Readonly<Record<JobState, MaterializationState>> = {
  pending: MaterializationState.PENDING,
  running: MaterializationState.RUNNING,
  succeeded: MaterializationState.SUCCEEDED,
  failed: MaterializationState.FAILED,
};
