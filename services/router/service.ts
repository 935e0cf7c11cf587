// RouterService handlers: endpoints, serving plans, rollouts, shadow statistics and audit
// over the store and the controller; Predict and Rank through serve.ts. The handlers keep
// the in-memory view of every endpoint (what the request path reads) in step with SQLite.

import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { durationMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { ServingPlanChangeCause } from "../../gen/mlmesh/events/v1/router_events_pb.js";
import type { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import {
  BlueGreenColor,
  RolloutState,
  ServedBy,
  ServingPlanSchema,
  ShadowStatsSchema,
  TrafficShareSchema,
  type Endpoint,
  type ServingPlan,
  type TrafficShare,
} from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import type { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { PreconditionError, UnavailableError, ValidationError } from "../../lib/errors.js";
import { principalOf } from "../../lib/principal.js";
import type { ExperimentCache } from "./experiments.js";
import { productionRef } from "./plan.js";
import type { RefCache } from "./refs.js";
import type { RolloutController } from "./rollout.js";
import type { LiveEndpoint, Server } from "./serve.js";
import type { ShadowMirror } from "./shadow.js";
import { effectiveRef, normaliseEndpoint, planRefs, singlePlan, validateEndpointName, validatePlan } from "./spec.js";
import { endpointView, type EndpointRecord, type RouterStore } from "./store.js";
import "./predict-json.js"; // registers Predict's Connect JSON codecs

export interface RouterServiceDeps {
  readonly store: RouterStore;
  readonly refs: RefCache;
  readonly experiments: ExperimentCache;
  readonly features: Client<typeof FeatureService>;
  readonly server: Server;
  readonly controller: RolloutController;
  readonly shadow: ShadowMirror;
  /** In-memory endpoints read by the request path. */
  readonly live: Map<string, LiveEndpoint>;
}

/** Rebuild the in-memory view of one endpoint from the store. */
export function refreshLive(d: Pick<RouterServiceDeps, "store" | "live">, name: string): void {
  const r = d.store.get(name);
  if (!r) d.live.delete(name);
  else d.live.set(name, { spec: r.spec, plan: r.plan, planRevision: r.planRevision, activeRolloutId: r.activeRolloutId });
}

/** Resolve every ref of a plan (FAILED_PRECONDITION when one does not) and keep them loaded. */
async function resolvePlan(d: RouterServiceDeps, plan: ServingPlan, spec: Endpoint, field: string): Promise<void> {
  const refs = planRefs(plan, spec.model);
  const resolved = await Promise.all(refs.map((r) => d.refs.resolve(r)));
  // New versions are loaded before the plan takes traffic, so a switch never waits for a load.
  await Promise.all(resolved.map((r) => d.refs.load(r)));
  if (!spec.features?.source.case) {
    const prod = resolved[0]!;
    if (!prod.binding) throw new PreconditionError(`${field}: ${prod.pinned} has no registered feature binding; push it with --features/--entity or set the endpoint's features`);
  }
  const p = plan.plan;
  if (p.case === "experiment") {
    const e = await d.experiments.load(p.value.experimentKey);
    const missing = e.arms.map((a) => a.name).filter((a) => !p.value.arms[a]);
    if (missing.length) throw new PreconditionError(`${field}.experiment.arms: experiment ${e.key} arms ${missing.join(", ")} are not bound to a version or rule set`);
    const unknown = Object.keys(p.value.arms).filter((a) => !e.arms.some((x) => x.name === a));
    if (unknown.length) throw new ValidationError(`${field}.experiment.arms`, `${unknown.join(", ")} are not arms of experiment ${e.key}`);
  }
}

function traffic(d: RouterServiceDeps, plan: ServingPlan, model: string): TrafficShare[] {
  const share = (ref: string, role: ServedBy, weight: number, extra: { shadow?: boolean; mirrorFraction?: number; arm?: string } = {}) => {
    const eff = effectiveRef(ref, model);
    const r = d.refs.peek(eff);
    return create(TrafficShareSchema, { modelRef: eff, model: r?.model ?? "", version: r?.version ?? 0n, role, weight, ...extra });
  };
  const p = plan.plan;
  switch (p.case) {
    case "canary":
      return [share(p.value.productionModelRef, ServedBy.PRODUCTION, 1 - p.value.canaryWeight), share(p.value.canaryModelRef, ServedBy.CANARY, p.value.canaryWeight)];
    case "shadow":
      return [share(p.value.productionModelRef, ServedBy.PRODUCTION, 1), ...p.value.shadowModelRefs.map((s) => share(s, ServedBy.PRODUCTION, 0, { shadow: true, mirrorFraction: p.value.mirrorFraction }))];
    case "blueGreen": {
      const green = p.value.active === BlueGreenColor.GREEN;
      return [share(p.value.blueModelRef, ServedBy.BLUE, green ? 0 : 1), share(p.value.greenModelRef, ServedBy.GREEN, green ? 1 : 0)];
    }
    case "experiment":
      return [share(p.value.defaultModelRef, ServedBy.PRODUCTION, 0), ...Object.entries(p.value.arms).map(([arm, b]) => share(b.modelRef || p.value.defaultModelRef, ServedBy.EXPERIMENT_ARM, 0, { arm }))];
    case "single":
      return [share(p.value.modelRef, ServedBy.PRODUCTION, 1)];
    default:
      return [];
  }
}

function view(d: RouterServiceDeps, r: EndpointRecord): Endpoint {
  const e = endpointView(r);
  e.status!.traffic = traffic(d, r.plan, r.spec.model);
  return e;
}

function reasonOf(r: string): string {
  if (r.length > 2000) throw new ValidationError("reason", "at most 2000 characters");
  return r;
}

export function createRouterService(d: RouterServiceDeps): Partial<ServiceImpl<typeof RouterService>> {
  const { store, controller } = d;
  return {
    predict: (req) => d.server.predict(req),
    rank: (req) => d.server.rank(req),

    async applyEndpoint(req, ctx) {
      const { spec, plan } = normaliseEndpoint(req.endpoint);
      const reason = reasonOf(req.reason);
      const before = store.get(spec.name);
      const effectivePlan = plan ?? before?.plan ?? singlePlan(`${spec.model}@production`);
      await resolvePlan(d, effectivePlan, spec, "endpoint.serving_plan");
      if (spec.features?.source.case === "featureSet") {
        try {
          await d.features.getFeatureSet({ name: spec.features.source.value }, { timeoutMs: 5000 });
        } catch (err) {
          const ce = ConnectError.from(err);
          if (ce.code === Code.NotFound) throw new PreconditionError(`endpoint.features.feature_set: ${ce.rawMessage}`);
          throw new UnavailableError(`the features service could not be reached: ${ce.rawMessage}`);
        }
      }
      if (req.validateOnly) {
        const preview = endpointView({ spec, generation: before?.generation ?? 0, plan: effectivePlan, planRevision: before?.planRevision ?? 0, planUpdateTime: 0, activeRolloutId: before?.activeRolloutId ?? "", createTime: before?.createTime ?? Date.now(), updateTime: Date.now() });
        return { endpoint: preview, created: !before, changed: false };
      }
      const out = store.apply({ spec, plan, initialPlan: singlePlan(`${spec.model}@production`), principal: principalOf(ctx), reason });
      refreshLive(d, spec.name);
      return { endpoint: view(d, out.record), created: out.created, changed: out.changed };
    },

    getEndpoint(req) {
      validateEndpointName(req.name);
      return { endpoint: view(d, store.require(req.name)) };
    },

    listEndpoints(req) {
      const page = store.list({ model: req.model, pageSize: req.pageSize, pageToken: req.pageToken });
      return { endpoints: page.records.map((r) => view(d, r)), nextPageToken: page.nextPageToken };
    },

    deleteEndpoint(req, ctx) {
      validateEndpointName(req.name);
      const principal = principalOf(ctx);
      const reason = reasonOf(req.reason);
      const before = store.delete(req.name, { principal, reason, abort: req.force ? (id) => controller.abortInTx(id, reason || "endpoint deleted with force", principal) : undefined });
      refreshLive(d, req.name);
      // Release the versions no remaining endpoint serves.
      const used = new Set(store.all().flatMap((r) => planRefs(r.plan, r.spec.model).map((ref) => d.refs.peek(ref)?.pinned)));
      for (const ref of planRefs(before.plan, before.spec.model)) {
        const r = d.refs.peek(ref);
        if (r && !used.has(r.pinned)) d.refs.release(r, `endpoint ${req.name} deleted`);
      }
      return { endpoint: endpointView(before) };
    },

    async setServingPlan(req, ctx) {
      validateEndpointName(req.endpoint, "endpoint");
      const cur = store.require(req.endpoint);
      if (!req.plan) throw new ValidationError("plan", "is required");
      validatePlan(req.plan, cur.spec, "plan");
      if (cur.activeRolloutId) throw new PreconditionError(`endpoint ${req.endpoint} has an active rollout ${cur.activeRolloutId}; promote or roll it back first`);
      await resolvePlan(d, req.plan, cur.spec, "plan");
      const plan = req.plan;
      const out = store.tx(() => {
        const now = store.require(req.endpoint);
        if (now.activeRolloutId) throw new PreconditionError(`endpoint ${req.endpoint} has an active rollout ${now.activeRolloutId}; promote or roll it back first`);
        return store.setPlanInTx({ endpoint: req.endpoint, plan, cause: ServingPlanChangeCause.SET, principal: principalOf(ctx), reason: reasonOf(req.reason), expectedRevision: Number(req.expectedRevision), auditAction: "plan.set" });
      });
      refreshLive(d, req.endpoint);
      return { plan: out.record.plan, revision: BigInt(out.record.planRevision), updateTime: timestampFromMs(out.record.planUpdateTime), changed: out.changed };
    },

    getServingPlan(req) {
      validateEndpointName(req.endpoint, "endpoint");
      const r = store.require(req.endpoint);
      return { plan: r.plan, revision: BigInt(r.planRevision), updateTime: timestampFromMs(r.planUpdateTime), activeRolloutId: r.activeRolloutId, traffic: traffic(d, r.plan, r.spec.model) };
    },

    switchBlueGreen(req, ctx) {
      validateEndpointName(req.endpoint, "endpoint");
      const out = store.tx(() => {
        const cur = store.require(req.endpoint);
        const p = cur.plan.plan;
        if (p.case !== "blueGreen") throw new PreconditionError(`endpoint ${req.endpoint} serves a ${p.case ?? "default"} plan, not blue_green`);
        const previous = p.value.active;
        const target = req.target || (previous === BlueGreenColor.BLUE ? BlueGreenColor.GREEN : BlueGreenColor.BLUE);
        const plan = create(ServingPlanSchema, { plan: { case: "blueGreen", value: { ...p.value, active: target } } });
        const r = store.setPlanInTx({ endpoint: req.endpoint, plan, cause: ServingPlanChangeCause.BLUE_GREEN_SWITCH, principal: principalOf(ctx), reason: reasonOf(req.reason), expectedRevision: Number(req.expectedRevision), auditAction: "plan.switch_blue_green" });
        return { r, previous, target };
      });
      refreshLive(d, req.endpoint);
      return { plan: out.r.record.plan, revision: BigInt(out.r.record.planRevision), active: out.target, previous: out.previous, changed: out.r.changed };
    },

    async startRollout(req, ctx) {
      validateEndpointName(req.endpoint, "endpoint");
      const r = await controller.startRollout({ endpoint: req.endpoint, modelRef: req.modelRef, spec: req.spec, reason: reasonOf(req.reason), principal: principalOf(ctx) });
      return { rollout: r };
    },
    getRolloutStatus(req) {
      if (!req.endpoint && !req.rolloutId) throw new ValidationError("endpoint", "is required (or rollout_id)");
      return { rollout: controller.status(req.endpoint, req.rolloutId) };
    },
    pauseRollout(req, ctx) {
      validateEndpointName(req.endpoint, "endpoint");
      return { rollout: controller.pause(req.endpoint, req.rolloutId, reasonOf(req.reason), principalOf(ctx)) };
    },
    resumeRollout(req, ctx) {
      validateEndpointName(req.endpoint, "endpoint");
      return { rollout: controller.resume(req.endpoint, req.rolloutId, reasonOf(req.reason), principalOf(ctx)) };
    },
    async promoteRollout(req, ctx) {
      validateEndpointName(req.endpoint, "endpoint");
      return { rollout: await controller.promote(req.endpoint, req.rolloutId, reasonOf(req.reason), principalOf(ctx)) };
    },
    rollbackRollout(req, ctx) {
      validateEndpointName(req.endpoint, "endpoint");
      return { rollout: controller.rollback(req.endpoint, req.rolloutId, reasonOf(req.reason), principalOf(ctx)) };
    },
    listRollouts(req) {
      // A filter names each state at most once; a huge repeated field must not reach SQL.
      const states = [...new Set(req.states)];
      states.forEach((s, i) => {
        if (!(s in RolloutState) || s === RolloutState.UNSPECIFIED) throw new ValidationError(`states[${i}]`, `unknown rollout state ${s}`);
      });
      return store.listRollouts({ endpoint: req.endpoint, states, pageSize: req.pageSize, pageToken: req.pageToken });
    },

    getShadowStats(req) {
      validateEndpointName(req.endpoint, "endpoint");
      const r = store.require(req.endpoint);
      const prodRef = productionRef(r.plan, r.spec.model);
      const prod = d.refs.peek(prodRef);
      const now = Date.now();
      // Unset window: since the current plan took effect (the summary caps it at 24 h).
      const since = req.window ? now - durationMs(req.window) : r.planUpdateTime;
      const stats = d.shadow.stats.get(req.endpoint) ?? new Map();
      const shadows = [...stats.entries()]
        .filter(([ref]) => !req.shadowModelRef || effectiveRef(req.shadowModelRef, r.spec.model) === ref)
        .map(([ref, a]) => ({ ref, a, s: a.summary(since) }))
        .filter((x) => x.s.mirrored > 0)
        .map(({ ref, a, s }) =>
          create(ShadowStatsSchema, {
            modelRef: ref,
            model: a.model,
            version: a.version,
            mirroredRequests: BigInt(s.mirrored),
            comparedRequests: BigInt(s.compared),
            shadowErrors: BigInt(s.errors),
            droppedRequests: BigInt(s.dropped),
            agreementRate: s.agreementRate,
            meanScoreDiff: s.meanDiff,
            meanAbsScoreDiff: s.meanAbsDiff,
            maxAbsScoreDiff: s.maxAbsDiff,
            scorePsi: s.psi,
            p99LatencyMs: s.p99LatencyMs,
          }),
        );
      return { endpoint: req.endpoint, productionModelRef: prodRef, productionVersion: prod?.version ?? 0n, shadows, windowStart: timestampFromMs(Math.max(since, now - 24 * 3600 * 1000)), windowEnd: timestampFromMs(now) };
    },

    listAuditRecords(req) {
      const page = store.audit.list({ resourcePrefix: req.resourcePrefix, action: req.action, startTime: req.startTime, endTime: req.endTime, newestFirst: true, pageSize: req.pageSize, pageToken: req.pageToken });
      return { records: page.records, nextPageToken: page.nextPageToken };
    },
  };
}

