// Builds the experiment service's real dependencies (SQLite definitions and sufficient
// statistics, outbox relay, the durable JetStream consumers of ExposureLogged and
// OutcomeLogged) and starts it.

import { createHash } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ExposureLoggedSchema, OutcomeLoggedSchema } from "../../gen/mlmesh/events/v1/experiments_events_pb.js";
import { ExperimentStatus } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { openSqlite } from "../../lib/db.js";
import { DomainError } from "../../lib/errors.js";
import type { Subscription } from "../../lib/events.js";
import { createRpcMetrics } from "../../lib/metrics.js";
import { Outbox } from "../../lib/outbox.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { serviceRegistration } from "../../lib/server.js";
import { hostService } from "../../lib/service-host.js";
import { STREAMS } from "../../lib/streams.js";
import { GuardrailWatch } from "./guardrails.js";
import { Ingestor } from "./ingest.js";
import { ComparisonHistory } from "./history.js";
import * as schema from "./schema.js";
import { analyze, createExperimentService, observe } from "./service.js";
import { ExperimentStore } from "./store.js";
import { startCheckpointWorker, type CheckpointWorker } from "../../lib/wal-checkpoint.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");
/** How often running experiments are analysed (history snapshot, guardrail breaches) without anyone asking. */
const GUARDRAIL_INTERVAL_MS = 30_000;
/** Largest batch of exposures, outcomes, covariates or assignments per call. */
const MAX_BATCH = 100_000;

export const EXPOSURE_SUBJECT = "mlmesh.experiments.exposure_logged";
export const OUTCOME_SUBJECT = "mlmesh.experiments.outcome_logged";

export async function startExperiments(rt: Runtime): Promise<ServiceHandle> {
  const logger = rt.logger.child({ component: "experiments" });
  const clock = Date.now;
  await rt.bus.ensureStream(STREAMS.experiments);
  const handle = openSqlite({ dataDir: rt.config.dataDir, file: "experiments.db", schema, migrationsFolder: MIGRATIONS });
  const subscriptions: Subscription[] = [];
  let watch: NodeJS.Timeout | undefined;
  let checkpoints: CheckpointWorker | undefined;
  // Each data directory keeps its own statistics, so each gets its own durable consumers
  // (replicas with separate SQLite files must all see every event); a restart resumes.
  const instance = createHash("sha256").update(path.resolve(rt.config.dataDir)).digest("hex").slice(0, 12);
  try {
    checkpoints = await startCheckpointWorker(handle.sqlite, logger);
    const rpcMetrics = createRpcMetrics();
    const outbox = new Outbox(handle.sqlite, rt.bus, logger, "experiments");
    const store = new ExperimentStore(handle.sqlite, outbox, clock);
    const ingest = new Ingestor(handle.sqlite, store, MAX_BATCH, clock);
    const guardrails = new GuardrailWatch(handle.sqlite, outbox);
    const history = new ComparisonHistory(handle.sqlite);
    const impl = createExperimentService({ store, ingest, guardrails, history, maxBatch: MAX_BATCH, clock });
    outbox.start();
    watch = setInterval(() => {
      for (const e of store.all()) {
        if (e.status !== ExperimentStatus.RUNNING) continue;
        try {
          observe({ history, guardrails }, analyze({ ingest, history }, e, clock()), clock());
        } catch (err) {
          logger.error({ err, experiment: e.key }, "experiments: periodic analysis failed");
        }
      }
    }, GUARDRAIL_INTERVAL_MS);
    watch.unref();
    // A message that can never be processed (unknown experiment or arm, bad value) is
    // acknowledged and logged as rejected; anything else is redelivered.
    const rejectOnly = (kind: string, err: unknown, seq: number) => {
      if (!(err instanceof DomainError)) throw err;
      logger.warn({ err: err.message, seq }, `experiments: rejected ${kind} event`);
    };
    subscriptions.push(
      await rt.bus.subscribe({
        stream: STREAMS.experiments.name,
        durable: `experiments-exposures-${instance}`,
        filterSubject: EXPOSURE_SUBJECT,
        schema: ExposureLoggedSchema,
        handler: async (ev) => {
          try {
            ingest.logExposures(ev.message.exposures);
          } catch (err) {
            rejectOnly("ExposureLogged", err, ev.seq);
          }
        },
      }),
      await rt.bus.subscribe({
        stream: STREAMS.experiments.name,
        durable: `experiments-outcomes-${instance}`,
        filterSubject: OUTCOME_SUBJECT,
        schema: OutcomeLoggedSchema,
        handler: async (ev) => {
          try {
            ingest.logOutcomes(ev.message.outcomes);
          } catch (err) {
            rejectOnly("OutcomeLogged", err, ev.seq);
          }
        },
      }),
    );
    return await hostService(rt, {
      name: "experiments",
      logger,
      metrics: rpcMetrics,
      services: [serviceRegistration(ExperimentService, impl, "")],
      close: async () => {
        clearInterval(watch);
        for (const s of subscriptions) await s.stop();
        await outbox.stop();
        await checkpoints?.stop();
        handle.close();
      },
    });
  } catch (err) {
    clearInterval(watch);
    for (const s of subscriptions) await s.stop();
    await checkpoints?.stop();
    handle.close();
    throw err;
  }
}
