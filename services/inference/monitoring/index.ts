// Live monitoring inside the inference service (issue #8): drift windows fed by the
// prediction log on JetStream (a per-replica consumer delivering new records, so every
// replica sees every replica's traffic), drift policies and alerts, concept drift on
// delayed labels. main.ts spreads `handlers` into the InferenceService implementation.

import { createHash } from "node:crypto";
import path from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Registry } from "prom-client";
import { create } from "@bufbuild/protobuf";
import { decodeMonitoredBatch } from "./log-decoder.js";
import { DriftPolicyChangedSchema, OutcomesRecordedSchema, PredictionLogBatchSchema } from "../../../gen/mlmesh/events/v1/inference_events_pb.js";
import type { InferenceService } from "../../../gen/mlmesh/inference/v1/inference_service_pb.js";
import type { Subscription } from "../../../lib/events.js";
import type { Logger } from "../../../lib/logger.js";
import { createMeshClients } from "../../../lib/mesh-clients.js";
import type { Runtime } from "../../../lib/runtime.js";
import { STREAMS } from "../../../lib/streams.js";
import { DomainError, PreconditionError, UnavailableError, ValidationError } from "../../../lib/errors.js";
import { parseRef, type ModelLoader } from "../loader.js";
import { createMonitoringMetrics } from "./metrics.js";
import { Monitor } from "./monitor.js";
import { MonitoringStore } from "./policy.js";

export { driftAlertSubject, qualityAlertSubject } from "./monitor.js";

/** Where RecordOutcomes shares the labels it accepted with the other replicas. */
export const OUTCOMES_SUBJECT = "mlmesh.inference.outcomes.recorded";
export const driftPolicySubject = (model: string) => `mlmesh.inference.drift_policy_changed.${model}`;
/** How long RecordOutcomes and SetDriftPolicy wait for JetStream to store the shared labels. */
const SHARE_TIMEOUT_MS = 5000;

export interface MonitoringDeps {
  readonly rt: Runtime;
  readonly logger: Logger;
  readonly metricsRegistry: Registry;
  readonly loader: ModelLoader;
}

export interface Monitoring {
  /** The InferenceService methods monitoring answers (GetDrift, drift policies, outcomes, quality). */
  readonly handlers: Partial<ServiceImpl<typeof InferenceService>>;
  close(): Promise<void>;
}

/** Most outcomes one RecordOutcomes call may carry. */
const MAX_OUTCOMES_PER_CALL = 10_000;
const MODEL_NAME = /^[a-z0-9][a-z0-9_.-]{0,127}$/i;

function checkModelName(name: string, field: string): void {
  if (!name) throw new ValidationError(field, "is required");
  if (!MODEL_NAME.test(name)) throw new ValidationError(field, `${JSON.stringify(name)} is not a model name`);
}

