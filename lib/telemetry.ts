// OpenTelemetry set-up, done once per process before any server starts: with
// OTEL_EXPORTER_OTLP_ENDPOINT set, the SDK recording every span and exporting it over OTLP;
// without, a provider that only mints trace and span ids (so they still reach logs and
// cross-service calls) and records nothing. W3C trace context propagation either way. Also the helpers that carry trace context and deadlines through gRPC and NATS.

import { context, createContextKey, propagation, trace, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as OtlpHttpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpHttpProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { Config } from "./config.js";
import { IdsOnlyTracerProvider } from "./trace-ids-only.js";
import { MLMESH_VERSION } from "./version.js";

let sdk: NodeSDK | undefined;
let idsOnly: IdsOnlyTracerProvider | undefined;
let contextManagerReady = false;

/**
 * Request context (active span, deadline) rides on AsyncLocalStorage. NodeSDK installs the
 * manager; a server started without telemetry (a library user, a unit test) installs it here,
 * because deadlines must propagate whether or not anything is traced.
 */
export function ensureContextManager(): void {
  if (contextManagerReady) return;
  contextManagerReady = true;
  // Returns false (and changes nothing) when NodeSDK already registered one.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

/**
 * Start tracing for this process. `serviceName` is the OTel resource's service.name
 * (`mlmesh-registry` for one service per process, `mlmesh` for the all-in-one mesh).
 * Idempotent: the first call wins.
 */
export function startTelemetry(config: Config, serviceName: string): void {
  if (sdk || idsOnly) return;
  if (!config.otel.endpoint) {
    // Nothing to export to: mint ids, record nothing (lib/trace-ids-only.ts).
    idsOnly = new IdsOnlyTracerProvider();
    trace.setGlobalTracerProvider(idsOnly);
    ensureContextManager();
    return;
  }
  // OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; traces go to /v1/traces.
  const url = `${config.otel.endpoint.replace(/\/+$/, "")}/v1/traces`;
  const exporter = config.otel.protocol === "http/json" ? new OtlpHttpJsonExporter({ url }) : new OtlpHttpProtoExporter({ url });
  sdk = new NodeSDK({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName, [ATTR_SERVICE_VERSION]: MLMESH_VERSION }),
    autoDetectResources: false,
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500 })],
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
    textMapPropagator: new W3CTraceContextPropagator(),
  });
  sdk.start();
  contextManagerReady = true;
}

/** Flush pending spans and stop the provider (part of graceful shutdown). */
export async function stopTelemetry(): Promise<void> {
  const s = sdk;
  sdk = undefined;
  if (idsOnly) {
    idsOnly = undefined;
    trace.disable();
  }
  if (s) await s.shutdown().catch(() => undefined);
}

/**
 * False when this process only mints ids (no exporter): spans nobody will ever see — a
 * router step's, an in-process call's CLIENT span — can then be skipped. True with the SDK
 * and in a process that never started telemetry (a library user's own provider may record).
 */
export function spansRecorded(): boolean {
  return idsOnly === undefined;
}

export function getTracer(scope: string): Tracer {
  return trace.getTracer(scope, MLMESH_VERSION);
}

// ---- deadlines, carried in the same context as the active span ---------------------------

const DEADLINE_KEY = createContextKey("mlmesh.deadline");

/** A context whose calls must finish by `deadline` (epoch ms). */
export function withDeadline(ctx: Context, deadline: number): Context {
  const current = ctx.getValue(DEADLINE_KEY) as number | undefined;
  return ctx.setValue(DEADLINE_KEY, current === undefined ? deadline : Math.min(current, deadline));
}

/** Milliseconds left before the active request's deadline, or undefined if it has none. */
export function remainingMs(ctx: Context = context.active()): number | undefined {
  const deadline = ctx.getValue(DEADLINE_KEY) as number | undefined;
  return deadline === undefined ? undefined : deadline - Date.now();
}

// ---- propagation through headers (gRPC metadata, HTTP, NATS) ---------------------------

interface HeaderLike {
  get(key: string): string | null | undefined;
  set(key: string, value: string): void;
}

const headerGetter = {
  keys: (carrier: Pick<HeaderLike, "get">) => {
    const keys: string[] = [];
    for (const k of ["traceparent", "tracestate"]) if (carrier.get(k)) keys.push(k);
    return keys;
  },
  get: (carrier: Pick<HeaderLike, "get">, key: string) => carrier.get(key) ?? undefined,
};

const headerSetter = {
  set: (carrier: HeaderLike, key: string, value: string) => carrier.set(key, value),
};

/** Write `traceparent`/`tracestate` of `ctx` into a header carrier. */
export function injectTraceContext(carrier: HeaderLike, ctx: Context = context.active()): void {
  propagation.inject(ctx, carrier, headerSetter);
}

/** Read a remote parent from a header carrier into a context. */
export function extractTraceContext(carrier: Pick<HeaderLike, "get">, base: Context = context.active()): Context {
  return propagation.extract(base, carrier, headerGetter);
}

export type { Span, Context };
