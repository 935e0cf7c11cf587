// Every RPC of every service declares the role it needs: this walks every file descriptor in
// gen/ (so a new RPC or a new service is seen without touching this test) and fails on any
// method missing from METHOD_ROLES, and on any table entry that names no real method.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, it } from "node:test";
import type { DescFile } from "@bufbuild/protobuf";
import { METHOD_ROLES } from "./method-roles.js";
import { ROLES } from "./roles.js";

const GEN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../gen");

function pbFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? pbFiles(p) : e.name.endsWith("_pb.ts") ? [p] : [];
  });
}

function isDescFile(v: unknown): v is DescFile {
  return typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "file" && Array.isArray((v as DescFile).services);
}

async function allMethods(): Promise<string[]> {
  const names = new Set<string>();
  for (const file of pbFiles(GEN)) {
    const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const v of Object.values(mod)) {
      if (!isDescFile(v)) continue;
      for (const s of v.services) for (const m of s.methods) names.add(`${s.typeName}/${m.name}`);
    }
  }
  return [...names].sort();
}

describe("method roles", () => {
  it("declares a role for every method of every service in gen/", async () => {
    const methods = await allMethods();
    assert.ok(methods.length >= 90, `found only ${methods.length} methods: is gen/ complete?`);
    const missing = methods.filter((m) => METHOD_ROLES[m] === undefined);
    assert.deepEqual(missing, [], `methods without a declared role in lib/auth/method-roles.ts:\n${missing.join("\n")}`);
  });

  it("names only real methods, each with a known requirement", async () => {
    const methods = new Set(await allMethods());
    const stale = Object.keys(METHOD_ROLES).filter((m) => !methods.has(m));
    assert.deepEqual(stale, [], `entries for methods that do not exist: ${stale.join(", ")}`);
    for (const [m, r] of Object.entries(METHOD_ROLES)) assert.ok(r === "public" || (ROLES as readonly string[]).includes(r), `${m}: ${r}`);
  });

  it("keeps public only health and liveness/readiness", () => {
    const pub = Object.entries(METHOD_ROLES).filter(([, r]) => r === "public").map(([m]) => m).sort();
    assert.deepEqual(pub, [
      "grpc.health.v1.Health/Check",
      "grpc.health.v1.Health/Watch",
      "inference.GRPCInferenceService/ServerLive",
      "inference.GRPCInferenceService/ServerReady",
    ]);
  });
});
