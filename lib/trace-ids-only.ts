// The tracer provider of a process that exports no spans (no OTEL_EXPORTER_OTLP_ENDPOINT):
// it still gives every request a trace id and span ids — they reach logs, the prediction
// log and the traceparent sent to other services — but records nothing. The SDK's provider
// with a dropping processor built, timed and attributed every span only to throw it away
// (≈5% of a mesh Predict's CPU). The sampled flag of the incoming parent is passed on, and
// a root is marked sampled, so a downstream service that does export still records the
// request's spans, as it did when this process recorded and dropped them.
//
// Ids are minted when first asked for: a Predict opens about nine spans in one process,
// and most of their span ids are never read by anything (no log line, no traceparent).
// A child takes its parent's trace id without making the parent mint a span id.

import {
  context as contextApi,
  trace,
  TraceFlags,
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type Link,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  type TimeInput,
  type TraceState,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import { RandomIdGenerator } from "@opentelemetry/sdk-trace-base";

/** The SDK's generator, as before ids became lazy: what changed is when ids are made, not how. */
const ids = new RandomIdGenerator();

/** A non-recording span whose ids are minted on first use. */
export class IdsOnlySpan implements Span {
  private sc: SpanContext | undefined;
  private tid: string | undefined;

  constructor(
    private readonly parentTraceId: string | undefined,
    readonly traceFlags: number,
    readonly traceState: TraceState | undefined,
  ) {}

  /** The trace id alone: a root's is minted here, a child's is its parent's. */
  traceId(): string {
    return (this.tid ??= this.parentTraceId ?? ids.generateTraceId());
  }

  spanContext(): SpanContext {
    return (this.sc ??= { traceId: this.traceId(), spanId: ids.generateSpanId(), traceFlags: this.traceFlags, traceState: this.traceState });
  }

  setAttribute(_key: string, _value: AttributeValue): this {
    return this;
  }
  setAttributes(_attributes: Attributes): this {
    return this;
  }
  addEvent(_name: string, _attributesOrStartTime?: Attributes | TimeInput, _startTime?: TimeInput): this {
    return this;
  }
  addLink(_link: Link): this {
    return this;
  }
  addLinks(_links: Link[]): this {
    return this;
  }
  setStatus(_status: SpanStatus): this {
    return this;
  }
  updateName(_name: string): this {
    return this;
  }
  end(_endTime?: TimeInput): void {}
  isRecording(): boolean {
    return false;
  }
  recordException(_exception: Exception, _time?: TimeInput): void {}
}

/** The trace id of `span` without minting a span id when it is one of ours. */
export function traceIdOf(span: Span): string {
  return span instanceof IdsOnlySpan ? span.traceId() : span.spanContext().traceId;
}

class IdsOnlyTracer implements Tracer {
  startSpan(_name: string, _options?: SpanOptions, ctx: Context = contextApi.active()): Span {
    const parent = trace.getSpan(ctx);
    if (parent instanceof IdsOnlySpan) return new IdsOnlySpan(parent.traceId(), parent.traceFlags, parent.traceState);
    const sc = parent?.spanContext();
    if (sc !== undefined && trace.isSpanContextValid(sc)) return new IdsOnlySpan(sc.traceId, sc.traceFlags, sc.traceState);
    return new IdsOnlySpan(undefined, TraceFlags.SAMPLED, undefined);
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: unknown[]): ReturnType<F> {
    const fn = rest[rest.length - 1] as (span: Span) => ReturnType<F>;
    const options = rest.length >= 2 ? (rest[0] as SpanOptions | undefined) : undefined;
    const ctx = rest.length >= 3 ? ((rest[1] as Context | undefined) ?? contextApi.active()) : contextApi.active();
    const span = this.startSpan(name, options, ctx);
    return contextApi.with(trace.setSpan(ctx, span), fn, undefined, span) as ReturnType<F>;
  }
}

export class IdsOnlyTracerProvider implements TracerProvider {
  private readonly tracer = new IdsOnlyTracer();

  getTracer(): Tracer {
    return this.tracer;
  }
}
