// Stream scoring (issue #10): a durable JetStream consumer per enabled endpoint reads
// StreamScoreRequest events from `mlmesh.scoring.in.<endpoint>`, scores each through
// the same Predict path as the RPC, and publishes a StreamScoreResult on
// `mlmesh.scoring.out.<endpoint>`. The input is acked only once JetStream has acked
// the result, and the result's msg id is derived from the input, so a router that dies
// between the two re-scores the redelivered input and JetStream stores the second result as
// a duplicate (within the stream's dedup window, 2 min by default): no result lost, none
// doubled. The consumer's durable name is per endpoint, not per replica: replicas share the
// work instead of each scoring every event.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { StreamScoreRequestSchema, StreamScoreResultSchema, type StreamScoreRequest, type StreamScoreResult } from "../../gen/mlmesh/events/v1/router_events_pb.js";
import { PredictRequestSchema } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import type { DeliveredEvent, EventBus, Subscription } from "../../lib/events.js";
import type { Logger } from "../../lib/logger.js";
import { LATENCY_BUCKETS_SECONDS } from "../../lib/metrics.js";
import { SCORING_STREAM } from "../../lib/streams.js";
import type { Server } from "./serve.js";

export const SCORE_IN = "mlmesh.scoring.in";
export const SCORE_OUT = "mlmesh.scoring.out";

export interface StreamScoringMetrics {
  readonly scored: Counter<"endpoint" | "outcome">;
  readonly failures: Counter<"endpoint" | "reason">;
  readonly lagSeconds: Gauge<"endpoint">;
  readonly pending: Gauge<"endpoint">;
  readonly duration: Histogram<"endpoint">;
  readonly duplicates: Counter<"endpoint">;
}

export function createStreamScoringMetrics(registry: Registry): StreamScoringMetrics {
  const registers = [registry];
  return {
    scored: new Counter({ name: "mlmesh_router_stream_scored_total", help: "Stream scoring inputs answered with a result (outcome ok, degraded, invalid).", labelNames: ["endpoint", "outcome"] as const, registers }),
    failures: new Counter({ name: "mlmesh_router_stream_failures_total", help: "Stream scoring attempts that failed and will be redelivered (reason: scoring, publish) or were answered as invalid.", labelNames: ["endpoint", "reason"] as const, registers }),
    lagSeconds: new Gauge({ name: "mlmesh_router_stream_lag_seconds", help: "Age of the input being scored: now minus when the stream stored it.", labelNames: ["endpoint"] as const, registers }),
    pending: new Gauge({ name: "mlmesh_router_stream_pending_messages", help: "Inputs stored but not yet delivered to the endpoint's scoring consumer.", labelNames: ["endpoint"] as const, registers }),
    duplicates: new Counter({ name: "mlmesh_router_stream_duplicate_results_total", help: "Results JetStream dropped as duplicates: inputs re-scored after a crash between result publish and input ack.", labelNames: ["endpoint"] as const, registers }),
    duration: new Histogram({ name: "mlmesh_router_stream_score_duration_seconds", help: "From delivery to the result acked by JetStream.", labelNames: ["endpoint"] as const, buckets: [...LATENCY_BUCKETS_SECONDS], registers }),
  };
}

/** The result's msg id: the same for every delivery of one input. */
export function resultMsgId(endpoint: string, inputMsgId: string | undefined, seq: number): string {
  return `score:${endpoint}:${inputMsgId ? inputMsgId : `s${seq}`}`;
}

/** Endpoint names are subject tokens: no dots, wildcards or spaces (spec.ts enforces it). */
function endpointOf(subject: string): string {
  return subject.slice(SCORE_IN.length + 1);
}

export interface StreamScoringOptions {
  readonly bus: EventBus;
  readonly server: Server;
  readonly logger: Logger;
  readonly metrics: StreamScoringMetrics;
  /** Endpoints to consume for; `*` consumes every endpoint's input subject with one consumer. */
  readonly endpoints: readonly string[];
  readonly ackWaitMs: number;
}

export class StreamScoring {
  private readonly subs: Subscription[] = [];
  constructor(private readonly o: StreamScoringOptions) {}

  async start(): Promise<void> {
    for (const ep of this.o.endpoints) {
      const all = ep === "*";
      this.subs.push(
        await this.o.bus.subscribe({
          stream: SCORING_STREAM.name,
          durable: all ? "router-score-all" : `router-score-${ep}`,
          filterSubject: `${SCORE_IN}.${all ? "*" : ep}`,
          schema: StreamScoreRequestSchema,
          ackWaitMs: this.o.ackWaitMs,
          // Inputs are scored one at a time; a few pulled ahead keep the pipe full without
          // letting queued ones outlive their ack wait (which would re-score them).
          prefetch: 16,
          handler: (e) => this.handle(e),
        }),
      );
    }
    if (this.o.endpoints.length) this.o.logger.info({ endpoints: this.o.endpoints }, "router: stream scoring consumers started");
  }

  async stop(): Promise<void> {
    for (const s of this.subs.splice(0)) await s.stop();
  }

  private async handle(e: DeliveredEvent<StreamScoreRequest>): Promise<void> {
    const endpoint = endpointOf(e.subject);
    const m = this.o.metrics;
    const t0 = performance.now();
    m.lagSeconds.set({ endpoint }, Math.max(0, (Date.now() - e.storedAtMs) / 1000));
    m.pending.set({ endpoint }, e.pending);
    const req = e.message;
    const out = create(StreamScoreResultSchema, {
      meta: { eventId: resultMsgId(endpoint, e.msgId, e.seq), occurredAt: timestampFromMs(Date.now()), producer: "router" },
      endpoint,
      requestId: req.requestId,
      inputMsgId: e.msgId ?? "",
      inputSequence: BigInt(e.seq),
      inputTime: timestampFromMs(e.storedAtMs),
    });
    let outcome: string;
    try {
      const res = await this.o.server.predict(create(PredictRequestSchema, { endpoint, entityKey: req.entityKey, context: req.context, unitId: req.unitId, requestId: req.requestId }));
      fill(out, res);
      outcome = res.degraded ? "degraded" : "ok";
    } catch (err) {
      if (!(err instanceof ValidationError)) {
        // Unavailable, deadline, an endpoint not (yet) here: redelivered later, nothing published.
        m.failures.inc({ endpoint, reason: "scoring" });
        throw err;
      }
      // The input can never score: answer with the reason rather than retrying forever.
      m.failures.inc({ endpoint, reason: "invalid" });
      out.error = err.message;
      outcome = "invalid";
    }
    try {
      const ack = await this.o.bus.publish(`${SCORE_OUT}.${endpoint}`, StreamScoreResultSchema, out, { msgId: out.meta!.eventId });
      if (ack.duplicate) m.duplicates.inc({ endpoint });
    } catch (err) {
      m.failures.inc({ endpoint, reason: "publish" });
      throw err;
    }
    m.scored.inc({ endpoint, outcome });
    m.duration.observe({ endpoint }, (performance.now() - t0) / 1000);
  }
}

function fill(out: StreamScoreResult, res: Awaited<ReturnType<Server["predict"]>>): void {
  out.score = res.score;
  out.rawScore = res.rawScore;
  out.decision = res.decision;
  out.model = res.model;
  out.version = res.version;
  out.modelRef = res.modelRef;
  out.servedBy = res.servedBy;
  out.arm = res.arm;
  out.degraded = res.degraded;
}
