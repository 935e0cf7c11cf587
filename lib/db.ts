// SQLite (better-sqlite3 12.x) opened the way every mlmesh store needs it: WAL so readers
// never block the writer, foreign keys on, a busy timeout instead of SQLITE_BUSY errors,
// and the service's committed drizzle migrations applied before the store is used.

import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { drizzle, type BetterSQLite3Database } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { ValidationError } from "./errors.js";

export interface SqliteHandle<S extends Record<string, unknown>> {
  readonly sqlite: Database.Database;
  readonly db: BetterSQLite3Database<S>;
  readonly path: string;
  close(): void;
}

/**
 * Open (creating if needed) `<dataDir>/<file>` and apply the migrations in
 * `migrationsFolder`. `file` ":memory:" gives a private in-memory database.
 */
export function openSqlite<S extends Record<string, unknown>>(opts: {
  dataDir: string;
  file: string;
  schema: S;
  migrationsFolder: string;
}): SqliteHandle<S> {
  let target = ":memory:";
  if (opts.file !== ":memory:") {
    if (!/^[A-Za-z0-9_.-]+\.db$/.test(opts.file)) throw new ValidationError("file", "a plain *.db file name");
    fs.mkdirSync(opts.dataDir, { recursive: true });
    target = path.join(opts.dataDir, opts.file);
  }
  const sqlite = new Database(target);
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  const db = drizzle(sqlite, { schema: opts.schema });
  migrate(db, { migrationsFolder: opts.migrationsFolder });
  return {
    sqlite,
    db,
    path: target,
    close: () => {
      if (sqlite.open) sqlite.close();
    },
  };
}
