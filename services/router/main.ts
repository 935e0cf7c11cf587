// Builds the router's real dependencies (SQLite store and outbox relay, mesh clients, the
// resolved-ref cache, experiment assigners, shadow mirror, rollout controller) and its NATS
// consumers: registry alias moves (re-resolve refs), drift alerts (a rollout gate),
// experiment definition updates (in-process assignment) and serving plan changes made by
// other router replicas. Then it serves RouterService.

import { createHash } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ExperimentUpdatedSchema } from "../../gen/mlmesh/events/v1/experiments_events_pb.js";
import { DriftAlertSchema } from "../../gen/mlmesh/events/v1/inference_events_pb.js";
import { AliasMovedSchema } from "../../gen/mlmesh/events/v1/registry_events_pb.js";
import { EndpointAppliedSchema, EndpointDeletedSchema, ServingPlanChangedSchema } from "../../gen/mlmesh/events/v1/router_events_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { openSqlite } from "../../lib/db.js";
import type { Subscription } from "../../lib/events.js";
import { createMeshClients } from "../../lib/mesh-clients.js";
import { Outbox } from "../../lib/outbox.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { serviceRegistration } from "../../lib/server.js";
import { hostService } from "../../lib/service-host.js";
import { SCORING_STREAM, STREAMS } from "../../lib/streams.js";
import { ExperimentCache, ExposureBuffer } from "./experiments.js";
import { createRouterMetrics } from "./metrics.js";
import { RefCache } from "./refs.js";
import { RolloutController } from "./rollout.js";
import * as schema from "./schema.js";
import { Server, type LiveEndpoint } from "./serve.js";
import { createRouterService, refreshLive } from "./service.js";
import { ShadowMirror } from "./shadow.js";
import { SharedWindows } from "./shared-windows.js";
import { StreamScoring, createStreamScoringMetrics } from "./stream-scoring.js";
import { planRefs } from "./spec.js";
import { RouterStore } from "./store.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");

