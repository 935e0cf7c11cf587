// Structured JSON logging (pino). Inside a request every line carries trace_id and span_id,
// read from the active OpenTelemetry context, so a log line leads to its trace. Logs go to
// stderr: stdout is for command results (`mlmesh up --json` prints its endpoints there).

import { context, trace } from "@opentelemetry/api";
import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

export function createLogger(opts: { level: LogLevel; service?: string; destination?: NodeJS.WritableStream }): Logger {
  return pino(
    {
      level: opts.level,
      base: opts.service ? { service: opts.service } : {},
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin() {
        const span = trace.getSpan(context.active());
        if (!span) return {};
        const sc = span.spanContext();
        return { trace_id: sc.traceId, span_id: sc.spanId };
      },
      redact: { paths: ["*.authorization", "*.password", "*.token", "*.secret"], censor: "[redacted]" },
    },
    opts.destination ?? pino.destination({ dest: 2, sync: false }),
  );
}
