// The tracer provider of a process that exports no spans (no OTEL_EXPORTER_OTLP_ENDPOINT):
// it still gives every request a trace id and span ids — they reach logs, the prediction
// log and the traceparent sent to other services — but records nothing. The SDK's provider
// with a dropping processor built, timed and attributed every span only to throw it away
// (≈5% of a mesh Predict's CPU). The sampled flag of the incoming parent is passed on, and
// a root is marked sampled, so a downstream service that does export still records the
// request's spans, as it did when this process recorded and dropped them.

import { context as contextApi, trace, TraceFlags, type Context, type Span, type SpanContext, type SpanOptions, type Tracer, type TracerProvider } from "@opentelemetry/api";
import { RandomIdGenerator } from "@opentelemetry/sdk-trace-base";

const ids = new RandomIdGenerator();

class IdsOnlyTracer implements Tracer {
  startSpan(_name: string, _options?: SpanOptions, ctx: Context = contextApi.active()): Span {
    const parent = trace.getSpanContext(ctx);
    const valid = parent !== undefined && trace.isSpanContextValid(parent);
    const spanContext: SpanContext = {
      traceId: valid ? parent.traceId : ids.generateTraceId(),
      spanId: ids.generateSpanId(),
      traceFlags: valid ? parent.traceFlags : TraceFlags.SAMPLED,
      traceState: valid ? parent.traceState : undefined,
    };
    return trace.wrapSpanContext(spanContext);
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
