// Model versions held by this replica: refs resolved through the registry (and kept current
// by AliasMoved events), artifacts streamed into a local sha256-verified cache, sessions in
// worker threads, least-recently-used versions unloaded past a limit.

import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { FeatureBinding } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { RegistryService, ResolveModelRefResponse } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { DataLossError, NotFoundError, PreconditionError, UnavailableError, ValidationError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { SessionPool, type BatchPolicy, type PoolObserver } from "./session-pool.js";
import { allocate, ioSpecOf, type DenseTensor, type IoSpec } from "./tensors.js";

export interface BatchingSettings extends BatchPolicy {
  readonly workers: number;
  readonly intraOpThreads: number;
  readonly maxRowsPerRequest: number;
  readonly allowNonFinite: boolean;
}

export interface LoadedVersion {
  readonly name: string;
  readonly version: number;
  readonly sha256: string;
  /** The verified artifact in the local cache (batch scoring opens its own sessions of it). */
  readonly artifactPath: string;
  readonly inputs: readonly IoSpec[];
  readonly outputs: readonly IoSpec[];
  readonly binding: FeatureBinding | undefined;
  readonly pool: SessionPool;
  readonly loadedAt: number;
  lastUsed: number;
}

export interface LoaderOptions {
  readonly registry: Client<typeof RegistryService>;
  readonly cacheDir: string;
  readonly maxLoadedVersions: number;
  readonly settings: (model: string) => BatchingSettings;
  readonly observer: (model: string, version: number) => PoolObserver;
  readonly logger: Logger;
  /** How long a resolution of a moving ref (`@latest`) is trusted without an event. */
  readonly latestTtlMs: number;
  /** Runs before a version serves (the prediction log's PII tags of its bound features); must not throw. */
  readonly prepare?: (binding: FeatureBinding | undefined) => Promise<void>;
}

const REF = /^([A-Za-z0-9][A-Za-z0-9_.-]*)(?:@([A-Za-z0-9_.-]+))?$/;

/** `name` alone means `name@production`. */
export function parseRef(ref: string): { name: string; selector: string } {
  const m = REF.exec(ref);
  if (!m) throw new ValidationError("model_ref", `"${ref}" is not a model ref (name, name@alias, name@stage or name@N)`);
  return { name: m[1]!, selector: m[2] ?? "production" };
}

interface ParsedRef {
  readonly name: string;
  readonly selector: string;
  /** `name@selector`, the key of `refs`. */
  readonly canonical: string;
  /** `name@N` of a pinned ref, the key of `versions`. */
  readonly pinnedKey: string | undefined;
}

interface RefEntry {
  version: number;
  sha256: string;
  resolvedAt: number;
}

export class ModelLoader {
  private readonly versions = new Map<string, LoadedVersion>();
  private readonly loading = new Map<string, Promise<LoadedVersion>>();
  private readonly refs = new Map<string, RefEntry>();
  private readonly failed = new Map<string, string>();
  /** Bumped by every alias move, so a slower concurrent resolution cannot undo it. */
  private generation = 0;

  constructor(private readonly o: LoaderOptions) {}

  private static key(name: string, version: number): string {
    return `${name}@${version}`;
  }

  /** Parsed refs as callers spell them: the request path parses and builds keys once per spelling. */
  private readonly parsed = new Map<string, ParsedRef>();

  private parse(ref: string): ParsedRef {
    let p = this.parsed.get(ref);
    if (!p) {
      const { name, selector } = parseRef(ref);
      const pinned = /^\d+$/.test(selector);
      p = { name, selector, canonical: `${name}@${selector}`, pinnedKey: pinned ? ModelLoader.key(name, Number(selector)) : undefined };
      // Bounded: refs come from callers; past the bound, start over rather than grow.
      if (this.parsed.size >= 4096) this.parsed.clear();
      this.parsed.set(ref, p);
    }
    return p;
  }

  /** The version a ref serves here, loading it when needed. */
  async acquire(ref: string): Promise<LoadedVersion> {
    const { name, selector, canonical, pinnedKey } = this.parse(ref);
    if (pinnedKey !== undefined) {
      const v = this.versions.get(pinnedKey);
      if (v) return this.touch(v);
    }
    const entry = this.refs.get(canonical);
    if (entry && (selector !== "latest" || Date.now() - entry.resolvedAt < this.o.latestTtlMs)) {
      const v = this.versions.get(ModelLoader.key(name, entry.version));
      if (v) return this.touch(v);
    }
    const generation = this.generation;
    const resolved = await this.resolve(canonical);
    const v = await this.load(resolved);
    // An alias move seen meanwhile may be newer than this resolution: serve it, cache nothing.
    if (generation === this.generation) {
      this.refs.set(canonical, { version: v.version, sha256: v.sha256, resolvedAt: Date.now() });
    }
    return this.touch(v);
  }

  /** A loaded version, without loading anything (OIP model calls). */
  peek(name: string, version?: number): LoadedVersion | undefined {
    if (version !== undefined) return this.versions.get(ModelLoader.key(name, version));
    const e = this.refs.get(`${name}@production`);
    if (e) return this.versions.get(ModelLoader.key(name, e.version));
    let newest: LoadedVersion | undefined;
    for (const v of this.versions.values()) if (v.name === name && (!newest || v.version > newest.version)) newest = v;
    return newest;
  }

  list(): LoadedVersion[] {
    return [...this.versions.values()];
  }

  /** The moving refs (aliases, stages, latest) routed to `v` here; pinned `name@N` refs are not counted. */
  refsOf(v: LoadedVersion): string[] {
    const out: string[] = [];
    for (const [ref, e] of this.refs) if (ref.startsWith(`${v.name}@`) && e.version === v.version && !/@\d+$/.test(ref)) out.push(ref);
    return out;
  }

  servesModel(name: string): boolean {
    for (const ref of this.refs.keys()) if (ref.startsWith(`${name}@`)) return true;
    return false;
  }

  /**
   * An alias moved: if this replica serves it, load and warm the new version first, then
   * point the ref at it in one step. Requests already holding the old version finish on it.
   */
  async aliasMoved(name: string, alias: string, version: number): Promise<void> {
    this.generation++;
    const refs = [`${name}@${alias}`];
    const served = refs.filter((r) => this.refs.has(r));
    if (served.length === 0) return;
    if (version === 0) {
      for (const r of served) this.refs.delete(r);
      return;
    }
    const resolved = await this.resolve(`${name}@${version}`);
    const v = await this.load(resolved);
    this.generation++;
    for (const r of served) this.refs.set(r, { version: v.version, sha256: v.sha256, resolvedAt: Date.now() });
    this.o.logger.info({ model: name, alias, version }, "inference: alias moved, traffic switched");
  }

  private touch(v: LoadedVersion): LoadedVersion {
    v.lastUsed = Date.now();
    return v;
  }

  private async resolve(ref: string): Promise<ResolveModelRefResponse> {
    try {
      return await this.o.registry.resolveModelRef({ modelRef: ref });
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.NotFound) throw new NotFoundError("model ref", ref, e.rawMessage);
      if (e.code === Code.InvalidArgument) throw new ValidationError("model_ref", e.rawMessage);
      if (e.code === Code.DeadlineExceeded) throw e;
      throw new UnavailableError(`registry unreachable while resolving ${ref}: ${e.rawMessage}`);
    }
  }

  async load(r: ResolveModelRefResponse): Promise<LoadedVersion> {
    const version = Number(r.version);
    const key = ModelLoader.key(r.modelName, version);
    const have = this.versions.get(key);
    if (have) return have;
    const failure = this.failed.get(key);
    if (failure) throw new PreconditionError(`${key} failed to load: ${failure}`);
    let p = this.loading.get(key);
    if (!p) {
      p = this.doLoad(r, version).finally(() => this.loading.delete(key));
      this.loading.set(key, p);
    }
    return p;
  }

  private async doLoad(r: ResolveModelRefResponse, version: number): Promise<LoadedVersion> {
    const key = ModelLoader.key(r.modelName, version);
    const inputs: IoSpec[] = [];
    const outputs: IoSpec[] = [];
    const problems: string[] = [];
    for (const t of r.signature?.inputs ?? []) {
      const s = ioSpecOf(t);
      if (typeof s === "string") problems.push(`input ${s}`);
      else inputs.push(s);
    }
    for (const t of r.signature?.outputs ?? []) {
      const s = ioSpecOf(t);
      if (typeof s === "string") problems.push(`output ${s}`);
      else outputs.push(s);
    }
    if (problems.length > 0) {
      this.failed.set(key, problems.join("; "));
      throw new PreconditionError(`${key} cannot be served: ${problems.join("; ")}`);
    }
    const file = await this.fetchArtifact(r.modelName, version, r.artifactSha256);
    const settings = this.o.settings(r.modelName);
    const started = Date.now();
    let pool: SessionPool;
    try {
      pool = await SessionPool.open({
        path: file,
        workers: settings.workers,
        intraOpThreads: settings.intraOpThreads,
        policy: () => this.o.settings(r.modelName),
        observer: this.o.observer(r.modelName, version),
      });
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      this.failed.set(key, msg);
      throw new PreconditionError(`${key} failed to load in ONNX Runtime: ${msg}`);
    }
    const v: LoadedVersion = {
      name: r.modelName,
      version,
      sha256: r.artifactSha256,
      artifactPath: file,
      inputs,
      outputs,
      binding: r.featureBinding,
      pool,
      loadedAt: Date.now(),
      lastUsed: Date.now(),
    };
    const prepared = this.o.prepare?.(v.binding);
    try {
      await warm(v);
    } catch (err) {
      // A model that loads but cannot run (e.g. a Reshape that fails on any input) is refused
      // once and remembered, so a redelivered alias event does not open workers again.
      await pool.close().catch(() => undefined);
      const msg = err instanceof Error ? err.message : String(err);
      this.failed.set(key, `warm-up run failed: ${msg}`);
      throw new PreconditionError(`${key} failed its warm-up run in ONNX Runtime: ${msg}`);
    }
    await prepared;
    this.versions.set(key, v);
    this.o.logger.info({ model: r.modelName, version, load_ms: Date.now() - started, inline_run_us: pool.inlineUs ?? null }, "inference: model version loaded and warmed");
    void this.evict();
    return v;
  }

  /** Unloads least-recently-used versions past the limit, never one a ref points at if avoidable. */
  private async evict(): Promise<void> {
    while (this.versions.size > this.o.maxLoadedVersions) {
      const candidates = [...this.versions.values()].sort((a, b) => a.lastUsed - b.lastUsed);
      const unreferenced = candidates.filter((v) => this.refsOf(v).length === 0);
      const victim = unreferenced[0] ?? candidates[0]!;
      await this.unload(victim.name, victim.version);
    }
  }

  /** Stops routing to the version; it finishes its accepted requests, then its workers end. */
  async unload(name: string, version: number): Promise<boolean> {
    const key = ModelLoader.key(name, version);
    const v = this.versions.get(key);
    if (!v) return false;
    this.versions.delete(key);
    for (const [ref, e] of this.refs) if (ref.startsWith(`${name}@`) && e.version === version) this.refs.delete(ref);
    await v.pool.close();
    this.o.logger.info({ model: name, version }, "inference: model version unloaded");
    return true;
  }

  async close(): Promise<void> {
    await Promise.all([...this.versions.values()].map((v) => this.unload(v.name, v.version)));
  }

  /** The artifact in the local cache (downloaded and verified once; re-verified when reused). */
  private async fetchArtifact(name: string, version: number, sha256: string): Promise<string> {
    const file = path.join(this.o.cacheDir, `${sha256}.onnx`);
    await fs.mkdir(this.o.cacheDir, { recursive: true });
    try {
      if ((await hashFile(file)) === sha256) return file;
      await fs.rm(file, { force: true });
    } catch {
      // not cached yet
    }
    const tmp = `${file}.${randomUUID()}.tmp`;
    const hash = createHash("sha256");
    let header: { sha256: string; sizeBytes: bigint } | undefined;
    let size = 0;
    const registry = this.o.registry;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for await (const m of registry.downloadArtifact({ modelRef: `${name}@${version}`, offset: 0n })) {
        if (m.part.case === "header") header = m.part.value;
        else if (m.part.case === "chunk") {
          hash.update(m.part.value);
          size += m.part.value.length;
          yield m.part.value;
        }
      }
    }
    try {
      await pipeline(chunks(), createWriteStream(tmp));
      const got = hash.digest("hex");
      if (got !== sha256 || (header && header.sha256 !== sha256) || (header && Number(header.sizeBytes) !== size)) {
        throw new DataLossError(`artifact of ${name}@${version} does not match its digest (got ${got}, registry says ${sha256})`);
      }
      await fs.rename(tmp, file);
      return file;
    } catch (err) {
      await fs.rm(tmp, { force: true });
      if (err instanceof DataLossError) throw err;
      const e = ConnectError.from(err);
      throw new UnavailableError(`downloading ${name}@${version} from the registry failed: ${e.rawMessage}`);
    }
  }
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return hash.digest("hex");
}

/** One zero row through every worker, so the first real request pays no first-run cost. */
async function warm(v: LoadedVersion): Promise<void> {
  const feeds: Record<string, DenseTensor> = {};
  for (const i of v.inputs) {
    const dims = i.dims.map((d) => (d < 0 ? 1 : d));
    feeds[i.name] = { type: i.type, dims, data: allocate(i.type, dims.reduce((a, b) => a * b, 1)) };
  }
  const rows = feeds[v.inputs[0]?.name ?? ""]?.dims[0] ?? 1;
  // Queued at once, so each idle worker takes one (batching merges them only when they queue behind each other).
  await Promise.all(Array.from({ length: 2 }, () => v.pool.run(feeds, rows, Date.now() + 60_000, undefined, false)));
  // A small model may also run on this thread; if that cannot be set up, the workers serve it.
  await v.pool.calibrateInline(feeds).catch(() => undefined);
}
