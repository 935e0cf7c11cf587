// Builds the registry's real dependencies (SQLite store, artifact files, outbox relay) and
// starts it. At start it also clears what a crash can leave behind: artifact files no
// version references and partial uploads that expired.

import path from "node:path";
import { fileURLToPath } from "node:url";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { openSqlite } from "../../lib/db.js";
import { Outbox } from "../../lib/outbox.js";
import type { Runtime, ServiceHandle } from "../../lib/runtime.js";
import { hostService } from "../../lib/service-host.js";
import { serviceRegistration } from "../../lib/server.js";
import { STREAMS } from "../../lib/streams.js";
import { ArtifactFiles } from "./artifacts.js";
import * as schema from "./schema.js";
import { createRegistryService } from "./service.js";
import { RegistryStore } from "./store.js";
import { KeyedLock, Uploads } from "./upload.js";

const MIGRATIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), "migrations");
const SWEEP_INTERVAL_MS = 10 * 60 * 1000;

export async function startRegistry(rt: Runtime): Promise<ServiceHandle> {
  const logger = rt.logger.child({ component: "registry" });
  await rt.bus.ensureStream(STREAMS.registry);
  const handle = openSqlite({ dataDir: rt.config.dataDir, file: "registry.db", schema, migrationsFolder: MIGRATIONS });
  const outbox = new Outbox(handle.sqlite, rt.bus, logger, "registry");
  const store = new RegistryStore(handle.db, handle.sqlite, outbox);
  const files = new ArtifactFiles(rt.config.dataDir);
  await files.init();
  const uploads = new Uploads(store, files, new KeyedLock(), logger);
  const orphans = await files.sweep((sha) => store.artifactReferences(sha) > 0);
  if (orphans.length) logger.warn({ removed: orphans }, "registry: removed artifact files no version references (left by an interrupted upload)");
  await uploads.sweep();
  const timer = setInterval(() => {
    uploads.sweep().catch((err: unknown) => logger.warn({ err }, "registry: upload sweep failed"));
  }, SWEEP_INTERVAL_MS);
  timer.unref();
  outbox.start();
  return hostService(rt, {
    name: "registry",
    logger,
    services: [serviceRegistration(RegistryService, createRegistryService({ store, files, uploads, logger }))],
    close: async () => {
      clearInterval(timer);
      await outbox.stop();
      handle.close();
    },
  });
}
