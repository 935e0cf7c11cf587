// Cross-service events: protobuf messages from mlmesh.events.v1 on NATS JetStream, or on an
// in-process bus with the same interface when `mlmesh up` finds no NATS. Publishing is
// at-least-once into JetStream with the event id as Nats-Msg-Id, so a retry inside the
// stream's dedup window is stored once; consumers are durable and ack after handling.

import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { context, ROOT_CONTEXT, SpanKind, trace, type Context, type SpanContext } from "@opentelemetry/api";
import {
  AckPolicy,
  connect,
  DeliverPolicy,
  headers as natsHeaders,
  nanos,
  StorageType,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type MsgHdrs,
  type NatsConnection,
} from "nats";
import { UnavailableError } from "./errors.js";
import type { Logger } from "./logger.js";
import { extractTraceContext, getTracer, injectTraceContext } from "./telemetry.js";

export interface StreamSpec {
  /** JetStream stream name, e.g. MLMESH_REGISTRY. */
  readonly name: string;
  /** Subjects it captures, e.g. ["mlmesh.registry.>"]. */
  readonly subjects: readonly string[];
  /** Dedup window for Nats-Msg-Id, ms (default 2 minutes). */
  readonly duplicateWindowMs?: number;
  /** Age after which messages are dropped, ms (default: kept). */
  readonly maxAgeMs?: number;
}

export interface PublishOptions {
  /** Idempotency key; defaults to a random UUID. Use EventMeta.event_id. */
  readonly msgId?: string;
}

/** W3C trace context as captured from a request, to publish an event under it later. */
export interface TraceHeaders {
  readonly traceparent?: string;
  readonly tracestate?: string;
  /**
   * Spans the event is about besides its parent: an event batching records of many requests
   * (the prediction log) links each request's span, so the consumer reaches all of them.
   */
  readonly links?: readonly SpanContext[];
}

export interface PublishAck {
  readonly stream: string;
  readonly seq: number;
  /** True when JetStream recognised the msg id and stored nothing new. */
  readonly duplicate: boolean;
}

export interface DeliveredEvent<T> {
  readonly subject: string;
  readonly message: T;
  /** Stream sequence: increasing in publish (commit) order. */
  readonly seq: number;
  readonly msgId: string | undefined;
  /** How many times this event was delivered before (0 on first delivery). */
  readonly redeliveries: number;
  /** When the stream stored it (epoch ms): now minus this is the consumer's lag. */
  readonly storedAtMs: number;
  /** Messages after this one still to be delivered to the consumer (its backlog). */
  readonly pending: number;
}

/**
 * Where a brand-new durable consumer starts: the stream's first message (`all`), only what
 * is published from now on (`new`), or the newest message of every subject its filter
 * matches and everything after (`last_per_subject`) — the current state of each key of a
 * stream whose subjects end in a key, without its whole history.
 */
export type DeliverFrom = "all" | "new" | "last_per_subject";

export interface SubscribeOptions<D extends DescMessage, T = MessageShape<D>> {
  readonly stream: string;
  /** Durable consumer name: a restarted consumer with the same name resumes after its last ack. */
  readonly durable: string;
  readonly filterSubject: string;
  readonly schema: D;
  /**
   * Reads a message instead of fromBinary(schema): a hot consumer's lean decoder that reads
   * only the fields it uses. Throws on malformed bytes, as fromBinary does.
   */
  readonly decode?: (bytes: Uint8Array) => T;
  /** Resolve to ack; throw to have the event redelivered later. */
  readonly handler: (event: DeliveredEvent<T>) => Promise<void>;
  /** Where a brand-new consumer starts (default: the first message of the stream). */
  readonly deliverNewOnly?: boolean;
  /** Where a brand-new consumer starts; overrides deliverNewOnly. */
  readonly deliverFrom?: DeliverFrom;
  /** How long a delivered, unacked message waits before redelivery (default 30 s; only at consumer creation). */
  readonly ackWaitMs?: number;
  /**
   * Messages pulled ahead of the handler (default 256). The ack wait runs from delivery, so
   * a slow handler wants a small prefetch: otherwise messages queued in this client time
   * out and are redelivered before their first delivery was even handled.
   */
  readonly prefetch?: number;
}

