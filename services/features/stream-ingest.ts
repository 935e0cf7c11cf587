// Streaming ingest: FeatureRowsIngested messages from NATS JetStream, one subject per view
// (`<prefix>.<view>`), consumed with a durable consumer and written by FeatureWriter.write,
// the code path of WriteFeatures, so the guarantees are the same: every row checked before
// anything is stored, offline append and newest-wins online merge (a late, older event
// never overwrites a newer online value). The event id is the write's idempotency key, so
// a message redelivered after a crash is not written twice. The consumer acks only after
// the write committed; a message that fails validation is dead-lettered
// (FeatureRowsRejected, through the outbox) and acked, never redelivered forever; a
// failure that may pass (a store unavailable) is not acked, so JetStream redelivers it.

import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import type Database from "better-sqlite3";
import { FeatureRowsIngestedSchema, FeatureRowsRejectedSchema, type FeatureRowsIngested } from "../../gen/mlmesh/events/v1/features_events_pb.js";
import { DomainError, UnavailableError, ValidationError } from "../../lib/errors.js";
import type { DeliveredEvent, EventBus, Subscription } from "../../lib/events.js";
import type { Logger } from "../../lib/logger.js";
import type { Outbox } from "../../lib/outbox.js";
import { STREAMS } from "../../lib/streams.js";
import type { FeatureWriter } from "./ingest.js";
import { entityKeyFromProto, scalarFromValue, timestampToMs } from "./mapping.js";
import type { FeatureMetrics } from "./metrics.js";
import { validateName } from "./names.js";
import type { WriteGate } from "./write-gate.js";

export class StreamIngestor {
  constructor(
    private readonly sqlite: Database.Database,
    private readonly writer: FeatureWriter,
    private readonly outbox: Outbox,
    private readonly metrics: FeatureMetrics,
    private readonly logger: Logger,
    /** Subjects are `<prefix>.<view>`. */
    private readonly prefix: string,
    private readonly clock: () => number,
    private readonly gate: WriteGate,
  ) {}

  /** Start the durable consumer; a brand-new one starts at new messages. */
  subscribe(bus: EventBus, durable: string): Promise<Subscription> {
    return bus.subscribe({
      stream: STREAMS.features.name,
      durable,
      filterSubject: `${this.prefix}.*`,
      schema: FeatureRowsIngestedSchema,
      deliverNewOnly: true,
      handler: (e) => this.handle(e),
    });
  }

  /** Resolves when the message may be acked (written, duplicate or dead-lettered). */
  async handle(e: DeliveredEvent<FeatureRowsIngested>): Promise<void> {
    const m = e.message;
    const eventId = m.meta?.eventId || e.msgId || "";
    const subjectView = e.subject.slice(this.prefix.length + 1);
    try {
      validateName(subjectView, "subject");
      if (m.view !== subjectView) throw new ValidationError("view", `must equal the subject's last token ${JSON.stringify(subjectView)}, got ${JSON.stringify(m.view)}`);
      const now = this.clock();
      // Ids longer than the idempotency column allows are hashed, never truncated.
      const requestId = !eventId ? "" : eventId.length <= 100 ? `stream:${eventId}` : `stream:sha256:${createHash("sha256").update(eventId).digest("hex")}`;
      if (this.writer.seenResult(requestId, now)) {
        this.metrics.streamMessages.inc({ outcome: "duplicate" });
        return;
      }
      await this.writer.write({
        view: m.view,
        featureNames: m.featureNames,
        rows: m.rows.map((r, i) => ({
          entityKey: entityKeyFromProto(r.entityKey),
          eventTime: timestampToMs(r.eventTime, `rows[${i}].event_time`),
          values: r.values.map(scalarFromValue),
        })),
        offlineOnly: m.offlineOnly,
        requestId,
        principal: m.meta?.principal ?? "",
        source: "stream",
      });
      this.metrics.streamMessages.inc({ outcome: "written" });
      const published = m.meta?.occurredAt ? Number(m.meta.occurredAt.seconds) * 1000 + Math.floor(m.meta.occurredAt.nanos / 1e6) : NaN;
      if (Number.isFinite(published)) this.metrics.streamLag.observe(Math.max(0, (this.clock() - published) / 1000));
    } catch (err) {
      // Unavailable or an unexpected fault may pass: not acked, redelivered with backoff.
      if (!(err instanceof DomainError) || err instanceof UnavailableError) throw err;
      await this.gate.run(() => this.deadLetter(e, eventId, subjectView, err));
    }
  }

  private deadLetter(e: DeliveredEvent<FeatureRowsIngested>, eventId: string, subjectView: string, err: DomainError): void {
    const field = err instanceof ValidationError ? err.field : "";
    const token = /^[a-z][a-z0-9_]{0,62}$/.test(subjectView) ? subjectView : "_";
    this.sqlite.transaction(() =>
      this.outbox.record(
        `mlmesh.features.ingest_rejected.${token}`,
        FeatureRowsRejectedSchema,
        create(FeatureRowsRejectedSchema, {
          subject: e.subject,
          rejectedEventId: eventId,
          field,
          error: err.message,
          payload: toBinary(FeatureRowsIngestedSchema, e.message),
        }),
      ),
    )();
    this.outbox.flush();
    this.metrics.streamMessages.inc({ outcome: "rejected" });
    this.logger.warn({ subject: e.subject, event_id: eventId, field, error: err.message }, "features: streamed rows rejected and dead-lettered");
  }
}
