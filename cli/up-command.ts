// `mlmesh up` (all five services in one process) and `mlmesh serve <service>` (one).

import { SERVICE_NAMES, type Config, type ServiceName } from "../lib/config.js";
import { exitOnSignals } from "../lib/process.js";
import { createRuntime, type ServiceHandle } from "../lib/runtime.js";
import { EXIT, printJson, printTable, UsageError } from "./output.js";
import { SERVICE_STARTERS } from "./services.js";

export async function runUp(config: Config, json: boolean): Promise<number> {
  return run(config, [...SERVICE_NAMES], "all-in-one", json);
}

export async function runServe(config: Config, service: string | undefined, json: boolean): Promise<number> {
  if (!service || !(SERVICE_NAMES as readonly string[]).includes(service)) {
    throw new UsageError(`serve needs one of ${SERVICE_NAMES.join(", ")}; got ${JSON.stringify(service ?? "")}`);
  }
  return run(config, [service as ServiceName], "single", json);
}

async function run(config: Config, names: ServiceName[], mode: "all-in-one" | "single", json: boolean): Promise<number> {
  const runtime = await createRuntime(config, { mode, service: mode === "single" ? names[0] : undefined });
  const started: ServiceHandle[] = [];
  const stopAll = async () => {
    // Servers drain in parallel; the bus closes last so their final events still go out.
    await Promise.all(started.map((s) => s.stop()));
    await runtime.close();
  };
  try {
    for (const name of names) started.push(await SERVICE_STARTERS[name](runtime));
  } catch (err) {
    runtime.logger.error({ err }, "start failed");
    await stopAll().catch(() => undefined);
    throw err;
  }
  exitOnSignals({ logger: runtime.logger, shutdown: stopAll, hardLimitMs: config.shutdownGraceMs + 5000 });

  const rows = started.map((s) => ({ service: s.name, grpc: s.grpcUrl, http: s.httpUrl }));
  if (json) {
    printJson({ mode, events: runtime.bus.kind, data_dir: config.dataDir, services: rows });
  } else {
    process.stdout.write(
      `mlmesh ${mode === "all-in-one" ? "mesh" : names[0]} is up (events: ${runtime.bus.kind === "nats" ? "NATS JetStream" : "in-process bus"}, data: ${config.dataDir})\n`,
    );
    printTable(rows, ["service", "grpc", "http"]);
    process.stdout.write("Ctrl-C (SIGINT) or SIGTERM drains and stops.\n");
  }
  return EXIT.OK;
}
