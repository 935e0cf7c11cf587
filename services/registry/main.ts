// Builds the registry's real dependencies (SQLite store, outbox relay) and starts it.

import path from "node:path";
import { fileURLToPath } from "node:url";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { openSqlite } from "../../lib/db.js";
import { Outbox } from "../../lib/outbox.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { hostService } from "../../lib/service-host.js";
import { STREAMS } from "../../lib/streams.js";
import * as schema from "./schema.js";
import { createRegistryService } from "./service.js";
import { RegistryStore } from "./store.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");

export async function startRegistry(rt: Runtime): Promise<ServiceHandle> {
  const logger = rt.logger.child({ component: "registry" });
  await rt.bus.ensureStream(STREAMS.registry);
  const handle = openSqlite({ dataDir: rt.config.dataDir, file: "registry.db", schema, migrationsFolder: MIGRATIONS });
  const outbox = new Outbox(handle.sqlite, rt.bus, logger, "registry");
  const store = new RegistryStore(handle.db, handle.sqlite, outbox);
  outbox.start();
  return hostService(rt, {
    name: "registry",
    logger,
    services: [{ service: RegistryService, impl: createRegistryService({ store }), pendingNote: "lands with issue #3" }],
    close: async () => {
      await outbox.stop();
      handle.close();
    },
  });
}