function deliverFrom(opts: Pick<SubscribeOptions<DescMessage>, "deliverFrom" | "deliverNewOnly">): DeliverFrom {
  return opts.deliverFrom ?? (opts.deliverNewOnly ? "new" : "all");
}

const DELIVER_POLICY: Readonly<Record<DeliverFrom, DeliverPolicy>> = {
  all: DeliverPolicy.All,
  new: DeliverPolicy.New,
  last_per_subject: DeliverPolicy.LastPerSubject,
};

export interface Subscription {
  /** Stop consuming; the durable position stays on the server. */
  stop(): Promise<void>;
}

export interface EventBus {
  readonly kind: "nats" | "in-process";
  ensureStream(spec: StreamSpec): Promise<void>;
  /** Resolves once the event is stored (JetStream ack); retried across reconnects until it is. */
  publish<D extends DescMessage>(
    subject: string,
    schema: D,
    message: MessageShape<D>,
    opts?: PublishOptions,
  ): Promise<PublishAck>;
  /**
   * Publish an already encoded event (the transactional outbox stores bytes). `trace`
   * carries the `traceparent`/`tracestate` captured when the event was recorded.
   */
  publishEncoded(subject: string, data: Uint8Array, opts: { msgId: string; trace?: TraceHeaders }): Promise<PublishAck>;
  subscribe<D extends DescMessage, T = MessageShape<D>>(opts: SubscribeOptions<D, T>): Promise<Subscription>;
  /** Events accepted but not yet acknowledged by the store. */
  pendingPublishes(): number;
  /** Wait for pending publishes (bounded), stop consumers, close the connection. */
  close(timeoutMs?: number): Promise<void>;
}

const tracer = () => getTracer("mlmesh.events");

function startProducerSpan(subject: string, captured?: TraceHeaders): { ctx: Context; end: (err?: unknown) => void } {
  // An event recorded during a request and published later (outbox) keeps that request as
  // its parent, so the consumer's span joins the same trace.
  const parent = captured?.traceparent
    ? extractTraceContext({ get: (k) => (k === "traceparent" ? captured.traceparent : k === "tracestate" ? captured.tracestate : undefined) }, ROOT_CONTEXT)
    : context.active();
  const span = tracer().startSpan(
    `publish ${subject}`,
    {
      kind: SpanKind.PRODUCER,
      links: captured?.links?.map((c) => ({ context: c })),
      attributes: { "messaging.system": "nats", "messaging.destination.name": subject, "messaging.operation.type": "publish" },
    },
    parent,
  );
  return {
    ctx: trace.setSpan(parent, span),
    end: (err) => {
      if (err) span.recordException(err as Error);
      span.end();
    },
  };
}

// ---------------------------------------------------------------------------------------
// NATS JetStream

interface OutboxEntry {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs;
  readonly msgId: string;
  readonly resolve: (ack: PublishAck) => void;
  readonly reject: (err: Error) => void;
}

