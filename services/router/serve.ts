// The request path of Predict and Rank: plan -> (candidate selection) -> features -> one
// Score call -> post-processing. Each step runs under its own budget slice as its deadline,
// is a span and a histogram; fallbacks (default feature values, production instead of a
// failing canary, the fallback score) are taken and reported. Nothing here touches SQLite
// or the registry: endpoints and resolved refs come from memory.

import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { context as otelContext, SpanStatusCode, trace } from "@opentelemetry/api";
import type { FeatureService, GetOnlineFeaturesRequest } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import type { Row, RowOutput } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import type { FeatureBinding } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { InferenceService, ScoreRequest, ScoreResponse } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import {
  FallbackAppliedSchema,
  FallbackKind,
  ServedBy,
  ServingStep,
  StepTimingSchema,
  TimingsSchema,
  type Endpoint,
  type FallbackApplied,
  type OutputTensor,
  type RuleSet,
  type ServingPlan,
} from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import {
  ExcludedCandidateSchema,
  PredictResponseSchema,
  RankedItemSchema,
  RankResponseSchema,
  type PredictRequest,
  type PredictResponse,
  type RankRequest,
  type RankResponse,
} from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { EntityKeySchema, ValueType, type EntityKey, type Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import type { RouterConfig } from "../../lib/config-router.js";
import { counterChild, histogramChild } from "../../lib/metric-children.js";
import { valueMessage } from "../../lib/values.js";
import { DeadlineExceededError, NotFoundError, PreconditionError, UnavailableError, ValidationError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { getTracer, remainingMs, spansRecorded } from "../../lib/telemetry.js";
import { traceIdOf } from "../../lib/trace-ids-only.js";
import { planBudget, type BudgetPlan, type Step } from "./budget.js";
import { featureGrid, type FeatureGrid } from "./columns.js";
import { applyBoosts, applyExclusions, applyFilters, candidateKeyValue, parseIdList, pickTop, ruleRefs, type Excluded, type Lookup, type Scored } from "./candidates.js";
import type { ExperimentCache, ExposureBuffer } from "./experiments.js";
import type { RouterMetrics } from "./metrics.js";
import { roleLabel, route, type RouteDecision } from "./plan.js";
import { calibrate, rawScore, topClasses } from "./postprocess.js";
import type { RefCache, ResolvedRef } from "./refs.js";
import type { ShadowMirror } from "./shadow.js";

/** What the request path needs of an endpoint, kept in memory and swapped on every change. */
export interface LiveEndpoint {
  readonly spec: Endpoint;
  readonly plan: ServingPlan;
  readonly planRevision: number;
  /** The rollout driving the plan ("" when none): replicas report its traffic to its controller. */
  readonly activeRolloutId?: string;
}

/** One request's outcome for a version, fed to the rollout controller's interval window. */
export type Observe = (endpoint: string, role: ServedBy, version: bigint, latencyMs: number, error: boolean, score: number | undefined, unitId: string) => void;

export interface ServeDeps {
  readonly features: Client<typeof FeatureService>;
  readonly inference: Client<typeof InferenceService>;
  readonly refs: RefCache;
  readonly experiments: ExperimentCache;
  readonly exposures: ExposureBuffer;
  readonly shadow: ShadowMirror;
  readonly metrics: RouterMetrics;
  readonly config: RouterConfig;
  readonly logger: Logger;
  readonly endpoint: (name: string) => LiveEndpoint | undefined;
  readonly observe: Observe;
}

const tracer = () => getTracer("mlmesh.router");

/** A Duration from fractional milliseconds (whole nanoseconds, as the wire type needs). */
function durationFromMs(ms: number) {
  const ns = Math.max(0, Math.round(ms * 1e6));
  return create(DurationSchema, { seconds: BigInt(Math.floor(ns / 1e9)), nanos: ns % 1e9 });
}

const STEP_ENUM: Record<Step | "assignment", ServingStep> = {
  candidate_selection: ServingStep.CANDIDATE_SELECTION,
  assignment: ServingStep.ASSIGNMENT,
  feature_fetch: ServingStep.FEATURE_FETCH,
  scoring: ServingStep.SCORING,
  post_processing: ServingStep.POST_PROCESSING,
};

/** Timing bookkeeping of one request. */
class RequestClock {
  readonly t0 = performance.now();
  readonly steps: Array<{ step: Step | "assignment"; elapsed: number; budget: number; exceeded: boolean }> = [];
  readonly deadline: number;
  constructor(
    readonly endpoint: string,
    readonly budget: BudgetPlan,
    private readonly metrics: RouterMetrics,
  ) {
    this.deadline = this.t0 + budget.effectiveMs;
  }
  left(): number {
    return this.deadline - performance.now();
  }
  /** Runs one step as a span with its slice as deadline (never beyond the request's). */
  run<T>(step: Step | "assignment", fn: (timeoutMs: number) => Promise<T> | T): Promise<T> {
    const slice = step === "assignment" ? 0 : Math.max(0, Math.min(this.budget.slices[step], this.left()));
    const t = performance.now();
    // A step span nobody records (ids-only tracing) would cost a context switch per step.
    if (!spansRecorded()) return this.runUntraced(step, slice, t, fn);
    return tracer().startActiveSpan(`router.${step}`, async (span) => {
      span.setAttribute("mlmesh.router.step_budget_ms", slice);
      span.setAttribute("mlmesh.router.time_left_ms", this.left());
      let exceeded = false;
      try {
        return await fn(Math.max(1, Math.floor(slice)));
      } catch (err) {
        exceeded = isDeadline(err);
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
        throw err;
      } finally {
        const elapsed = performance.now() - t;
        if (step !== "assignment" && elapsed > slice) exceeded = true;
        this.record(step, slice, elapsed, exceeded);
        span.end();
      }
    });
  }
  /** run() for a step that does not wait (assignment, post-processing): no promise at all. */
  runSync<T>(step: "assignment" | "post_processing", fn: () => T): T {
    const slice = step === "assignment" ? 0 : Math.max(0, Math.min(this.budget.slices[step], this.left()));
    const t = performance.now();
    const span = spansRecorded() ? tracer().startSpan(`router.${step}`) : undefined;
    span?.setAttribute("mlmesh.router.step_budget_ms", slice);
    span?.setAttribute("mlmesh.router.time_left_ms", this.left());
    let exceeded = false;
    try {
      return span ? otelContext.with(trace.setSpan(otelContext.active(), span), fn) : fn();
    } catch (err) {
      exceeded = isDeadline(err);
      span?.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      const elapsed = performance.now() - t;
      if (step !== "assignment" && elapsed > slice) exceeded = true;
      this.record(step, slice, elapsed, exceeded);
      span?.end();
    }
  }
  private async runUntraced<T>(step: Step | "assignment", slice: number, t: number, fn: (timeoutMs: number) => Promise<T> | T): Promise<T> {
    let exceeded = false;
    try {
      return await fn(Math.max(1, Math.floor(slice)));
    } catch (err) {
      exceeded = isDeadline(err);
      throw err;
    } finally {
      const elapsed = performance.now() - t;
      if (step !== "assignment" && elapsed > slice) exceeded = true;
      this.record(step, slice, elapsed, exceeded);
    }
  }
  private record(step: Step | "assignment", slice: number, elapsed: number, exceeded: boolean): void {
    this.steps.push({ step, elapsed, budget: slice, exceeded });
    histogramChild(this.metrics.stepDuration, { endpoint: this.endpoint, step }).observe(elapsed / 1000);
    if (exceeded) this.metrics.budgetExceeded.inc({ endpoint: this.endpoint, step });
  }
  timings() {
    return create(TimingsSchema, {
      total: durationFromMs(performance.now() - this.t0),
      effectiveBudget: durationFromMs(this.budget.effectiveMs),
      steps: this.steps.map((s) => create(StepTimingSchema, { step: STEP_ENUM[s.step], elapsed: durationFromMs(s.elapsed), budget: durationFromMs(s.budget), budgetExceeded: s.exceeded })),
    });
  }
}

/**
 * The request's own span (the RPC SERVER span) carries what an engineer filters on in
 * Jaeger: endpoint, the version that answered, arm, role, budget and what was left of it.
 */
function annotateRequest(endpoint: string, clock: RequestClock, decision: RouteDecision): void {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return;
  span.setAttributes({
    "mlmesh.endpoint": endpoint,
    "mlmesh.router.budget_ms": clock.budget.effectiveMs,
    "mlmesh.router.arm": decision.arm,
    "mlmesh.router.served_by": roleLabel(decision.role),
  });
}

function annotateAnswer(clock: RequestClock, model: string, version: bigint, servedBy: ServedBy): void {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return;
  span.setAttributes({
    "mlmesh.model": model,
    "mlmesh.model.version": Number(version),
    "mlmesh.router.served_by": roleLabel(servedBy),
    "mlmesh.router.time_left_ms": clock.left(),
  });
}

/** The request's trace id ("" outside a trace), without minting a span id for it. */
function activeTraceId(): string {
  const span = trace.getActiveSpan();
  return span ? traceIdOf(span) : "";
}

function isDeadline(err: unknown): boolean {
  if (err instanceof DeadlineExceededError) return true;
  if (err instanceof ConnectError) return err.code === Code.DeadlineExceeded;
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/** Score errors meaning "this version is not (yet) loaded there", not "these inputs are wrong". */
function notReady(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return false;
  return err.code === Code.Unavailable || err.code === Code.FailedPrecondition || err.code === Code.NotFound;
}

function errText(err: unknown): string {
  return err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err);
}

function valueText(v: Value | undefined): string {
  const k = v?.kind;
  if (!k?.case) return "";
  if (k.case === "floatVectorValue") return k.value.values.join(",");
  return String(k.value);
}

function checkEntity(spec: Endpoint, key: EntityKey | undefined, field: string): EntityKey {
  const keys = key?.keys ?? {};
  for (const k of spec.entities) {
    const v = keys[k];
    if (!v || v.kind.case === undefined) throw new ValidationError(`${field}.keys["${k}"]`, `is required by endpoint ${spec.name} (entities: ${spec.entities.join(", ")})`);
    if (v.kind.case === "floatVectorValue" || v.kind.case === "doubleValue" || v.kind.case === "floatValue") {
      throw new ValidationError(`${field}.keys["${k}"]`, "an entity key must be an int64, string or bool");
    }
  }
  return key!;
}

/** The hashing unit: the request's unit_id, else the plan's unit key, else the first entity key. */
function unitOf(plan: ServingPlan, spec: Endpoint, unitId: string, key: EntityKey, context: Readonly<Record<string, Value>>): string {
  if (unitId) return unitId;
  const p = plan.plan;
  const unitKey = p.case === "canary" || p.case === "experiment" ? p.value.unitKey : "";
  if (unitKey) return valueText(key.keys[unitKey] ?? context[unitKey]);
  return valueText(key.keys[spec.entities[0]!]);
}

/** Feature refs a version needs: the endpoint's explicit refs, else the version's binding. */
/** A binding's refs in input order; bindings are never changed once resolved, so once each. */
const refsOfBinding = new WeakMap<FeatureBinding, readonly string[]>();
const NO_REFS: readonly string[] = [];

function bindingRefs(r: ResolvedRef): readonly string[] {
  const b = r.binding;
  if (!b) return NO_REFS;
  let refs = refsOfBinding.get(b);
  if (!refs) refsOfBinding.set(b, (refs = b.inputs.flatMap((i) => i.features)));
  return refs;
}

/** A Score row for `r` from feature values by ref. */
export function buildRow(r: ResolvedRef, values: ReadonlyMap<string, Value>, entity: EntityKey | undefined, order?: readonly string[]): Row {
  const out: Record<string, Value> = {};
  if (r.binding) {
    for (const ref of bindingRefs(r)) {
      const v = values.get(ref);
      if (v) out[ref] = v;
    }
  } else {
    // No binding: the refs in order make one vector per graph input (one input) or go by name.
    const refs = order ?? [...values.keys()];
    if (r.inputs.length === 1) {
      const xs = refs.map((ref) => Number(valueText(values.get(ref))));
      out[r.inputs[0]!] = valueMessage({ case: "floatVectorValue", value: { $typeName: "mlmesh.types.v1.FloatVector", values: xs } });
    } else {
      for (const ref of refs) {
        const v = values.get(ref);
        if (v) out[ref.slice(ref.indexOf(":") + 1)] = v;
      }
    }
  }
  // A literal message: create() would walk every value again to check it is one.
  return { $typeName: "mlmesh.inference.v1.Row", values: out, entity };
}

/** The row's raw outputs as message literals (create() would walk each array again). */
function outputTensors(row: RowOutput): Record<string, OutputTensor> {
  const out: Record<string, OutputTensor> = {};
  for (const name in row.outputs) {
    const o = row.outputs[name]!;
    const strings = o.strings.length > 0;
    out[name] = {
      $typeName: "mlmesh.router.v1.OutputTensor",
      datatype: strings ? ValueType.STRING : ValueType.FLOAT64,
      shape: o.shape,
      doubleValues: strings ? [] : o.values,
      int64Values: [],
      stringValues: strings ? o.strings : [],
      boolValues: [],
    };
  }
  return out;
}

interface FetchResult {
  /** Per entity row: ref -> value. */
  readonly rows: Array<Map<string, Value>>;
  readonly refs: readonly string[];
  readonly fallbacks: FallbackApplied[];
}

export class Server {
  constructor(private readonly d: ServeDeps) {}

  private live(name: string): LiveEndpoint {
    if (!name) throw new ValidationError("endpoint", "is required");
    const ep = this.d.endpoint(name);
    if (!ep) throw new NotFoundError("endpoint", name, "create it with `mlmesh endpoints apply FILE.json`");
    return ep;
  }

  private async resolveRefs(spec: Endpoint, decision: RouteDecision): Promise<{ target: ResolvedRef; fallback: ResolvedRef | undefined; refs: readonly string[] | undefined; featureSet: string }> {
    const target = await this.d.refs.get(decision.ref);
    const fallback = decision.fallbackRef ? await Promise.resolve(this.d.refs.get(decision.fallbackRef)).catch(() => undefined) : undefined;
    const fs = spec.features?.source;
    if (fs?.case === "featureRefs") return { target, fallback, refs: fs.value.refs, featureSet: "" };
    if (fs?.case === "featureSet") return { target, fallback, refs: undefined, featureSet: fs.value };
    // The served version's binding; a version without one reads production's refs (a canary
    // whose inputs do not fit them then fails to score and production answers).
    let refs = bindingRefs(target);
    if (fallback) refs = [...new Set([...refs, ...bindingRefs(fallback)])];
    // Just after an alias switch the replaced version may have to answer (Server.score): its inputs too.
    const previous = this.d.refs.previousOf(target.ref);
    if (previous && previous.binding !== target.binding) refs = [...new Set([...refs, ...bindingRefs(previous)])];
    if (refs.length === 0) throw new PreconditionError(`endpoint ${spec.name}: model version ${target.pinned} has no feature binding; set the endpoint's features (feature_refs or feature_set)`);
    return { target, fallback, refs, featureSet: "" };
  }

  /** One GetOnlineFeatures call; a failure or timeout takes the default values when they cover every ref. */
  private async fetch(
    spec: Endpoint,
    entities: EntityKey[],
    refs: readonly string[] | undefined,
    featureSet: string,
    context: Readonly<Record<string, Value>>,
    timeoutMs: number,
    overrides?: (row: number, ref: string) => Value | undefined,
  ): Promise<FetchResult> {
    const defaults = spec.fallbacks?.defaultFeatureValues ?? {};
    const fallbacks: FallbackApplied[] = [];
    let resRefs = refs ?? [];
    let grid: FeatureGrid | undefined;
    try {
      // A message literal: an in-process call passes it on as it is, without create() walking it.
      const request: GetOnlineFeaturesRequest = {
        $typeName: "mlmesh.features.v1.GetOnlineFeaturesRequest",
        entities,
        refs: refs ? [...refs] : [],
        featureSet,
        requestData: context,
        entityRequestData: [],
        columnar: true,
      };
      const res = await this.d.features.getOnlineFeatures(request, { timeoutMs });
      resRefs = res.refs;
      grid = featureGrid(res, entities.length);
    } catch (err) {
      const missing = resRefs.filter((r) => defaults[r] === undefined);
      if (resRefs.length === 0 || missing.length > 0) {
        const which = missing.length ? `${missing.join(", ")} (no default in fallbacks.default_feature_values)` : "the feature set (no defaults)";
        if (isDeadline(err)) throw new DeadlineExceededError(`feature fetch ran out of its ${timeoutMs} ms budget; cannot fall back for ${which}`);
        const code = err instanceof ConnectError ? err.code : Code.Unavailable;
        // A missing view or a bad ref is the endpoint's configuration, not an outage.
        if (code === Code.NotFound || code === Code.InvalidArgument || code === Code.FailedPrecondition) throw new PreconditionError(`feature fetch refused: ${errText(err)}; cannot fall back for ${which}`);
        throw new UnavailableError(`feature fetch failed (${errText(err)}); cannot fall back for ${which}`);
      }
      fallbacks.push(create(FallbackAppliedSchema, { kind: FallbackKind.FEATURE_FETCH_FAILED, reason: isDeadline(err) ? `feature fetch deadline ${timeoutMs} ms exceeded` : `feature fetch failed: ${errText(err)}`, features: [...resRefs] }));
    }
    const rows: Array<Map<string, Value>> = [];
    const missingDefaults = new Set<string>();
    const noDefault = new Set<string>();
    for (let i = 0; i < entities.length; i++) {
      const m = new Map<string, Value>();
      resRefs.forEach((ref, j) => {
        const over = overrides?.(i, ref) ?? context[ref];
        if (over) return void m.set(ref, over);
        const fv = grid?.value(i, j);
        if (fv) return void m.set(ref, fv);
        const dv = defaults[ref];
        if (dv) {
          m.set(ref, dv);
          if (grid) missingDefaults.add(ref);
        } else noDefault.add(ref);
      });
      rows.push(m);
    }
    if (missingDefaults.size) fallbacks.push(create(FallbackAppliedSchema, { kind: FallbackKind.FEATURE_VALUES_MISSING, reason: "values NOT_FOUND, EXPIRED or NULL took their defaults", features: [...missingDefaults] }));
    if (noDefault.size) throw new PreconditionError(`feature values ${[...noDefault].join(", ")} are missing (NOT_FOUND, EXPIRED or NULL) and have no default in fallbacks.default_feature_values`);
    return { rows, refs: resRefs, fallbacks };
  }

  /** Score rows on `target`; on failure retry on `fallback` (production) within what is left. */
  private async score(
    clock: RequestClock,
    spec: Endpoint,
    decision: RouteDecision,
    target: ResolvedRef,
    fallback: ResolvedRef | undefined,
    build: (r: ResolvedRef) => Row[],
    requestId: string,
  ): Promise<{ res: ScoreResponse; used: ResolvedRef; role: ServedBy; fallbacks: FallbackApplied[]; targetFailed: boolean }> {
    const fallbacks: FallbackApplied[] = [];
    const call = (r: ResolvedRef, servedAs: string, timeoutMs: number) => {
      const request: ScoreRequest = {
        $typeName: "mlmesh.inference.v1.ScoreRequest",
        modelRef: r.pinned,
        inputs: { case: "rows", value: { $typeName: "mlmesh.inference.v1.RowInputs", rows: build(r) } },
        requestId,
        outputNames: [],
        skipPredictionLog: false,
        servedAs,
        endpoint: spec.name,
      };
      return this.d.inference.score(request, { timeoutMs });
    };
    return clock.run("scoring", async (timeoutMs) => {
      // Just after `target.ref` switched to a new version (refs.ts), the replaced version, still
      // loaded, answers when the new one is not ready; the response is wholly that version's and
      // says so (a PRODUCTION_VERSION fallback naming the new version, degraded). While the new
      // version is in its short back-off after such a failure, requests go to the previous one.
      const previous = this.d.refs.previousOf(target.ref);
      const usePrevious = (err: unknown) => {
        this.d.refs.noteNotReady(target.ref);
        fallbacks.push(
          create(FallbackAppliedSchema, {
            kind: FallbackKind.PRODUCTION_VERSION,
            reason: `${target.ref} moved to ${target.pinned}, not ready in inference (${errText(err)}); the previous ${previous!.pinned} answered`,
            failedModelRef: target.pinned,
          }),
        );
        return call(previous!, decision.servedAs, Math.max(1, Math.floor(clock.left())));
      };
      if (previous && previous.version !== target.version && this.d.refs.inBackoff(target.ref)) {
        const res = await usePrevious("in back-off after failing");
        return { res, used: previous, role: decision.role, fallbacks, targetFailed: true };
      }
      try {
        const res = await call(target, decision.servedAs, timeoutMs);
        if (previous) this.d.refs.noteReady(target.ref);
        return { res, used: target, role: decision.role, fallbacks, targetFailed: false };
      } catch (err) {
        if (previous && previous.version !== target.version && notReady(err) && clock.left() > 1) {
          const res = await usePrevious(err);
          return { res, used: previous, role: decision.role, fallbacks, targetFailed: true };
        }
        const toProd = spec.fallbacks?.fallbackToProduction ?? true;
        if (!fallback || !toProd || clock.left() <= 1) throw err;
        this.d.logger.debug({ err: errText(err), version: target.pinned }, "router: version failed; production answers");
        fallbacks.push(create(FallbackAppliedSchema, { kind: FallbackKind.PRODUCTION_VERSION, reason: `${target.pinned} failed: ${errText(err)}`, failedModelRef: target.pinned }));
        const res = await call(fallback, "production", Math.max(1, Math.floor(clock.left())));
        return { res, used: fallback, role: ServedBy.PRODUCTION, fallbacks, targetFailed: true };
      }
    });
  }

  private planFor(ep: LiveEndpoint, unit: string, context: Readonly<Record<string, Value>>): RouteDecision {
    return route(ep.plan, {
      endpoint: ep.spec.name,
      model: ep.spec.model,
      unitId: unit,
      random: Math.random(),
      assign: (key, u) => this.d.experiments.assign(key, u, context),
    });
  }

  async predict(req: PredictRequest): Promise<PredictResponse> {
    const ep = this.live(req.endpoint);
    const spec = ep.spec;
    const key = checkEntity(spec, req.entityKey, "entity_key");
    const clock = new RequestClock(spec.name, planBudget(spec.latencyBudget, this.d.config.defaultBudgetMs, remainingMs(), false), this.d.metrics);
    const requestId = req.requestId || crypto.randomUUID();
    const traceId = activeTraceId();
    const unit = unitOf(ep.plan, spec, req.unitId, key, req.context);
    const decision = clock.runSync("assignment", () => this.planFor(ep, unit, req.context));
    annotateRequest(spec.name, clock, decision);
    if (decision.exposure) this.d.exposures.add(decision.exposure, `router/${spec.name}`);
    let version = 0n;
    let targetFailed = false;
    const fallbacks: FallbackApplied[] = [];
    const finish = (resp: PredictResponse, outcome: string) => {
      const ms = performance.now() - clock.t0;
      counterChild(this.d.metrics.requests, { endpoint: spec.name, method: "Predict", served_by: roleLabel(resp.servedBy), outcome }).inc();
      histogramChild(this.d.metrics.requestDuration, { endpoint: spec.name, method: "Predict" }).observe(ms / 1000);
      for (const f of resp.fallbacks) this.d.metrics.fallbacks.inc({ endpoint: spec.name, kind: FallbackKind[f.kind] ?? "UNKNOWN" });
      return resp;
    };
    try {
      const { target, fallback, refs, featureSet } = await this.resolveRefs(spec, decision);
      version = target.version;
      let fetched: FetchResult;
      try {
        fetched = await clock.run("feature_fetch", (t) => this.fetch(spec, [key], refs, featureSet, req.context, t));
      } catch (err) {
        const fb = this.fallbackScore(spec, err);
        if (fb) return finish(this.fallbackPredict(spec, requestId, fb, clock, req.includeTimings, ep.planRevision, traceId), "degraded");
        throw err;
      }
      fallbacks.push(...fetched.fallbacks);
      const values = fetched.rows[0]!;
      let scored;
      try {
        scored = await this.score(clock, spec, decision, target, fallback, (r) => [buildRow(r, values, key, fetched.refs)], requestId);
      } catch (err) {
        targetFailed = true;
        const fb = this.fallbackScore(spec, err, target.pinned);
        if (fb) return finish(this.fallbackPredict(spec, requestId, fb, clock, req.includeTimings, ep.planRevision, traceId, fallbacks), "degraded");
        throw err;
      }
      targetFailed = scored.targetFailed;
      fallbacks.push(...scored.fallbacks);
      const pp = spec.postProcessing;
      const resp = clock.runSync("post_processing", () => {
        const row = scored.res.outputs[0]!;
        const raw = rawScore(row, pp);
        const score = calibrate(raw, pp?.calibration);
        const answer: PredictResponse = {
          $typeName: "mlmesh.router.v1.PredictResponse",
          requestId,
          score,
          rawScore: raw,
          decision: pp?.threshold !== undefined ? score >= pp.threshold : undefined,
          classProbabilities: topClasses(row.classProbabilities, pp?.topK ?? 0),
          outputs: outputTensors(row),
          model: scored.res.modelName,
          version: scored.res.version,
          modelRef: scored.used.ref,
          arm: scored.role === ServedBy.EXPERIMENT_ARM ? decision.arm : "",
          experimentKey: scored.role === ServedBy.EXPERIMENT_ARM ? decision.experimentKey : "",
          servedBy: scored.role,
          fallbacks,
          degraded: fallbacks.length > 0,
          timings: undefined,
          features: req.includeFeatures ? Object.fromEntries(values) : {},
          planRevision: BigInt(ep.planRevision),
          traceId,
        };
        return answer;
      });
      if (req.includeTimings) resp.timings = clock.timings();
      annotateAnswer(clock, resp.model, resp.version, resp.servedBy);
      const ms = performance.now() - clock.t0;
      this.d.observe(spec.name, decision.role, target.version, ms, targetFailed, targetFailed ? undefined : resp.score, unit);
      if (decision.shadows.length > 0) {
        this.d.shadow.schedule({
          endpoint: spec.name,
          shadows: decision.shadows,
          model: spec.model,
          values,
          entity: key,
          productionScore: resp.score,
          post: pp,
          tolerance: ep.plan.plan.case === "shadow" ? (ep.plan.plan.value.agreementTolerance ?? 0.01) : 0.01,
          requestId,
          buildRow: (r, v, e) => buildRow(r, v, e, fetched.refs),
        });
      }
      return finish(resp, resp.degraded ? "degraded" : "ok");
    } catch (err) {
      const ms = performance.now() - clock.t0;
      if (version) this.d.observe(spec.name, decision.role, version, ms, true, undefined, unit);
      this.d.metrics.requests.inc({ endpoint: spec.name, method: "Predict", served_by: roleLabel(decision.role), outcome: "error" });
      throw err;
    }
  }

  /** The endpoint's fallback score for an error that left no model answer, if it has one. */
  private fallbackScore(spec: Endpoint, err: unknown, failedRef = ""): FallbackApplied | undefined {
    if (spec.fallbacks?.fallbackScore === undefined) return undefined;
    if (err instanceof ValidationError || err instanceof NotFoundError) return undefined;
    return create(FallbackAppliedSchema, { kind: FallbackKind.FALLBACK_SCORE, reason: errText(err), failedModelRef: failedRef });
  }

  private fallbackPredict(spec: Endpoint, requestId: string, fb: FallbackApplied, clock: RequestClock, timings: boolean, revision: number, traceId: string, earlier: FallbackApplied[] = []): PredictResponse {
    const score = spec.fallbacks!.fallbackScore!;
    return create(PredictResponseSchema, {
      requestId,
      score,
      rawScore: score,
      decision: spec.postProcessing?.threshold !== undefined ? score >= spec.postProcessing.threshold : undefined,
      servedBy: ServedBy.FALLBACK,
      fallbacks: [...earlier, fb],
      degraded: true,
      timings: timings ? clock.timings() : undefined,
      planRevision: BigInt(revision),
      traceId,
    });
  }

  async rank(req: RankRequest): Promise<RankResponse> {
    const ep = this.live(req.endpoint);
    const spec = ep.spec;
    const key = checkEntity(spec, req.entityKey, "entity_key");
    if (req.k < 0) throw new ValidationError("k", "must not be negative");
    const cs = spec.candidateSelection;
    const candEntity = cs?.candidateEntity || "item_id";
    const maxCandidates = cs?.maxCandidates || 1000;
    const clock = new RequestClock(spec.name, planBudget(spec.latencyBudget, this.d.config.defaultBudgetMs, remainingMs(), true), this.d.metrics);
    const requestId = req.requestId || crypto.randomUUID();
    const traceId = activeTraceId();
    const unit = unitOf(ep.plan, spec, req.unitId, key, req.context);
    const decision = clock.runSync("assignment", () => this.planFor(ep, unit, req.context));
    annotateRequest(spec.name, clock, decision);
    if (decision.exposure) this.d.exposures.add(decision.exposure, `router/${spec.name}`);
    const rules: RuleSet | undefined = decision.ruleSet ? cs?.ruleSets[decision.ruleSet] : cs?.rules;
    const needs = ruleRefs(rules);
    const fallbacks: FallbackApplied[] = [];
    const t0 = performance.now();
    let version = 0n;
    try {
      // ---- candidate selection: source, then id exclusions (before any candidate feature is read)
      const sel = await clock.run("candidate_selection", async (timeoutMs) => {
        const given = new Map(req.candidates.map((c) => [c.id, c.features]));
        if (req.candidates.length > maxCandidates) throw new ValidationError("candidates", `${req.candidates.length} candidates is more than the endpoint's max_candidates ${maxCandidates}`);
        req.candidates.forEach((c, i) => {
          if (!c.id) throw new ValidationError(`candidates[${i}].id`, "is required");
        });
        const source = req.candidates.length > 0 ? undefined : (req.candidateSource ?? cs?.source);
        let ids = req.candidates.map((c) => c.id);
        const userRefs = [...needs.user];
        const listRef = source?.source.case === "featureList" ? source.source.value : undefined;
        const userValues = new Map<string, Value>();
        if (listRef || userRefs.length) {
          const reads: Promise<void>[] = [];
          if (listRef) {
            const k = listRef.fixedKey ?? key;
            reads.push(
              this.d.features.getOnlineFeatures({ entities: [k], refs: [listRef.featureRef], columnar: true }, { timeoutMs }).then((r) => {
                const v = featureGrid(r, 1).value(0, 0);
                if (v) userValues.set(listRef.featureRef, v);
              }),
            );
          }
          if (userRefs.length) {
            reads.push(
              this.d.features.getOnlineFeatures({ entities: [key], refs: userRefs, columnar: true }, { timeoutMs }).then((r) => {
                const g = featureGrid(r, 1);
                userRefs.forEach((ref, j) => {
                  const v = g.value(0, j);
                  if (v) userValues.set(ref, v);
                });
              }),
            );
          }
          const settled = await Promise.allSettled(reads);
          const failed = settled.find((s) => s.status === "rejected") as PromiseRejectedResult | undefined;
          if (failed) fallbacks.push(create(FallbackAppliedSchema, { kind: FallbackKind.CANDIDATE_SOURCE, reason: `candidate source or exclusion list unreadable: ${errText(failed.reason)}` }));
        }
        if (listRef) {
          ids = parseIdList(userValues.get(listRef.featureRef));
          if (ids.length > maxCandidates) {
            fallbacks.push(create(FallbackAppliedSchema, { kind: FallbackKind.CANDIDATE_SOURCE, reason: `stored list of ${ids.length} truncated to max_candidates ${maxCandidates}` }));
            ids = ids.slice(0, maxCandidates);
          }
        } else if (ids.length === 0) {
          throw new ValidationError("candidates", "the request has no candidates and the endpoint's candidate source is the request");
        }
        const received = ids.length;
        const ex = applyExclusions(rules, [...new Set(ids)], req.context, (r) => userValues.get(r));
        return { ids: ex.kept, excluded: ex.excluded, received, given };
      });
      const { target, fallback, refs: modelRefs, featureSet } = await this.resolveRefs(spec, decision);
      version = target.version;
      const refs = modelRefs ? [...new Set([...modelRefs, ...needs.candidate])] : undefined;
      if (!refs && needs.candidate.length) throw new PreconditionError(`endpoint ${spec.name}: rules on candidate features need the endpoint's features as feature_refs, not a feature set`);
      const excluded: Excluded[] = [...sel.excluded];
      const entities = sel.ids.map((id) => create(EntityKeySchema, { keys: { ...key.keys, [candEntity]: candidateKeyValue(id) } }));
      let items: Scored[] = [];
      let scoredRes: Awaited<ReturnType<Server["score"]>> | undefined;
      let survivors: number[] = [];
      let fetched: FetchResult | undefined;
      if (entities.length > 0) {
        fetched = await clock.run("feature_fetch", (t) => this.fetch(spec, entities, refs, featureSet, req.context, t, (i, ref) => sel.given.get(sel.ids[i]!)?.[ref]));
        fallbacks.push(...fetched.fallbacks);
        const rows = fetched.rows;
        const look = (i: number): Lookup => (ref) => rows[i]!.get(ref);
        // Filters are rules too, timed with candidate selection: they decide which rows the model sees.
        const t1 = performance.now();
        const f = applyFilters(rules, sel.ids, look, req.context);
        clock.steps.push({ step: "candidate_selection", elapsed: performance.now() - t1, budget: 0, exceeded: false });
        survivors = f.kept;
        excluded.push(...f.excluded);
        if (survivors.length > 0) {
          const fr = fetched.refs;
          scoredRes = await this.score(clock, spec, decision, target, fallback, (r) => survivors.map((i) => buildRow(r, rows[i]!, entities[i], fr)), requestId);
          fallbacks.push(...scoredRes.fallbacks);
        }
        const pp = spec.postProcessing;
        const result = clock.runSync("post_processing", () => {
          items = survivors.map((i, j) => {
            const s = calibrate(rawScore(scoredRes!.res.outputs[j]!, pp), pp?.calibration);
            return { id: sel.ids[i]!, index: i, score: s, modelScore: s, boosts: [], category: "" };
          });
          applyBoosts(rules, items, look, req.context);
          return pickTop(rules, items, req.k || pp?.topK || 0, look);
        });
        items = result.picked;
        excluded.push(...result.skipped);
      }
      const resp = create(RankResponseSchema, {
        requestId,
        items: items.map((it, i) => create(RankedItemSchema, { id: it.id, score: it.score, modelScore: it.modelScore, rank: i + 1, boostsApplied: it.boosts, category: it.category })),
        model: scoredRes?.res.modelName ?? target.model,
        version: scoredRes?.res.version ?? target.version,
        modelRef: scoredRes?.used.ref ?? target.ref,
        arm: decision.arm,
        experimentKey: decision.experimentKey,
        ruleSet: decision.ruleSet,
        servedBy: scoredRes?.role ?? decision.role,
        fallbacks,
        degraded: fallbacks.length > 0,
        candidatesReceived: sel.received,
        candidatesScored: survivors.length,
        excluded: req.explain ? excluded.map((e) => create(ExcludedCandidateSchema, e)) : [],
        planRevision: BigInt(ep.planRevision),
        traceId,
        timings: req.includeTimings ? clock.timings() : undefined,
      });
      annotateAnswer(clock, resp.model, resp.version, resp.servedBy);
      const ms = performance.now() - t0;
      this.d.observe(spec.name, decision.role, target.version, ms, scoredRes?.targetFailed ?? false, items[0]?.modelScore, unit);
      counterChild(this.d.metrics.requests, { endpoint: spec.name, method: "Rank", served_by: roleLabel(resp.servedBy), outcome: resp.degraded ? "degraded" : "ok" }).inc();
      histogramChild(this.d.metrics.requestDuration, { endpoint: spec.name, method: "Rank" }).observe((performance.now() - clock.t0) / 1000);
      return resp;
    } catch (err) {
      if (version) this.d.observe(spec.name, decision.role, version, performance.now() - t0, true, undefined, unit);
      this.d.metrics.requests.inc({ endpoint: spec.name, method: "Rank", served_by: roleLabel(decision.role), outcome: "error" });
      throw err;
    }
  }
}
