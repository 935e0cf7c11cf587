// Structured JSON logging (pino). Inside a request every line carries trace_id and span_id,
// read from the active OpenTelemetry context, so a log line leads to its trace. Logs go to
// stderr: stdout is for command results (`mlmesh up --json` prints its endpoints there).

import { context, trace } from "@opentelemetry/api";
import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

const SECRET_FIELDS = ["authorization", "cookie", "password", "token", "secret", "serviceToken", "clientToken", "privateKey", "private_key", "apiKey", "api_key", "x-api-key"];
/** The paths pino censors; exported for the test that proves them. */
export const REDACT_PATHS: readonly string[] = SECRET_FIELDS.flatMap((f) => {
  const k = /^[A-Za-z_]\w*$/.test(f) ? f : `["${f}"]`;
  const dot = k.startsWith("[") ? "" : ".";
  return [k, `*${dot}${k}`, `*.*${dot}${k}`];
});

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
      // Credentials never reach a log line, at the top level or one or two levels down
      // (e.g. { headers: { authorization } } or { req: { headers: { authorization } } }).
      // Secret values held in config (lib/config-security.ts) print as "[redacted]" anyway.
      redact: { paths: [...REDACT_PATHS], censor: "[redacted]" },
    },
    opts.destination ?? pino.destination({ dest: 2, sync: false }),
  );
}
