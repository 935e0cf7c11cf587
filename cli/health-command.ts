// `mlmesh health [service]`: grpc.health.v1 Check against one service or all five.

import { ConnectError } from "@connectrpc/connect";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { SERVICE_NAMES, type Config, type ServiceName } from "../lib/config.js";
import { codeName } from "../lib/errors.js";
import { createMeshClients } from "../lib/mesh-clients.js";
import { EXIT, printJson, printTable, UsageError } from "./output.js";

export async function runHealth(config: Config, service: string | undefined, json: boolean): Promise<number> {
  if (service !== undefined && !(SERVICE_NAMES as readonly string[]).includes(service)) {
    throw new UsageError(`unknown service ${JSON.stringify(service)}; expected one of ${SERVICE_NAMES.join(", ")}`);
  }
  const names = service ? [service as ServiceName] : [...SERVICE_NAMES];
  const clients = createMeshClients(config, { defaultTimeoutMs: 2000 });
  const rows = await Promise.all(
    names.map(async (name) => {
      const endpoint = config.endpoints[name];
      try {
        const res = await clients.health(name).check({ service: "" });
        return { service: name, endpoint, status: ServingStatus[res.status] ?? String(res.status) };
      } catch (err) {
        const ce = ConnectError.from(err);
        return { service: name, endpoint, status: `UNREACHABLE (${codeName(ce.code)}: ${ce.rawMessage})` };
      }
    }),
  );
  if (json) printJson(rows);
  else printTable(rows, ["service", "endpoint", "status"]);
  if (rows.some((r) => r.status.startsWith("UNREACHABLE"))) return EXIT.UNAVAILABLE;
  return rows.every((r) => r.status === "SERVING") ? EXIT.OK : EXIT.FAILED;
}