export class JetStreamBus implements EventBus {
  readonly kind = "nats" as const;
  private readonly outbox: OutboxEntry[] = [];
  private pumping = false;
  private closing = false;
  private readonly subscriptions = new Set<ConsumerMessages>();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly logger: Logger,
  ) {}

  static async connect(opts: { servers: string; name: string; logger: Logger; timeoutMs?: number }): Promise<JetStreamBus> {
    const nc = await connect({
      servers: opts.servers.split(",").map((s) => s.trim()),
      name: opts.name,
      timeout: opts.timeoutMs ?? 2000,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 5000,
    });
    const jsm = await nc.jetstreamManager({ timeout: opts.timeoutMs ?? 2000 });
    const bus = new JetStreamBus(nc, nc.jetstream({ timeout: 5000 }), jsm, opts.logger);
    void bus.watchStatus();
    return bus;
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === "disconnect") this.logger.warn({ server: s.data }, "NATS connection lost; reconnecting");
      else if (s.type === "reconnect") {
        this.logger.info({ server: s.data, pending: this.outbox.length }, "NATS reconnected");
        void this.pump();
      }
    }
  }

  async ensureStream(spec: StreamSpec): Promise<void> {
    const config = {
      name: spec.name,
      subjects: [...spec.subjects],
      storage: StorageType.File,
      duplicate_window: nanos(spec.duplicateWindowMs ?? 120_000),
      max_age: spec.maxAgeMs ? nanos(spec.maxAgeMs) : 0,
    };
    try {
      const info = await this.jsm.streams.info(spec.name);
      const same =
        info.config.subjects?.join(",") === config.subjects.join(",") &&
        info.config.duplicate_window === config.duplicate_window &&
        (info.config.max_age ?? 0) === config.max_age;
      if (!same) await this.jsm.streams.update(spec.name, config);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.jsm.streams.add(config);
    }
  }

  publish<D extends DescMessage>(
    subject: string,
    schema: D,
    message: MessageShape<D>,
    opts?: PublishOptions,
  ): Promise<PublishAck> {
    return this.publishEncoded(subject, toBinary(schema, message), { msgId: opts?.msgId ?? crypto.randomUUID() });
  }

  publishEncoded(subject: string, data: Uint8Array, opts: { msgId: string; trace?: TraceHeaders }): Promise<PublishAck> {
    if (this.closing) return Promise.reject(new UnavailableError("event bus is closing"));
    const producer = startProducerSpan(subject, opts.trace);
    const hdrs = natsHeaders();
    injectTraceContext({ get: (k) => (hdrs.has(k) ? hdrs.get(k) : undefined), set: (k, v) => hdrs.set(k, v) }, producer.ctx);
    const msgId = opts.msgId;
    return new Promise<PublishAck>((resolve, reject) => {
      this.outbox.push({
        subject,
        data,
        headers: hdrs,
        msgId,
        resolve: (ack) => {
          producer.end();
          resolve(ack);
        },
        reject: (err) => {
          producer.end(err);
          reject(err);
        },
      });
      void this.pump();
    });
  }

  /** Sends the outbox in order, one at a time, retrying each until JetStream acks it. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    let backoff = 50;
    try {
      while (this.outbox.length > 0) {
        const entry = this.outbox[0]!;
        try {
          const ack = await this.js.publish(entry.subject, entry.data, { msgID: entry.msgId, headers: entry.headers });
          this.outbox.shift();
          backoff = 50;
          entry.resolve({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate });
        } catch (err) {
          if (this.nc.isClosed()) {
            for (const e of this.outbox.splice(0)) e.reject(new UnavailableError("NATS connection closed before the event was stored"));
            return;
          }
          // No ack (disconnected, timeout, no responders while JetStream restarts): retry
          // the same msg id; JetStream drops it if the earlier attempt was in fact stored.
          this.logger.debug({ err, subject: entry.subject, backoff_ms: backoff }, "publish not acknowledged; retrying");
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 2000);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  async subscribe<D extends DescMessage, T = MessageShape<D>>(opts: SubscribeOptions<D, T>): Promise<Subscription> {
    try {
      await this.jsm.consumers.info(opts.stream, opts.durable);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.jsm.consumers.add(opts.stream, {
        durable_name: opts.durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DELIVER_POLICY[deliverFrom(opts)],
        filter_subject: opts.filterSubject,
        ack_wait: nanos(opts.ackWaitMs ?? 30_000),
        max_deliver: -1,
      });
    }
    const consumer = await this.js.consumers.get(opts.stream, opts.durable);
    const messages = await consumer.consume({ max_messages: opts.prefetch ?? 256 });
    this.subscriptions.add(messages);
    const loop = (async () => {
      for await (const m of messages) {
        const carrier = { get: (k: string) => (m.headers?.has(k) ? m.headers.get(k) : undefined) };
        const parent = extractTraceContext(carrier);
        const span = tracer().startSpan(
          `process ${m.subject}`,
          {
            kind: SpanKind.CONSUMER,
            attributes: {
              "messaging.system": "nats",
              "messaging.destination.name": m.subject,
              "messaging.operation.type": "process",
              "messaging.consumer.group.name": opts.durable,
            },
          },
          parent,
        );
        try {
          const message = opts.decode ? opts.decode(m.data) : (fromBinary(opts.schema, m.data) as T);
          await context.with(trace.setSpan(parent, span), () =>
            opts.handler({
              subject: m.subject,
              message,
              seq: m.seq,
              msgId: m.headers?.get("Nats-Msg-Id") || undefined,
              redeliveries: m.info.redeliveryCount - 1,
              storedAtMs: Math.floor(m.info.timestampNanos / 1e6),
              pending: m.info.pending,
            }),
          );
          // ackAck waits for the server to confirm, so "acknowledged" means it will not come back.
          await m.ackAck();
        } catch (err) {
          span.recordException(err as Error);
          this.logger.warn({ err, subject: m.subject, seq: m.seq }, "event handler failed; will be redelivered");
          m.nak(Math.min(1000 * 2 ** Math.min(m.info.redeliveryCount, 5), 30_000));
        } finally {
          span.end();
        }
      }
    })();
    return {
      stop: async () => {
        this.subscriptions.delete(messages);
        await messages.close();
        await loop.catch(() => undefined);
      },
    };
  }

  pendingPublishes(): number {
    return this.outbox.length;
  }

  async close(timeoutMs = 5000): Promise<void> {
    this.closing = true;
    const deadline = Date.now() + timeoutMs;
    while (this.outbox.length > 0 && Date.now() < deadline) await sleep(20);
    if (this.outbox.length > 0) {
      this.logger.error({ pending: this.outbox.length }, "closing with events not yet acknowledged by NATS");
    }
    for (const s of this.subscriptions) await s.close().catch(() => undefined);
    this.subscriptions.clear();
    await this.nc.drain().catch(() => undefined);
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { code?: string; api_error?: { err_code?: number } };
  return e?.api_error?.err_code === 10059 || e?.api_error?.err_code === 10014 || e?.code === "404";
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------
// In-process bus: the same semantics (streams, durable positions, ack/redelivery, msg-id
// dedup) kept in memory, for the all-in-one mode without NATS. Nothing survives a restart.

interface StoredEvent {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly msgId: string;
  readonly traceHeaders: Map<string, string>;
  readonly storedAtMs: number;
}

interface MemStream {
  readonly spec: StreamSpec;
  readonly events: StoredEvent[];
  readonly ids: Map<string, number>;
  readonly consumers: Map<string, MemConsumer>;
}

interface MemConsumer {
  acked: number;
  readonly filter: string;
  /** last_per_subject: of the events stored at creation (seq <= boundary) only these are delivered. */
  readonly boundary?: number;
  readonly initial?: ReadonlySet<number>;
  wake?: () => void;
}

