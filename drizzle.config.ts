// drizzle-kit configuration: one SQLite schema and migrations folder per service, chosen by
// MLMESH_DB_SERVICE (`npm run db:generate` loops over the services that have a schema).
import { defineConfig } from "drizzle-kit";

const service = process.env.MLMESH_DB_SERVICE ?? "registry";

export default defineConfig({
  dialect: "sqlite",
  schema: `./services/${service}/schema.ts`,
  out: `./services/${service}/migrations`,
  casing: "snake_case",
});
