// Rollout windows across replicas. Only the replica where a rollout was started runs its
// controller, yet every replica serves the canary plan (replicated over NATS). Replicas
// that do not control a rollout record its canary/production outcomes here and publish them
// every `flushMs` as RolloutObservations; the controlling replica merges the reports into
// its interval window, so the gates judge all traffic. A report published just before an
// interval ends may land in the next one: windows are aligned to within `flushMs`.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { RolloutObservationsSchema, type RoleObservations } from "../../gen/mlmesh/events/v1/router_events_pb.js";
import { ServedBy } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import type { EventBus, Subscription } from "../../lib/events.js";
import type { Logger } from "../../lib/logger.js";
import { STREAMS } from "../../lib/streams.js";
import type { RoleSample, RolloutController } from "./rollout.js";
import type { LiveEndpoint } from "./serve.js";
import { VersionWindow } from "./window.js";

export const OBSERVATIONS = "mlmesh.router.rollout_observations";
/** Samples per role and report; counts are always exact. */
const MAX_SAMPLES = 2000;

interface Pending {
  readonly rolloutId: string;
  readonly start: number;
  readonly canary: VersionWindow;
  readonly production: VersionWindow;
}

function sampleOf(w: VersionWindow): RoleObservations {
  const take = (xs: readonly number[]) => (xs.length <= MAX_SAMPLES ? [...xs] : Array.from({ length: MAX_SAMPLES }, () => xs[Math.floor(Math.random() * xs.length)]!));
  return { $typeName: "mlmesh.events.v1.RoleObservations", requests: BigInt(w.requests), errors: BigInt(w.errors), latenciesMs: take(w.latenciesMs), scores: take(w.scores) };
}

function roleSample(o: RoleObservations | undefined): RoleSample | undefined {
  return o ? { requests: Number(o.requests), errors: Number(o.errors), latenciesMs: o.latenciesMs, scores: o.scores } : undefined;
}

export class SharedWindows {
  private readonly pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  private sub: Subscription | undefined;
  private flushing = false;

  constructor(
    private readonly o: {
      readonly bus: EventBus;
      readonly controller: RolloutController;
      readonly endpoint: (name: string) => LiveEndpoint | undefined;
      readonly replica: string;
      readonly flushMs: number;
      readonly logger: Logger;
    },
  ) {}

  async start(): Promise<void> {
    this.sub = await this.o.bus.subscribe({
      stream: STREAMS.router.name,
      durable: `router-observations-${this.o.replica}`,
      filterSubject: `${OBSERVATIONS}.>`,
      schema: RolloutObservationsSchema,
      // Reports are only useful to the interval running now.
      deliverFrom: "new",
      handler: async (e) => {
        const m = e.message;
        if (m.replica === this.o.replica || !this.o.controller.owns(m.endpoint, m.rolloutId)) return;
        this.o.controller.mergeObservations(m.rolloutId, roleSample(m.canary), roleSample(m.production));
      },
    });
    this.timer = setInterval(() => void this.flush(), this.o.flushMs);
    this.timer.unref();
  }

  /** Hot path: one request's outcome, kept when another replica controls the endpoint's rollout. */
  observe(endpoint: string, role: ServedBy, latencyMs: number, error: boolean, score: number | undefined): void {
    if (role !== ServedBy.CANARY && role !== ServedBy.PRODUCTION) return;
    const rolloutId = this.o.endpoint(endpoint)?.activeRolloutId;
    if (!rolloutId || this.o.controller.owns(endpoint, rolloutId)) return;
    let p = this.pending.get(endpoint);
    if (!p || p.rolloutId !== rolloutId) {
      p = { rolloutId, start: Date.now(), canary: new VersionWindow(), production: new VersionWindow() };
      this.pending.set(endpoint, p);
    }
    (role === ServedBy.CANARY ? p.canary : p.production).record(latencyMs, error, score);
  }

  /** Publish what was observed since the last report (fire and forget: a lost report only thins the window). */
  async flush(): Promise<void> {
    if (this.flushing || this.pending.size === 0) return;
    this.flushing = true;
    const batch = [...this.pending.entries()];
    this.pending.clear();
    const now = Date.now();
    try {
      await Promise.all(
        batch.map(([endpoint, p]) =>
          this.o.bus
            .publish(
              `${OBSERVATIONS}.${endpoint}`,
              RolloutObservationsSchema,
              create(RolloutObservationsSchema, {
                meta: { eventId: crypto.randomUUID(), occurredAt: timestampFromMs(now), producer: "router" },
                endpoint,
                rolloutId: p.rolloutId,
                replica: this.o.replica,
                canary: sampleOf(p.canary),
                production: sampleOf(p.production),
                windowStart: timestampFromMs(p.start),
                windowEnd: timestampFromMs(now),
              }),
            )
            .catch((err: unknown) => this.o.logger.warn({ err: (err as Error).message, endpoint }, "router: rollout observations not published")),
        ),
      );
    } finally {
      this.flushing = false;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    await this.sub?.stop();
  }
}