export class InProcessBus implements EventBus {
  readonly kind = "in-process" as const;
  private readonly streams = new Map<string, MemStream>();
  private readonly stops = new Set<() => Promise<void>>();

  constructor(private readonly logger: Logger) {}

  async ensureStream(spec: StreamSpec): Promise<void> {
    const existing = this.streams.get(spec.name);
    if (existing) {
      this.streams.set(spec.name, { ...existing, spec });
      return;
    }
    this.streams.set(spec.name, { spec, events: [], ids: new Map(), consumers: new Map() });
  }

  private streamFor(subject: string): MemStream | undefined {
    for (const s of this.streams.values()) if (s.spec.subjects.some((p) => subjectMatches(p, subject))) return s;
    return undefined;
  }

  async publish<D extends DescMessage>(
    subject: string,
    schema: D,
    message: MessageShape<D>,
    opts?: PublishOptions,
  ): Promise<PublishAck> {
    return this.publishEncoded(subject, toBinary(schema, message), { msgId: opts?.msgId ?? crypto.randomUUID() });
  }

  async publishEncoded(subject: string, data: Uint8Array, opts: { msgId: string; trace?: TraceHeaders }): Promise<PublishAck> {
    const stream = this.streamFor(subject);
    if (!stream) throw new UnavailableError(`no stream captures subject ${subject}`);
    const producer = startProducerSpan(subject, opts.trace);
    const known = stream.ids.get(opts.msgId);
    if (known !== undefined) {
      producer.end();
      return { stream: stream.spec.name, seq: known, duplicate: true };
    }
    const traceHeaders = new Map<string, string>();
    injectTraceContext({ get: (k) => traceHeaders.get(k), set: (k, v) => traceHeaders.set(k, v) }, producer.ctx);
    const seq = stream.events.length + 1;
    stream.events.push({ seq, subject, data, msgId: opts.msgId, traceHeaders, storedAtMs: Date.now() });
    stream.ids.set(opts.msgId, seq);
    for (const c of stream.consumers.values()) c.wake?.();
    producer.end();
    return { stream: stream.spec.name, seq, duplicate: false };
  }

