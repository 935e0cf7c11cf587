// PRAGMA integrity_check on every SQLite file under a data dir, opened read-only.
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

function dbFiles(dir: string, out: string[] = []): string[] {
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) dbFiles(p, out);
    else if (/\.(db|sqlite|sqlite3)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** { file: "ok" | the problems } for every database file; at least one must exist. */
export function integrityOfDataDir(dir: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const file of dbFiles(dir)) {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const rows = db.pragma("integrity_check") as Array<{ integrity_check: string }>;
      result[path.relative(dir, file)] = rows.map((r) => r.integrity_check).join("; ");
    } finally {
      db.close();
    }
  }
  return result;
}