export async function startMonitoring(deps: MonitoringDeps): Promise<Monitoring> {
  const { rt } = deps;
  const config = rt.config.monitoring;
  const logger = deps.logger.child({ component: "monitoring" });
  const clients = createMeshClients(rt.config);
  const store = new MonitoringStore(rt.config.dataDir);
  const monitor = new Monitor({ config, registry: clients.registry, bus: rt.bus, store, metrics: createMonitoringMetrics(deps.metricsRegistry), logger });

  /** The version a ref names: a pinned `name@N` directly, else the registry resolves it. */
  const resolve = async (modelRef: string): Promise<{ name: string; version: number }> => {
    if (!modelRef) throw new ValidationError("model_ref", "is required");
    const { name, selector } = parseRef(modelRef);
    if (/^\d+$/.test(selector)) return { name, version: Number(selector) };
    const loaded = deps.loader.peek(name);
    const res = await clients.registry.getModelVersion({ modelRef }, { timeoutMs: 5000 }).catch((err) => {
      // Registry down: a version loaded here under that name is the best answer we have.
      if (loaded) return undefined;
      throw err;
    });
    return res?.modelVersion ? { name, version: Number(res.modelVersion.version) } : { name, version: loaded!.version };
  };

  // Same replica identity as main.ts's consumers: a restart resumes where it stopped.
  const replica = createHash("sha256").update(`${path.resolve(rt.config.dataDir)}|${rt.config.ports.inference.grpc}`).digest("hex").slice(0, 12);
  let subscription: Subscription | undefined;
  let outcomesSubscription: Subscription | undefined;
  let policySubscription: Subscription | undefined;
  let timer: NodeJS.Timeout | undefined;
  if (config.enabled) {
    try {
      await rt.bus.ensureStream(STREAMS.inference);
      subscription = await rt.bus.subscribe({
        stream: STREAMS.inference.name,
        durable: `inference_monitor_${replica}`,
        filterSubject: "mlmesh.inference.predictions.>",
        schema: PredictionLogBatchSchema,
        decode: decodeMonitoredBatch,
        deliverNewOnly: true,
        handler: (e) => monitor.onBatch(e.message),
      });
      // Policies set on other replicas. A new replica replays the stream's history (kept 7
      // days) so it starts with the policies set in that time; its own SQLite keeps them after.
      policySubscription = await rt.bus.subscribe({
        stream: STREAMS.inference.name,
        durable: `inference_policies_${replica}`,
        filterSubject: "mlmesh.inference.drift_policy_changed.>",
        schema: DriftPolicyChangedSchema,
        deliverNewOnly: false,
        handler: async (e) => {
          if (e.message.replica === replica || !e.message.policy) return;
          try {
            monitor.setPolicy(e.message.modelName, e.message.policy);
          } catch (err) {
            // Valid where it was set but not here (e.g. a smaller MLMESH_MONITORING_WINDOW_COUNT): keep ours, say so.
            if (!(err instanceof DomainError)) throw err;
            logger.error({ err, model: e.message.modelName }, "monitoring: a drift policy set on another replica is not valid here; keeping this replica's");
          }
        },
      });
      // Labels accepted by other replicas (this replica's own were applied when accepted).
      outcomesSubscription = await rt.bus.subscribe({
        stream: STREAMS.inference.name,
        durable: `inference_outcomes_${replica}`,
        filterSubject: OUTCOMES_SUBJECT,
        schema: OutcomesRecordedSchema,
        deliverNewOnly: true,
        handler: async (e) => {
          if (e.message.replica === replica) return;
          monitor.recordOutcomes(e.message.outcomes.filter((o) => o.requestId !== "" && (o.label === 0 || o.label === 1)).map((o) => ({ requestId: o.requestId, label: o.label as 0 | 1 })));
        },
      });
    } catch (err) {
      // Half started (NATS refused a consumer): release what was taken before failing the start.
      await Promise.all([subscription?.stop(), policySubscription?.stop(), outcomesSubscription?.stop()].map((p) => p?.catch(() => undefined)));
      store.close();
      throw err;
    }
    timer = setInterval(() => {
      try {
        monitor.evaluate();
      } catch (err) {
        logger.error({ err }, "monitoring: evaluation failed");
      }
    }, config.evaluateIntervalMs);
    timer.unref();
  }

  /** Publishes what this replica applied for the others; UNAVAILABLE when NATS does not store it in time. */
  const share = async (subject: string, publish: () => Promise<unknown>, applied: string): Promise<void> => {
    let timeout: NodeJS.Timeout | undefined;
    const stored = await Promise.race([
      publish().then(() => true),
      new Promise<false>((resolve) => (timeout = setTimeout(() => resolve(false), SHARE_TIMEOUT_MS))),
    ]).finally(() => clearTimeout(timeout));
    if (!stored) throw new UnavailableError(`${applied} but NATS has not stored it for the other replicas yet (${subject}); retrying is safe`);
  };

  const handlers: Partial<ServiceImpl<typeof InferenceService>> = {
    async getDrift(req) {
      const { name, version } = await resolve(req.modelRef);
      const st = await monitor.versionForQuery(name, version);
      if (!st.windows) {
        throw new PreconditionError(`${name}@${version} has no reference distributions; set them with SetReferenceDistributions (or push --reference)`);
      }
      const r = monitor.driftReport(st);
      return {
        modelName: name,
        version: BigInt(version),
        windowStart: r.start ? timestampFromMs(r.start) : undefined,
        windowEnd: r.end ? timestampFromMs(r.end) : undefined,
        features: r.features,
        state: r.state,
      };
    },
    async getDriftPolicy(req) {
      checkModelName(req.modelName, "model_name");
      return { policy: monitor.policyOf(req.modelName).policy };
    },
    async setDriftPolicy(req) {
      checkModelName(req.modelName, "model_name");
      if (!req.policy) throw new ValidationError("policy", "is required");
      const policy = monitor.setPolicy(req.modelName, req.policy);
      if (config.enabled) {
        const event = create(DriftPolicyChangedSchema, {
          meta: { eventId: crypto.randomUUID(), occurredAt: timestampFromMs(Date.now()), producer: "inference" },
          replica,
          modelName: req.modelName,
          policy,
        });
        await share(driftPolicySubject(req.modelName), () => rt.bus.publish(driftPolicySubject(req.modelName), DriftPolicyChangedSchema, event, { msgId: event.meta!.eventId }), "the policy was applied on this replica");
      }
      return { policy };
    },
    async recordOutcomes(req) {
      if (req.outcomes.length === 0) throw new ValidationError("outcomes", "at least one outcome is required");
      if (req.outcomes.length > MAX_OUTCOMES_PER_CALL) throw new ValidationError("outcomes", `${req.outcomes.length} is more than the ${MAX_OUTCOMES_PER_CALL} allowed in one call`);
      // Validate all first: a bad outcome refuses the call and none is recorded.
      const valid = req.outcomes.map((o, i) => {
        if (!o.requestId) throw new ValidationError(`outcomes[${i}].request_id`, "is required");
        if (o.label !== 0 && o.label !== 1) throw new ValidationError(`outcomes[${i}].label`, `must be 0 or 1 (quality is computed for binary classifiers), got ${o.label}`);
        return { requestId: o.requestId, label: o.label as 0 | 1 };
      });
      const r = monitor.recordOutcomes(valid);
      if (config.enabled) {
        // Shared so every replica's quality windows see them. Applying them again is harmless
        // (a labelled prediction ignores a second label), so a retried call is safe.
        const event = create(OutcomesRecordedSchema, {
          meta: { eventId: crypto.randomUUID(), occurredAt: timestampFromMs(Date.now()), producer: "inference" },
          replica,
          outcomes: req.outcomes,
        });
        await share(OUTCOMES_SUBJECT, () => rt.bus.publish(OUTCOMES_SUBJECT, OutcomesRecordedSchema, event, { msgId: event.meta!.eventId }), "the outcomes were applied on this replica");
      }
      return { joined: BigInt(r.joined), pending: BigInt(r.pending) };
    },
    async getQuality(req) {
      const { name, version } = await resolve(req.modelRef);
      return { report: monitor.qualityReport(name, version) };
    },
  };

  return {
    handlers,
    close: async () => {
      clearInterval(timer);
      await outcomesSubscription?.stop();
      await policySubscription?.stop();
      await subscription?.stop();
      store.close();
    },
  };
}