  async subscribe<D extends DescMessage, T = MessageShape<D>>(opts: SubscribeOptions<D, T>): Promise<Subscription> {
    const stream = this.streams.get(opts.stream);
    if (!stream) throw new UnavailableError(`stream ${opts.stream} does not exist`);
    let state = stream.consumers.get(opts.durable);
    if (!state) {
      const from = deliverFrom(opts);
      if (from === "last_per_subject") {
        const last = new Map<string, number>();
        for (const e of stream.events) if (subjectMatches(opts.filterSubject, e.subject)) last.set(e.subject, e.seq);
        state = { acked: 0, filter: opts.filterSubject, boundary: stream.events.length, initial: new Set(last.values()) };
      } else {
        state = { acked: from === "new" ? stream.events.length : 0, filter: opts.filterSubject };
      }
      stream.consumers.set(opts.durable, state);
    }
    const consumer = state;
    let running = true;
    const loop = (async () => {
      const attempts = new Map<number, number>();
      while (running) {
        const wanted = (e: StoredEvent) => e.seq > consumer.acked && subjectMatches(consumer.filter, e.subject) && (consumer.boundary === undefined || e.seq > consumer.boundary || consumer.initial!.has(e.seq));
        const next = stream.events.find(wanted);
        if (!next) {
          await new Promise<void>((r) => (consumer.wake = r));
          consumer.wake = undefined;
          continue;
        }
        const parent = extractTraceContext({ get: (k) => next.traceHeaders.get(k) });
        const span = tracer().startSpan(`process ${next.subject}`, { kind: SpanKind.CONSUMER }, parent);
        const tries = attempts.get(next.seq) ?? 0;
        try {
          await context.with(trace.setSpan(parent, span), () =>
            opts.handler({
              subject: next.subject,
              message: opts.decode ? opts.decode(next.data) : (fromBinary(opts.schema, next.data) as T),
              seq: next.seq,
              msgId: next.msgId,
              redeliveries: tries,
              storedAtMs: next.storedAtMs,
              pending: stream.events.reduce((n, e) => (e.seq > next.seq && wanted(e) ? n + 1 : n), 0),
            }),
          );
          consumer.acked = next.seq;
          attempts.delete(next.seq);
        } catch (err) {
          attempts.set(next.seq, tries + 1);
          this.logger.warn({ err, subject: next.subject, seq: next.seq }, "event handler failed; will be redelivered");
          await sleep(Math.min(100 * 2 ** tries, 5000));
        } finally {
          span.end();
        }
      }
    })();
    const stop = async () => {
      running = false;
      consumer.wake?.();
      await loop;
    };
    this.stops.add(stop);
    return {
      stop: async () => {
        this.stops.delete(stop);
        await stop();
      },
    };
  }

  pendingPublishes(): number {
    return 0;
  }

  async close(): Promise<void> {
    for (const stop of this.stops) await stop();
    this.stops.clear();
  }
}

/** NATS subject matching: `*` matches one token, a trailing `>` one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== "*" && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

// ---------------------------------------------------------------------------------------

/**
 * The bus for this process. With `natsUrl` (or `required`), NATS it is, or an error naming
 * the server. Otherwise the local default server is tried briefly and the in-process bus
 * used if it does not answer; the choice is logged either way.
 */
export async function openEventBus(opts: {
  natsUrl: string | undefined;
  required: boolean;
  clientName: string;
  logger: Logger;
  /** The server tried when `natsUrl` is unset (the local default). */
  defaultServers?: string;
}): Promise<EventBus> {
  const servers = opts.natsUrl ?? opts.defaultServers ?? "nats://127.0.0.1:4222";
  try {
    const bus = await JetStreamBus.connect({
      servers,
      name: opts.clientName,
      logger: opts.logger,
      timeoutMs: opts.natsUrl || opts.required ? 5000 : 500,
    });
    opts.logger.info({ nats: servers }, "events: using NATS JetStream");
    return bus;
  } catch (err) {
    if (opts.natsUrl || opts.required) {
      throw new UnavailableError(
        `cannot reach NATS JetStream at ${servers} (${(err as Error).message}); start nats-server with -js or fix MLMESH_NATS_URL`,
      );
    }
    opts.logger.warn(
      { tried: servers },
      "events: no NATS reachable and MLMESH_NATS_URL unset; using the in-process event bus (events stay inside this process and are lost on exit)",
    );
    return new InProcessBus(opts.logger);
  }
}
