// Transactional outbox: a service writes its events into the same SQLite transaction as the
// state they describe, and a relay publishes them afterwards in commit order, retrying until
// the bus acknowledges. So an event is never published for a change that rolled back, and
// never lost for one that committed, even across a crash between the two.

import { create, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { context } from "@opentelemetry/api";
import type Database from "better-sqlite3";
import { integer, blob, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { EventMetaSchema, type EventMeta } from "../gen/mlmesh/events/v1/envelope_pb.js";
import type { EventBus } from "./events.js";
import type { Logger } from "./logger.js";
import { injectTraceContext } from "./telemetry.js";

/** The outbox table; each service's schema.ts re-exports it so its migrations create it. */
export const outboxTable = sqliteTable("outbox", {
  seq: integer("seq").primaryKey({ autoIncrement: true }),
  subject: text("subject").notNull(),
  msgId: text("msg_id").notNull(),
  payload: blob("payload", { mode: "buffer" }).notNull(),
  traceparent: text("traceparent"),
  tracestate: text("tracestate"),
  createdAt: integer("created_at").notNull(),
});

/** An event message: every mlmesh event has `meta` as field 1. */
type EventShape<D extends DescMessage> = MessageShape<D> & { meta?: EventMeta };

interface Row {
  seq: number;
  subject: string;
  msg_id: string;
  payload: Buffer;
  traceparent: string | null;
  tracestate: string | null;
}

export class Outbox {
  private readonly insert: Database.Statement;
  private readonly setPayload: Database.Statement;
  private readonly selectBatch: Database.Statement;
  private readonly remove: Database.Statement;
  private running = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly sqlite: Database.Database,
    private readonly bus: EventBus,
    private readonly logger: Logger,
    private readonly producer: string,
  ) {
    this.insert = sqlite.prepare(
      "INSERT INTO outbox (subject, msg_id, payload, traceparent, tracestate, created_at) VALUES (?, ?, x'', ?, ?, ?)",
    );
    this.setPayload = sqlite.prepare("UPDATE outbox SET payload = ? WHERE seq = ?");
    this.selectBatch = sqlite.prepare("SELECT seq, subject, msg_id, payload, traceparent, tracestate FROM outbox ORDER BY seq LIMIT 100");
    this.remove = sqlite.prepare("DELETE FROM outbox WHERE seq = ?");
  }

  /**
   * Record an event. Call inside the transaction that makes the change; its `meta` is
   * filled in here (id, time, producer, sequence). Call `flush()` after the commit.
   */
  record<D extends DescMessage>(subject: string, schema: D, event: EventShape<D>, principal = ""): EventMeta {
    if (!this.sqlite.inTransaction) throw new Error("Outbox.record must run inside the transaction of the change");
    const carrier = new Map<string, string>();
    injectTraceContext({ get: (k) => carrier.get(k), set: (k, v) => carrier.set(k, v) }, context.active());
    const msgId = crypto.randomUUID();
    const now = Date.now();
    const info = this.insert.run(subject, msgId, carrier.get("traceparent") ?? null, carrier.get("tracestate") ?? null, now);
    const seq = Number(info.lastInsertRowid);
    const meta = create(EventMetaSchema, {
      eventId: msgId,
      occurredAt: timestampFromMs(now),
      producer: this.producer,
      principal,
      sequence: BigInt(seq),
    });
    event.meta = meta;
    this.setPayload.run(Buffer.from(toBinary(schema, event)), seq);
    return meta;
  }

  /** Start relaying (also what is left from before a restart). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.relay();
  }

  /** Nudge the relay after a commit. */
  flush(): void {
    this.wake?.();
  }

  /** Events committed but not yet acknowledged by the bus. */
  pending(): number {
    return (this.sqlite.prepare("SELECT count(*) AS n FROM outbox").get() as { n: number }).n;
  }

  /**
   * Stop after the event in flight (waiting at most `timeoutMs` for its ack); whatever is
   * left stays in the table and goes out on the next start.
   */
  async stop(timeoutMs = 2000): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await Promise.race([this.loop, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  private async relay(): Promise<void> {
    while (!this.stopped) {
      const rows = this.selectBatch.all() as Row[];
      if (rows.length === 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          // A slow poll as well, in case a commit happened in another process.
          setTimeout(resolve, 1000).unref();
        });
        this.wake = undefined;
        continue;
      }
      for (const row of rows) {
        if (this.stopped) return;
        try {
          await this.bus.publishEncoded(row.subject, new Uint8Array(row.payload), {
            msgId: row.msg_id,
            trace: { traceparent: row.traceparent ?? undefined, tracestate: row.tracestate ?? undefined },
          });
          this.remove.run(row.seq);
        } catch (err) {
          // The bus retries internally until it is closing; getting here means shutdown or
          // a missing stream. Keep the row and try again later.
          this.logger.warn({ err, subject: row.subject, seq: row.seq }, "outbox: event not published yet");
          await new Promise((r) => setTimeout(r, 500));
          break;
        }
      }
    }
  }
}