export async function startRouter(rt: Runtime): Promise<ServiceHandle> {
  const logger = rt.logger.child({ component: "router" });
  const cfg = rt.config.router;
  const clock = Date.now;
  for (const s of [STREAMS.router, STREAMS.registry, STREAMS.inference, STREAMS.experiments, SCORING_STREAM]) await rt.bus.ensureStream(s);
  const handle = openSqlite({ dataDir: rt.config.dataDir, file: "router.db", schema, migrationsFolder: MIGRATIONS });
  const subscriptions: Subscription[] = [];
  // Each data directory is one replica: its own durable consumers, resumed after a restart.
  const instance = createHash("sha256").update(path.resolve(rt.config.dataDir)).digest("hex").slice(0, 12);
  let refs: RefCache | undefined;
  let controller: RolloutController | undefined;
  let exposures: ExposureBuffer | undefined;
  let scoring: StreamScoring | undefined;
  let shared: SharedWindows | undefined;
  try {
    const metrics = createRouterMetrics();
    const clients = createMeshClients(rt.config);
    const outbox = new Outbox(handle.sqlite, rt.bus, logger, "router");
    const store = new RouterStore(handle.sqlite, outbox, clock);
    const live = new Map<string, LiveEndpoint>();
    refs = new RefCache(clients.registry, clients.inference, logger, cfg.refRefreshMs);
    const experiments = new ExperimentCache(clients.experiments, logger);
    exposures = new ExposureBuffer(rt.bus, logger, cfg.exposureFlushMs, (n) => metrics.exposuresDropped.inc(n));
    const shadow = new ShadowMirror(clients.inference, refs, metrics, logger, cfg.maxShadowInFlight, cfg.shadowTimeoutMs);
    controller = new RolloutController({ store, registry: clients.registry, inference: clients.inference, refs, metrics, logger, config: cfg, clock, experiments: clients.experiments, experimentCache: experiments, exposures, planChanged: (e) => refreshLive({ store, live }, e) });
    const ctl = controller;
    // Traffic of rollouts another replica controls is reported to it every controller tick.
    const sharedWindows = new SharedWindows({ bus: rt.bus, controller, endpoint: (name) => live.get(name), replica: instance, flushMs: cfg.rolloutTickMs, logger });
    shared = sharedWindows;
    const server = new Server({
      features: clients.features,
      inference: clients.inference,
      refs,
      experiments,
      exposures,
      shadow,
      metrics,
      config: cfg,
      logger,
      endpoint: (name) => live.get(name),
      observe: (e, role, version, latency, error, score, unit) => {
        ctl.observe(e, role, version, latency, error, score, unit);
        sharedWindows.observe(e, role, latency, error, score);
      },
    });
    const impl = createRouterService({ store, refs, experiments, features: clients.features, server, controller, shadow, live });

    // Warm the request path: endpoints in memory, their refs resolved, experiment definitions loaded.
    const cacheRefs = refs;
    const warmPlan = (name: string) => {
      const r = store.get(name);
      if (!r) return;
      for (const ref of planRefs(r.plan, r.spec.model)) {
        void cacheRefs.resolve(ref).then((x) => cacheRefs.ensureLoaded(x)).catch((err: unknown) => logger.warn({ err: (err as Error).message, ref }, "router: cannot resolve a plan ref yet"));
      }
      if (r.plan.plan.case === "experiment") void experiments.load(r.plan.plan.value.experimentKey).catch(() => undefined);
    };
    for (const r of store.all()) {
      refreshLive({ store, live }, r.spec.name);
      warmPlan(r.spec.name);
    }
    outbox.start();
    refs.start();
    exposures.start();
    controller.start();

    const cache = refs;
    subscriptions.push(
      await rt.bus.subscribe({
        stream: STREAMS.registry.name,
        durable: `router-aliases-${instance}`,
        filterSubject: "mlmesh.registry.alias_moved.>",
        schema: AliasMovedSchema,
        deliverNewOnly: true,
        handler: async (ev) => {
          await cache.aliasMoved(ev.message.modelName);
        },
      }),
      await rt.bus.subscribe({
        stream: STREAMS.inference.name,
        durable: `router-drift-${instance}`,
        filterSubject: "mlmesh.inference.drift_alert.>",
        schema: DriftAlertSchema,
        deliverNewOnly: true,
        handler: async (ev) => ctl.driftAlert(ev.message),
      }),
      await rt.bus.subscribe({
        stream: STREAMS.experiments.name,
        durable: `router-experiments-${instance}`,
        filterSubject: "mlmesh.experiments.experiment_updated.>",
        schema: ExperimentUpdatedSchema,
        deliverNewOnly: true,
        handler: async (ev) => {
          const e = ev.message.experiment;
          if (e && experiments.has(e.key)) experiments.update(e);
        },
      }),
      await rt.bus.subscribe({
        stream: STREAMS.router.name,
        durable: `router-endpoints-${instance}`,
        filterSubject: "mlmesh.router.endpoint_applied.>",
        // Newest wins (by generation/revision), so each endpoint's last event is all a new replica needs.
        deliverFrom: "last_per_subject",
        schema: EndpointAppliedSchema,
        handler: async (ev) => {
          const e = ev.message.endpoint;
          if (e && store.applyReplicatedEndpoint(e)) {
            refreshLive({ store, live }, e.name);
            warmPlan(e.name);
            logger.info({ endpoint: e.name }, "router: applied an endpoint from another replica");
          }
        },
      }),
      await rt.bus.subscribe({
        stream: STREAMS.router.name,
        durable: `router-deletes-${instance}`,
        filterSubject: "mlmesh.router.endpoint_deleted.>",
        // Newest wins (by generation/revision), so each endpoint's last event is all a new replica needs.
        deliverFrom: "last_per_subject",
        schema: EndpointDeletedSchema,
        handler: async (ev) => {
          if (store.applyReplicatedDelete(ev.message.endpoint, Number(ev.message.generation))) refreshLive({ store, live }, ev.message.endpoint);
        },
      }),
      await rt.bus.subscribe({
        stream: STREAMS.router.name,
        durable: `router-plans-${instance}`,
        filterSubject: "mlmesh.router.serving_plan_changed.>",
        schema: ServingPlanChangedSchema,
        deliverFrom: "last_per_subject",
        handler: async (ev) => {
          const m = ev.message;
          // A new replica may see an endpoint's plan before the endpoint itself (two
          // consumers): retry a few times rather than drop the newest plan.
          if (!store.get(m.endpoint) && ev.redeliveries < 5) throw new Error(`endpoint ${m.endpoint} not replicated yet`);
          // Our own changes carry a revision we already hold; another replica's newer one is applied.
          if (m.plan && store.applyReplicatedPlan(m.endpoint, m.plan, Number(m.revision), m.rolloutId)) {
            refreshLive({ store, live }, m.endpoint);
            warmPlan(m.endpoint);
            logger.info({ endpoint: m.endpoint, revision: Number(m.revision) }, "router: applied a serving plan from another replica");
          }
        },
      }),
    );
    // Stream scoring starts last: every endpoint it scores is in memory by now.
    scoring = new StreamScoring({ bus: rt.bus, server, logger, metrics: createStreamScoringMetrics(metrics.rpc.registry), endpoints: cfg.streamEndpoints, ackWaitMs: cfg.streamAckWaitMs });
    await scoring.start();
    await sharedWindows.start();
    const streams = scoring;
    const exp = exposures;
    return await hostService(rt, {
      name: "router",
      logger,
      metrics: metrics.rpc,
      services: [serviceRegistration(RouterService, impl, "")],
      close: async () => {
        // Stop taking inputs first; one being scored finishes (and is acked) before the stop resolves.
        await streams.stop();
        await sharedWindows.stop();
        ctl.stop();
        cache.stop();
        for (const s of subscriptions) await s.stop();
        await exp.stop();
        await outbox.stop();
        handle.close();
      },
    });
  } catch (err) {
    await scoring?.stop().catch(() => undefined);
    await shared?.stop().catch(() => undefined);
    controller?.stop();
    refs?.stop();
    await exposures?.stop().catch(() => undefined);
    for (const s of subscriptions) await s.stop();
    handle.close();
    throw err;
  }
}
