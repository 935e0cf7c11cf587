// What every service needs from the process it runs in: config, logger, event bus. Built
// once by the CLI (`mlmesh up` shares one runtime among five services; `mlmesh serve` builds
// one for one service) and passed to each service's start function.

import { closeAllClients } from "./clients.js";
import type { Config, ServiceName } from "./config.js";
import { openEventBus, type EventBus } from "./events.js";
import { setLocalCallsEnabled } from "./local-calls.js";
import { createLogger, type Logger } from "./logger.js";
import { startTelemetry, stopTelemetry } from "./telemetry.js";

export interface Runtime {
  readonly config: Config;
  readonly logger: Logger;
  readonly bus: EventBus;
  /** "all-in-one": `mlmesh up`; "single": one service per process (always NATS). */
  readonly mode: "all-in-one" | "single";
  close(): Promise<void>;
}

export async function createRuntime(config: Config, opts: { mode: "all-in-one" | "single"; service?: ServiceName }): Promise<Runtime> {
  const otelName = opts.mode === "single" && opts.service ? `${config.otel.serviceNamePrefix}-${opts.service}` : config.otel.serviceNamePrefix;
  startTelemetry(config, otelName);
  setLocalCallsEnabled(config.localCalls);
  const logger = createLogger({ level: config.logLevel, service: opts.mode === "single" ? opts.service : "mesh" });
  const bus = await openEventBus({
    natsUrl: config.natsUrl,
    required: opts.mode === "single",
    clientName: `mlmesh-${opts.service ?? "mesh"}-${process.pid}`,
    logger,
  });
  return {
    config,
    logger,
    bus,
    mode: opts.mode,
    close: async () => {
      await bus.close(config.shutdownGraceMs);
      closeAllClients();
      await stopTelemetry();
    },
  };
}

/** A started service: its server plus whatever it must close on shutdown. */
export interface ServiceHandle {
  readonly name: ServiceName;
  readonly grpcUrl: string;
  readonly httpUrl: string;
  /** Drain the server, then close stores and consumers. */
  stop(): Promise<void>;
}
