// The progressive rollout controller: a canary plan whose weight climbs through the steps
// while every gate passes over each interval (P99, error rate, score PSI against
// production, drift alerts on the canary), holds on too few requests, rolls back at once
// on a failing gate (also while paused), and on the last step moves the registry's
// `production` alias. State lives in SQLite (it resumes after a restart); every transition
// is an event (outbox) and an audit record in the same transaction.

import { clone, create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  RolloutAbortedSchema,
  RolloutHeldSchema,
  RolloutPausedSchema,
  RolloutPromotedSchema,
  RolloutResumedSchema,
  RolloutRolledBackSchema,
  RolloutStartedSchema,
  RolloutStepChangedSchema,
  ServingPlanChangeCause,
} from "../../gen/mlmesh/events/v1/router_events_pb.js";
import type { DriftAlert } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { DriftState } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import type { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import type { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { AssignmentReason, AssignmentSchema, GuardrailStatus, type ExperimentReport } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import type { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import {
  GateKind,
  GateResultSchema,
  GateVerdict,
  RolloutSchema,
  RolloutSpecSchema,
  RolloutState,
  RolloutTransitionSchema,
  ServedBy,
  ServingPlanSchema,
  type GateResult,
  type Rollout,
  type RolloutSpec,
} from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import type { RouterConfig } from "../../lib/config-router.js";
import { ConflictError, NotFoundError, PreconditionError, UnavailableError, ValidationError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import type { ExperimentCache, ExposureBuffer } from "./experiments.js";
import type { RouterMetrics } from "./metrics.js";
import { productionRef } from "./plan.js";
import type { RefCache } from "./refs.js";
import { effectiveRef, planRefs, singlePlan } from "./spec.js";
import { CONTROLLER_PRINCIPAL, isTerminal, newUlid, SUBJECTS, type RouterStore } from "./store.js";
import { quantile, RolloutWindow, scorePsi } from "./window.js";

export const DEFAULT_STEPS = [0.01, 0.05, 0.1, 0.25, 0.5, 1];
const DEFAULT_INTERVAL_MS = 60_000;
const DEFAULT_MIN_REQUESTS = 200n;
const DEFAULT_GRACE_MS = 5 * 60_000;

const GATE_NAME: Record<number, string> = {
  [GateKind.MIN_REQUESTS]: "min_requests",
  [GateKind.P99_LATENCY]: "p99_latency",
  [GateKind.ERROR_RATE]: "error_rate",
  [GateKind.SCORE_PSI]: "score_psi",
  [GateKind.DRIFT_PSI]: "drift_psi",
  [GateKind.EXPERIMENT_GUARDRAIL]: "experiment_guardrail",
};
export const gateName = (g: GateKind): string => GATE_NAME[g] ?? "unknown";

const STATE_NAME = (s: RolloutState) => (RolloutState[s] ?? "UNSPECIFIED").toLowerCase();
const ms = (t: Timestamp | undefined) => (t ? timestampDate(t).getTime() : 0);
const fmt = (x: number, d = 4) => (Number.isFinite(x) ? Number(x.toFixed(d)).toString() : "n/a");

export interface ControllerDeps {
  readonly store: RouterStore;
  readonly registry: Client<typeof RegistryService>;
  readonly inference: Client<typeof InferenceService>;
  readonly refs: RefCache;
  readonly metrics: RouterMetrics;
  readonly logger: Logger;
  readonly config: RouterConfig;
  readonly clock: () => number;
  /** Guardrail gate: the linked experiment's report, its definition, and exposures for its arms. */
  readonly experiments: Client<typeof ExperimentService>;
  readonly experimentCache: ExperimentCache;
  readonly exposures: ExposureBuffer;
  /** The endpoint's live plan changed (rebuild the in-memory view). */
  readonly planChanged: (endpoint: string) => void;
}

/** Validates a spec and fills in defaults. */
export function normaliseRolloutSpec(input: RolloutSpec | undefined, minIntervalMs: number): RolloutSpec {
  const s = input ? clone(RolloutSpecSchema, input) : create(RolloutSpecSchema, {});
  if (s.steps.length === 0) s.steps = [...DEFAULT_STEPS];
  s.steps.forEach((w, i) => {
    if (!Number.isFinite(w) || w <= 0 || w > 1) throw new ValidationError(`spec.steps[${i}]`, `${w} must be in (0, 1]`);
    if (i > 0 && w <= s.steps[i - 1]!) throw new ValidationError(`spec.steps[${i}]`, `${w} must be greater than the step before (${s.steps[i - 1]})`);
  });
  const interval = s.interval ? durationMs(s.interval) : DEFAULT_INTERVAL_MS;
  if (!(interval >= minIntervalMs)) throw new ValidationError("spec.interval", `${interval} ms is shorter than the minimum ${minIntervalMs} ms (MLMESH_ROUTER_MIN_ROLLOUT_INTERVAL)`);
  s.interval = durationFromMs(Math.round(interval));
  if (s.minRequests === undefined) s.minRequests = DEFAULT_MIN_REQUESTS;
  if (s.minRequests < 0n) throw new ValidationError("spec.min_requests", "must not be negative");
  for (const [field, v] of [
    ["max_p99_ms", s.maxP99Ms],
    ["max_error_rate", s.maxErrorRate],
    ["max_score_psi", s.maxScorePsi],
    ["max_drift_psi", s.maxDriftPsi],
  ] as const) {
    if (v !== undefined && !(v >= 0)) throw new ValidationError(`spec.${field}`, `${v} must not be negative`);
  }
  if (s.maxErrorRate !== undefined && s.maxErrorRate > 1) throw new ValidationError("spec.max_error_rate", "is a fraction in [0, 1]");
  if (s.maxInconclusiveIntervals < 0) throw new ValidationError("spec.max_inconclusive_intervals", "must not be negative");
  if (s.guardrailExperimentKey && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(s.guardrailExperimentKey)) {
    throw new ValidationError("spec.guardrail_experiment_key", `${JSON.stringify(s.guardrailExperimentKey.slice(0, 80))} is not an experiment key`);
  }
  if (!s.unloadGracePeriod) s.unloadGracePeriod = durationFromMs(DEFAULT_GRACE_MS);
  return s;
}

/** One role's counts and samples as another replica reports them. */
export interface RoleSample {
  readonly requests: number;
  readonly errors: number;
  readonly latenciesMs: readonly number[];
  readonly scores: readonly number[];
}

export class RolloutController {
  private readonly windows = new Map<string, RolloutWindow>();
  /** endpoint -> active rollout (id, model, canary and production versions) for observe(). */
  private readonly active = new Map<string, { id: string; canary: bigint; production: bigint; guardrail?: { key: string; control: string; treatment: string; phase: number } }>();
  /** `model@version` -> feature -> latest PSI drift value and state. */
  private readonly drift = new Map<string, Map<string, { value: number; state: DriftState }>>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private readonly unloadTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly d: ControllerDeps) {}

  start(): void {
    const now = this.d.clock();
    for (const r of this.d.store.activeRollouts()) {
      this.track(r);
      // A restarted router starts a fresh interval: what the old process observed is gone.
      if (r.state !== RolloutState.AWAITING_PROMOTION && r.state !== RolloutState.PROMOTING) {
        const next = now + durationMs(r.spec!.interval!);
        if (ms(r.nextEvaluationTime) < next) {
          r.nextEvaluationTime = timestampFromMs(next);
          r.stepStartTime = timestampFromMs(now);
          this.d.store.tx(() => this.d.store.putRolloutInTx(r));
        }
      }
      this.d.logger.info({ rollout: r.id, endpoint: r.endpoint, state: STATE_NAME(r.state), step: r.currentStepIndex }, "router: resuming rollout");
    }
    this.timer = setInterval(() => void this.tick(), this.d.config.rolloutTickMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    for (const t of this.unloadTimers) clearTimeout(t);
  }

  private track(r: Rollout): void {
    this.active.set(r.endpoint, { id: r.id, canary: r.canaryVersion, production: r.productionVersion });
    const key = r.spec?.guardrailExperimentKey;
    if (key) {
      // The linked experiment's control arm stands for production, its other arm for the canary.
      void this.d.experimentCache
        .load(key)
        .then((e) => {
          const control = e.arms.find((a) => a.control) ?? e.arms[0];
          const treatment = e.arms.find((a) => a !== control);
          const a = this.active.get(r.endpoint);
          if (a && a.id === r.id && control && treatment) a.guardrail = { key, control: control.name, treatment: treatment.name, phase: Math.max(0, e.phases.length - 1) };
        })
        .catch((err: unknown) => this.d.logger.warn({ err: (err as Error).message, key }, "router: guardrail experiment not loadable"));
    }
    if (!this.windows.has(r.id)) this.windows.set(r.id, new RolloutWindow());
    this.d.metrics.rolloutWeight.set({ endpoint: r.endpoint }, r.currentWeight);
  }

  private untrack(r: Rollout): void {
    this.active.delete(r.endpoint);
    this.windows.delete(r.id);
    this.d.metrics.rolloutWeight.set({ endpoint: r.endpoint }, r.currentWeight);
  }

  /** Hot path: one request's outcome on an endpoint. */
  observe(endpoint: string, role: ServedBy, version: bigint, latencyMs: number, error: boolean, score: number | undefined, unitId = ""): void {
    const a = this.active.get(endpoint);
    if (!a) return;
    if (a.guardrail && unitId && (role === ServedBy.CANARY || role === ServedBy.PRODUCTION)) {
      const g = a.guardrail;
      this.d.exposures.add(
        create(AssignmentSchema, { experimentKey: g.key, unitId, arm: role === ServedBy.CANARY ? g.treatment : g.control, inExperiment: true, reason: AssignmentReason.ASSIGNED, phase: g.phase }),
        `router/${endpoint}/rollout`,
      );
    }
    const w = this.windows.get(a.id);
    if (!w) return;
    if (role === ServedBy.CANARY && version === a.canary) w.canary.record(latencyMs, error, score);
    else if (role === ServedBy.PRODUCTION) w.production.record(latencyMs, error, score);
  }

  /** True when this replica runs the controller of `rolloutId` (its window is the one gates read). */
  owns(endpoint: string, rolloutId: string): boolean {
    return this.active.get(endpoint)?.id === rolloutId;
  }

  /** Another replica's observations of a rollout this replica controls, merged into the interval. */
  mergeObservations(rolloutId: string, canary: RoleSample | undefined, production: RoleSample | undefined): boolean {
    const w = this.windows.get(rolloutId);
    if (!w) return false;
    if (canary) w.canary.absorb(canary.requests, canary.errors, canary.latenciesMs, canary.scores);
    if (production) w.production.absorb(production.requests, production.errors, production.latenciesMs, production.scores);
    return true;
  }

  /** A DriftAlert from inference (NATS). */
  driftAlert(e: DriftAlert): void {
    if (e.metric !== "psi") return;
    const key = `${e.modelName}@${e.version}`;
    let m = this.drift.get(key);
    if (!m) this.drift.set(key, (m = new Map()));
    m.set(e.feature, { value: e.value, state: e.state });
  }

  // ---- RPCs ---------------------------------------------------------------------------

  async startRollout(a: { endpoint: string; modelRef: string; spec: RolloutSpec | undefined; reason: string; principal: string }): Promise<Rollout> {
    const ep = this.d.store.require(a.endpoint);
    if (ep.activeRolloutId) throw new ConflictError(`endpoint ${a.endpoint} already has an active rollout ${ep.activeRolloutId}`);
    if (ep.plan.plan.case !== "single") throw new PreconditionError(`endpoint ${a.endpoint} serves a ${ep.plan.plan.case} plan; a rollout starts from a single-version plan (set one with SetServingPlan)`);
    if (!a.modelRef) throw new ValidationError("model_ref", "is required (e.g. churn@7)");
    const spec = normaliseRolloutSpec(a.spec, this.d.config.minRolloutIntervalMs);
    if (spec.guardrailExperimentKey) {
      const e = await this.d.experimentCache.load(spec.guardrailExperimentKey);
      if (e.arms.length !== 2) throw new PreconditionError(`guardrail experiment ${e.key} has ${e.arms.length} arms; it needs two (control = production, the other = the canary)`);
    }
    const prodRef = productionRef(ep.plan, ep.spec.model);
    const canaryRef = effectiveRef(a.modelRef, ep.spec.model);
    const [canary, prod] = await Promise.all([this.d.refs.resolve(canaryRef).catch(notFound(canaryRef)), this.d.refs.resolve(prodRef)]);
    if (canary.model !== prod.model) throw new PreconditionError(`canary ${canaryRef} is model ${canary.model}, but the endpoint serves ${prod.model}`);
    if (canary.version === prod.version) throw new PreconditionError(`${canary.pinned} already serves production on ${a.endpoint}`);
    await this.d.refs.load(canary);
    const now = this.d.clock();
    const interval = durationMs(spec.interval!);
    const r = create(RolloutSchema, {
      id: newUlid(now),
      endpoint: a.endpoint,
      canaryModelRef: a.modelRef,
      model: canary.model,
      canaryVersion: canary.version,
      productionModelRef: prodRef,
      productionVersion: prod.version,
      spec,
      state: RolloutState.PROGRESSING,
      currentStepIndex: 0,
      currentWeight: spec.steps[0]!,
      gates: this.pendingGates(spec),
      stepStartTime: timestampFromMs(now),
      nextEvaluationTime: timestampFromMs(now + interval),
      createTime: timestampFromMs(now),
      startedBy: a.principal,
      reason: a.reason,
    });
    this.transition(r, RolloutState.PROGRESSING, a.reason, a.principal, [], RolloutState.UNSPECIFIED);
    this.d.store.tx(() => {
      const cur = this.d.store.require(a.endpoint);
      if (cur.activeRolloutId) throw new ConflictError(`endpoint ${a.endpoint} already has an active rollout ${cur.activeRolloutId}`);
      this.d.store.putRolloutInTx(r);
      this.d.store.setPlanInTx({ endpoint: a.endpoint, plan: this.canaryPlan(r), cause: ServingPlanChangeCause.ROLLOUT_STARTED, principal: a.principal, reason: a.reason, rolloutId: r.id });
      this.d.store.outboxRef.record(SUBJECTS.rolloutStarted(a.endpoint), RolloutStartedSchema, create(RolloutStartedSchema, { rollout: r, reason: a.reason }), a.principal);
      this.audit(r, "rollout.start", a.principal, a.reason);
    });
    this.track(r);
    this.exportGates(r);
    this.d.planChanged(a.endpoint);
    return r;
  }

  status(endpoint: string, id: string): Rollout {
    const r = id ? this.d.store.getRollout(id) : this.d.store.latestRollout(endpoint);
    if (!r || (endpoint && r.endpoint !== endpoint)) throw new NotFoundError("rollout", id || endpoint, "start one with `mlmesh rollout start ENDPOINT --version N`");
    const w = this.windows.get(r.id);
    if (w) {
      r.intervalCanaryRequests = BigInt(w.canary.requests);
      r.intervalProductionRequests = BigInt(w.production.requests);
    }
    return r;
  }

  private activeFor(endpoint: string, id: string): Rollout {
    const ep = this.d.store.require(endpoint);
    if (!ep.activeRolloutId) throw new PreconditionError(`endpoint ${endpoint} has no active rollout`);
    if (id && id !== ep.activeRolloutId) throw new PreconditionError(`rollout ${id} is not the active rollout of ${endpoint} (${ep.activeRolloutId} is)`);
    const r = this.d.store.getRollout(ep.activeRolloutId);
    if (!r || isTerminal(r.state)) throw new PreconditionError(`rollout ${ep.activeRolloutId} has ended`);
    return r;
  }

  pause(endpoint: string, id: string, reason: string, principal: string): Rollout {
    const r = this.activeFor(endpoint, id);
    if (r.state === RolloutState.PAUSED) throw new PreconditionError(`rollout ${r.id} is already paused`);
    if (r.state !== RolloutState.PROGRESSING && r.state !== RolloutState.HOLDING_INCONCLUSIVE) throw new PreconditionError(`rollout ${r.id} is ${STATE_NAME(r.state)} and cannot be paused`);
    this.transition(r, RolloutState.PAUSED, reason || "paused", principal);
    this.d.store.tx(() => {
      this.d.store.putRolloutInTx(r);
      this.d.store.outboxRef.record(SUBJECTS.rolloutPaused(endpoint), RolloutPausedSchema, create(RolloutPausedSchema, { endpoint, rolloutId: r.id, stepIndex: r.currentStepIndex, weight: r.currentWeight, reason }), principal);
      this.audit(r, "rollout.pause", principal, reason);
    });
    return r;
  }

  resume(endpoint: string, id: string, reason: string, principal: string): Rollout {
    const r = this.activeFor(endpoint, id);
    if (r.state !== RolloutState.PAUSED) throw new PreconditionError(`rollout ${r.id} is ${STATE_NAME(r.state)}, not paused`);
    const now = this.d.clock();
    r.nextEvaluationTime = timestampFromMs(now + durationMs(r.spec!.interval!));
    r.stepStartTime = timestampFromMs(now);
    this.windows.get(r.id)?.reset();
    this.transition(r, RolloutState.PROGRESSING, reason || "resumed", principal);
    this.d.store.tx(() => {
      this.d.store.putRolloutInTx(r);
      this.d.store.outboxRef.record(SUBJECTS.rolloutResumed(endpoint), RolloutResumedSchema, create(RolloutResumedSchema, { endpoint, rolloutId: r.id, stepIndex: r.currentStepIndex, weight: r.currentWeight, reason }), principal);
      this.audit(r, "rollout.resume", principal, reason);
    });
    return r;
  }

  async promote(endpoint: string, id: string, reason: string, principal: string): Promise<Rollout> {
    if (!reason) throw new ValidationError("reason", "is required for a manual promotion");
    const r = this.activeFor(endpoint, id);
    return this.promoteNow(r, true, reason, principal);
  }

  rollback(endpoint: string, id: string, reason: string, principal: string): Rollout {
    if (!reason) throw new ValidationError("reason", "is required for a manual rollback");
    const r = this.activeFor(endpoint, id);
    return this.rollbackNow(r, { manual: true, reason, principal, failed: [] });
  }

  /** Inside the delete transaction of a forced DeleteEndpoint. */
  abortInTx(rolloutId: string, reason: string, principal: string): void {
    const r = this.d.store.getRollout(rolloutId);
    if (!r || isTerminal(r.state)) return;
    r.endTime = timestampFromMs(this.d.clock());
    this.transition(r, RolloutState.ABORTED, reason || "endpoint deleted", principal);
    this.d.store.putRolloutInTx(r);
    this.d.store.outboxRef.record(SUBJECTS.rolloutAborted(r.endpoint), RolloutAbortedSchema, create(RolloutAbortedSchema, { endpoint: r.endpoint, rolloutId: r.id, stepIndex: r.currentStepIndex, weight: r.currentWeight, reason }), principal);
    this.audit(r, "rollout.abort", principal, reason);
    this.untrack(r);
  }

  // ---- the controller loop --------------------------------------------------------------

  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const now = this.d.clock();
      for (const r of this.d.store.activeRollouts()) {
        try {
          if (r.state === RolloutState.PROMOTING) {
            await this.promoteNow(r, false, r.reason, CONTROLLER_PRINCIPAL);
            continue;
          }
          if (r.state === RolloutState.AWAITING_PROMOTION) continue;
          if (ms(r.nextEvaluationTime) > now) continue;
          await this.evaluate(r, now);
        } catch (err) {
          this.d.logger.error({ err, rollout: r.id }, "router: rollout evaluation failed");
        }
      }
    } finally {
      this.ticking = false;
    }
  }

  private pendingGates(spec: RolloutSpec): GateResult[] {
    const g = (gate: GateKind, threshold: number) => create(GateResultSchema, { gate, threshold, verdict: GateVerdict.PENDING });
    const out = [g(GateKind.MIN_REQUESTS, Number(spec.minRequests ?? DEFAULT_MIN_REQUESTS))];
    if (spec.maxP99Ms !== undefined) out.push(g(GateKind.P99_LATENCY, spec.maxP99Ms));
    if (spec.maxErrorRate !== undefined) out.push(g(GateKind.ERROR_RATE, spec.maxErrorRate));
    if (spec.maxScorePsi !== undefined) out.push(g(GateKind.SCORE_PSI, spec.maxScorePsi));
    if (spec.maxDriftPsi !== undefined) out.push(g(GateKind.DRIFT_PSI, spec.maxDriftPsi));
    if (spec.guardrailExperimentKey) out.push(g(GateKind.EXPERIMENT_GUARDRAIL, 0));
    return out;
  }

  /** Every configured gate over the interval that just ended. */
  evaluateGates(r: Rollout, now: number, report?: ExperimentReport | Error): GateResult[] {
    const spec = r.spec!;
    const w = this.windows.get(r.id) ?? new RolloutWindow();
    const c = w.canary;
    const p = w.production;
    const n = c.requests;
    const min = Number(spec.minRequests ?? DEFAULT_MIN_REQUESTS);
    const enough = n >= min && n > 0;
    const at = timestampFromMs(now);
    const gate = (gate: GateKind, threshold: number, value: number, verdict: GateVerdict, reason: string, baseline?: number, subject = "", sample = BigInt(n)) =>
      create(GateResultSchema, { gate, subject, threshold, value: Number.isFinite(value) ? value : 0, baselineValue: baseline !== undefined && Number.isFinite(baseline) ? baseline : undefined, verdict, reason, evaluateTime: at, sampleSize: sample });
    const out: GateResult[] = [
      gate(GateKind.MIN_REQUESTS, min, n, enough ? GateVerdict.PASS : GateVerdict.INCONCLUSIVE, enough ? `${n} canary requests >= ${min}` : `only ${n} canary requests in the interval, ${min} needed`),
    ];
    const judged = (kind: GateKind, thr: number, value: number, unit: string, what: string, baseline?: number) => {
      if (!enough || !Number.isFinite(value)) return gate(kind, thr, value, GateVerdict.INCONCLUSIVE, `not enough data for ${what}`, baseline);
      const ok = value <= thr;
      const base = baseline !== undefined && Number.isFinite(baseline) ? ` (production ${fmt(baseline, 3)}${unit})` : "";
      return gate(kind, thr, value, ok ? GateVerdict.PASS : GateVerdict.FAIL, `canary ${what} ${fmt(value, 4)}${unit} ${ok ? "<=" : ">"} ${fmt(thr, 4)}${unit}${base}`, baseline);
    };
    if (spec.maxP99Ms !== undefined) out.push(judged(GateKind.P99_LATENCY, spec.maxP99Ms, quantile(c.latenciesMs, 0.99), " ms", "p99", quantile(p.latenciesMs, 0.99)));
    if (spec.maxErrorRate !== undefined) out.push(judged(GateKind.ERROR_RATE, spec.maxErrorRate, n ? c.errors / n : Number.NaN, "", "error rate", p.requests ? p.errors / p.requests : undefined));
    if (spec.maxScorePsi !== undefined) out.push(judged(GateKind.SCORE_PSI, spec.maxScorePsi, scorePsi(p.scores, c.scores), "", "score PSI vs production"));
    if (spec.maxDriftPsi !== undefined) {
      const alerts = this.drift.get(`${r.model}@${r.canaryVersion}`);
      let worst = { feature: "", value: 0 };
      for (const [feature, a] of alerts ?? []) if (a.value > worst.value) worst = { feature, value: a.value };
      const ok = worst.value <= spec.maxDriftPsi;
      out.push(
        gate(
          GateKind.DRIFT_PSI,
          spec.maxDriftPsi,
          worst.value,
          ok ? GateVerdict.PASS : GateVerdict.FAIL,
          alerts ? `largest input drift PSI ${fmt(worst.value)}${worst.feature ? ` (${worst.feature})` : ""} ${ok ? "<=" : ">"} ${fmt(spec.maxDriftPsi)}` : "no drift alert on the canary's inputs",
          undefined,
          worst.feature,
          BigInt(alerts?.size ?? 0),
        ),
      );
    }
    if (spec.guardrailExperimentKey) out.push(...guardrailGates(spec.guardrailExperimentKey, report, at));
    return out;
  }

  private async report(key: string): Promise<ExperimentReport | Error> {
    try {
      const res = await this.d.experiments.getReport({ experimentKey: key }, { timeoutMs: 5000 });
      return res.report ?? new Error("empty report");
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  private exportGates(r: Rollout): void {
    for (const g of r.gates) {
      const labels = { endpoint: r.endpoint, gate: gateName(g.gate), subject: g.subject };
      this.d.metrics.gateThreshold.set(labels, g.threshold);
      this.d.metrics.gateValue.set(labels, g.value);
    }
  }

  private async evaluate(r: Rollout, now: number): Promise<void> {
    const key = r.spec!.guardrailExperimentKey;
    const gates = this.evaluateGates(r, now, key ? await this.report(key) : undefined);
    r.gates = gates;
    this.exportGates(r);
    const w = this.windows.get(r.id);
    r.intervalCanaryRequests = BigInt(w?.canary.requests ?? 0);
    r.intervalProductionRequests = BigInt(w?.production.requests ?? 0);
    w?.reset();
    const failed = gates.filter((g) => g.verdict === GateVerdict.FAIL);
    const interval = durationMs(r.spec!.interval!);
    r.nextEvaluationTime = timestampFromMs(now + interval);
    if (failed.length > 0) {
      const reason = failed.map((g) => `gate ${gateName(g.gate)} failed: ${g.reason}`).join("; ");
      this.rollbackNow(r, { manual: false, reason, principal: CONTROLLER_PRINCIPAL, failed });
      return;
    }
    if (r.state === RolloutState.PAUSED) {
      // Paused: the weight is frozen, gates keep running (a FAIL above still rolls back).
      this.d.store.tx(() => this.d.store.putRolloutInTx(r));
      return;
    }
    const inconclusive = gates.filter((g) => g.verdict === GateVerdict.INCONCLUSIVE);
    if (inconclusive.length > 0) {
      r.consecutiveInconclusive++;
      const max = r.spec!.maxInconclusiveIntervals;
      const reason = `inconclusive: ${inconclusive.map((g) => g.reason).join("; ")}`;
      if (max > 0 && r.consecutiveInconclusive >= max) {
        this.rollbackNow(r, { manual: false, reason: `${reason} (${r.consecutiveInconclusive} intervals in a row, limit ${max})`, principal: CONTROLLER_PRINCIPAL, failed: [] });
        return;
      }
      this.transition(r, RolloutState.HOLDING_INCONCLUSIVE, reason, "", gates);
      this.d.store.tx(() => {
        this.d.store.putRolloutInTx(r);
        this.d.store.outboxRef.record(
          SUBJECTS.rolloutHeld(r.endpoint),
          RolloutHeldSchema,
          create(RolloutHeldSchema, { endpoint: r.endpoint, rolloutId: r.id, stepIndex: r.currentStepIndex, weight: r.currentWeight, consecutiveInconclusive: r.consecutiveInconclusive, gates, reason }),
          CONTROLLER_PRINCIPAL,
        );
        this.audit(r, "rollout.hold", CONTROLLER_PRINCIPAL, reason);
      });
      return;
    }
    r.consecutiveInconclusive = 0;
    const steps = r.spec!.steps;
    if (r.currentStepIndex + 1 < steps.length) {
      const from = r.currentStepIndex;
      const fromW = r.currentWeight;
      r.currentStepIndex++;
      r.currentWeight = steps[r.currentStepIndex]!;
      r.stepStartTime = timestampFromMs(now);
      const reason = `all gates passed at ${fmt(fromW * 100, 2)}%; canary to ${fmt(r.currentWeight * 100, 2)}%`;
      this.transition(r, RolloutState.PROGRESSING, reason, "", gates);
      this.d.store.tx(() => {
        this.d.store.putRolloutInTx(r);
        this.d.store.setPlanInTx({ endpoint: r.endpoint, plan: this.canaryPlan(r), cause: ServingPlanChangeCause.ROLLOUT_STEP, principal: CONTROLLER_PRINCIPAL, reason, rolloutId: r.id });
        this.d.store.outboxRef.record(
          SUBJECTS.rolloutStepChanged(r.endpoint),
          RolloutStepChangedSchema,
          create(RolloutStepChangedSchema, { endpoint: r.endpoint, rolloutId: r.id, model: r.model, canaryVersion: r.canaryVersion, fromStepIndex: from, toStepIndex: r.currentStepIndex, fromWeight: fromW, toWeight: r.currentWeight, gates }),
          CONTROLLER_PRINCIPAL,
        );
        this.audit(r, "rollout.step", CONTROLLER_PRINCIPAL, reason);
      });
      this.d.metrics.rolloutWeight.set({ endpoint: r.endpoint }, r.currentWeight);
      this.d.planChanged(r.endpoint);
      return;
    }
    if (r.spec!.requireManualPromotion) {
      this.transition(r, RolloutState.AWAITING_PROMOTION, "all steps passed; waiting for `mlmesh rollout promote`", "", gates);
      this.d.store.tx(() => {
        this.d.store.putRolloutInTx(r);
        this.audit(r, "rollout.step", CONTROLLER_PRINCIPAL, r.reason);
      });
      return;
    }
    await this.promoteNow(r, false, "all steps passed", CONTROLLER_PRINCIPAL);
  }

  private async promoteNow(r: Rollout, manual: boolean, reason: string, principal: string): Promise<Rollout> {
    if (r.state !== RolloutState.PROMOTING) {
      this.transition(r, RolloutState.PROMOTING, reason, principal);
      this.d.store.tx(() => this.d.store.putRolloutInTx(r));
    }
    let previous = r.productionVersion;
    try {
      const res = await this.d.registry.promoteModelVersion(
        { modelName: r.model, version: r.canaryVersion, reason: `rollout ${r.id} on ${r.endpoint}: ${reason}`, expectedProductionVersion: r.productionVersion, displacedStage: 0 },
        { timeoutMs: 10_000 },
      );
      previous = res.displacedVersion || r.productionVersion;
    } catch (err) {
      const ce = ConnectError.from(err);
      // Already promoted by an earlier attempt whose answer was lost: the CAS fails, but the
      // canary holds production, which is what we wanted.
      const already = ce.code === Code.Aborted && (await this.holdsProduction(r));
      if (!already) {
        r.reason = `promotion pending: the registry answered ${Code[ce.code]}: ${ce.rawMessage}`;
        this.d.store.tx(() => this.d.store.putRolloutInTx(r));
        if (manual) throw new UnavailableError(`rollout ${r.id} stays PROMOTING: ${ce.rawMessage}`);
        return r;
      }
    }
    const prodRef = `${r.model}@production`;
    // The alias switches in the ref cache once inference has the version (refs.ts); the canary
    // is loaded, so confirming it now makes the new plan serve it from its first request.
    const promoted = await this.d.refs.resolve(prodRef).catch(() => undefined);
    if (promoted) await this.d.refs.load(promoted).catch(() => undefined);
    const now = this.d.clock();
    r.currentWeight = 1;
    r.endTime = timestampFromMs(now);
    const gates = r.gates;
    this.transition(r, RolloutState.PROMOTED, `${manual ? "promoted by hand" : "promoted"}: ${reason}`, principal, manual ? [] : gates);
    this.d.store.tx(() => {
      this.d.store.putRolloutInTx(r);
      this.d.store.setPlanInTx({ endpoint: r.endpoint, plan: singlePlan(prodRef), cause: ServingPlanChangeCause.ROLLOUT_PROMOTED, principal, reason, rolloutId: "" });
      this.d.store.outboxRef.record(
        SUBJECTS.rolloutPromoted(r.endpoint),
        RolloutPromotedSchema,
        create(RolloutPromotedSchema, { endpoint: r.endpoint, rolloutId: r.id, model: r.model, version: r.canaryVersion, previousVersion: previous, manual, reason, gates: manual ? [] : gates }),
        principal,
      );
      this.audit(r, "rollout.promote", principal, reason);
    });
    this.untrack(r);
    this.d.planChanged(r.endpoint);
    return r;
  }

  private async holdsProduction(r: Rollout): Promise<boolean> {
    try {
      const res = await this.d.registry.resolveModelRef({ modelRef: `${r.model}@production` }, { timeoutMs: 5000 });
      return res.version === r.canaryVersion;
    } catch {
      return false;
    }
  }

  private rollbackNow(r: Rollout, a: { manual: boolean; reason: string; principal: string; failed: GateResult[] }): Rollout {
    const now = this.d.clock();
    const stateBefore = r.state;
    const weightBefore = r.currentWeight;
    const grace = durationMs(r.spec!.unloadGracePeriod!);
    r.currentWeight = 0;
    r.endTime = timestampFromMs(now);
    r.canaryUnloadTime = timestampFromMs(now + grace);
    this.transition(r, RolloutState.ROLLED_BACK, a.reason, a.principal === CONTROLLER_PRINCIPAL ? "" : a.principal, a.manual ? [] : r.gates);
    this.d.store.tx(() => {
      this.d.store.putRolloutInTx(r);
      this.d.store.setPlanInTx({ endpoint: r.endpoint, plan: singlePlan(r.productionModelRef), cause: ServingPlanChangeCause.ROLLOUT_ROLLED_BACK, principal: a.principal, reason: a.reason, rolloutId: "" });
      this.d.store.outboxRef.record(
        SUBJECTS.rolloutRolledBack(r.endpoint),
        RolloutRolledBackSchema,
        create(RolloutRolledBackSchema, {
          endpoint: r.endpoint,
          rolloutId: r.id,
          model: r.model,
          canaryVersion: r.canaryVersion,
          productionVersion: r.productionVersion,
          stepIndex: r.currentStepIndex,
          weightBefore,
          stateBefore,
          manual: a.manual,
          failedGates: a.failed,
          gates: a.manual ? [] : r.gates,
          reason: a.reason,
          unloadTime: r.canaryUnloadTime,
        }),
        a.principal,
      );
      this.audit(r, "rollout.rollback", a.principal, a.reason);
    });
    this.untrack(r);
    this.d.planChanged(r.endpoint);
    this.scheduleUnload(r, grace);
    this.d.logger.warn({ rollout: r.id, endpoint: r.endpoint, reason: a.reason }, "router: rollout rolled back");
    return r;
  }

  private scheduleUnload(r: Rollout, graceMs: number): void {
    const t = setTimeout(() => {
      this.unloadTimers.delete(t);
      // Still in some live plan (a retry started meanwhile): keep it.
      const pinned = `${r.model}@${r.canaryVersion}`;
      const inUse = this.d.store.all().some((e) => planRefs(e.plan, e.spec.model).some((ref) => ref === pinned || this.d.refs.peek(ref)?.pinned === pinned));
      if (inUse) return;
      this.d.inference
        .unloadModel({ modelName: r.model, version: r.canaryVersion, reason: `rollout ${r.id} rolled back` }, { timeoutMs: 10_000 })
        .catch((err: unknown) => this.d.logger.warn({ err: ConnectError.from(err).rawMessage, model: pinned }, "router: unloading a rolled-back canary failed"));
    }, graceMs);
    t.unref();
    this.unloadTimers.add(t);
  }

  private canaryPlan(r: Rollout) {
    return create(ServingPlanSchema, {
      plan: { case: "canary", value: { productionModelRef: r.productionModelRef, canaryModelRef: `${r.model}@${r.canaryVersion}`, canaryWeight: r.currentWeight } },
    });
  }

  private transition(r: Rollout, to: RolloutState, reason: string, principal: string, gates: GateResult[] = [], from: RolloutState = r.state): void {
    r.history.push(
      create(RolloutTransitionSchema, { time: timestampFromMs(this.d.clock()), fromState: from, toState: to, stepIndex: r.currentStepIndex, weight: r.currentWeight, reason, principal, gates }),
    );
    r.state = to;
    r.reason = reason;
    this.d.metrics.rolloutTransitions.inc({ endpoint: r.endpoint, to_state: STATE_NAME(to) });
  }

  private audit(r: Rollout, action: string, principal: string, reason: string): void {
    const snap = clone(RolloutSchema, r);
    snap.history = [];
    this.d.store.audit.record({
      principal: principal || CONTROLLER_PRINCIPAL,
      action,
      resource: `endpoints/${r.endpoint}/rollouts/${r.id}`,
      scope: r.endpoint,
      after: { state: STATE_NAME(r.state), step: r.currentStepIndex, weight: r.currentWeight, canaryVersion: String(r.canaryVersion), productionVersion: String(r.productionVersion), gates: r.gates.map((g) => ({ gate: gateName(g.gate), value: g.value, threshold: g.threshold, verdict: GateVerdict[g.verdict] })) },
      reason,
    });
  }
}

/**
 * The guardrail gate from the linked experiment's report: a guardrail FAILED (significant
 * degradation beyond its tolerance) fails; an invalid experiment (SRM) or no report holds.
 */
function guardrailGates(key: string, report: ExperimentReport | Error | undefined, at: Timestamp): GateResult[] {
  const g = (verdict: GateVerdict, reason: string, subject = "", value = 0, threshold = 0, sample = 0n) =>
    create(GateResultSchema, { gate: GateKind.EXPERIMENT_GUARDRAIL, subject, threshold, value, verdict, reason, evaluateTime: at, sampleSize: sample });
  if (!report || report instanceof Error) return [g(GateVerdict.INCONCLUSIVE, `experiment ${key} report unavailable: ${report?.message ?? "none"}`)];
  const units = report.arms.reduce((n, a) => n + a.units, 0n);
  if (report.srm && !report.srm.ok && units > 0n) return [g(GateVerdict.INCONCLUSIVE, `experiment ${key} is invalid: SRM p=${fmt(report.srm.pValue, 6)} < ${report.srm.threshold}`, "", report.srm.pValue, report.srm.threshold, units)];
  if (report.guardrails.length === 0) return [g(GateVerdict.PASS, `experiment ${key} has no guardrail metric result yet`, "", 0, 0, units)];
  return report.guardrails.map((x) =>
    x.status === GuardrailStatus.FAILED
      ? g(GateVerdict.FAIL, `guardrail ${x.metric} degraded: diff ${fmt(x.diff)} beyond tolerated ${fmt(x.margin)} (p=${fmt(x.pValue, 6)})`, x.metric, x.diff, x.margin, units)
      : g(GateVerdict.PASS, `guardrail ${x.metric} ${x.status === GuardrailStatus.PASSED ? "passed" : "not significantly degraded"}: diff ${fmt(x.diff)}, tolerated ${fmt(x.margin)}`, x.metric, x.diff, x.margin, units),
  );
}

function notFound(ref: string) {
  return (err: unknown): never => {
    if (err instanceof PreconditionError) throw new NotFoundError("model version", ref);
    throw err;
  };
}
