// Resolved model refs (version, feature binding, input names), cached so the request path
// never calls the registry: refreshed when the registry moves an alias (AliasMoved on NATS)
// and, as a safety net for a missed event, every `refreshMs`.

import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { FeatureBinding } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import type { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { PreconditionError, UnavailableError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";

export interface ResolvedRef {
  readonly ref: string;
  readonly model: string;
  readonly version: bigint;
  /** `model@version`: what Score is called with, so an alias move mid-request changes nothing. */
  readonly pinned: string;
  readonly binding: FeatureBinding | undefined;
  /** Graph input names (for a version without binding, rows carry one vector per input). */
  readonly inputs: readonly string[];
  readonly resolvedAt: number;
}

export class RefCache {
  private readonly cache = new Map<string, ResolvedRef>();
  private readonly inflight = new Map<string, Promise<ResolvedRef>>();
  private readonly loaded = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  /** Called after a ref re-resolved to another version (the service rebuilds its views). */
  onChange: (ref: string) => void = () => undefined;

  constructor(
    private readonly registry: Client<typeof RegistryService>,
    private readonly inference: Client<typeof InferenceService>,
    private readonly logger: Logger,
    private readonly refreshMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.refreshAll(), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  peek(ref: string): ResolvedRef | undefined {
    return this.cache.get(ref);
  }

  /** The cached resolution, or one registry call (shared by concurrent callers) on a miss. */
  get(ref: string): Promise<ResolvedRef> | ResolvedRef {
    return this.cache.get(ref) ?? this.resolve(ref);
  }

  /** Resolve now (and cache). FAILED_PRECONDITION when the ref names nothing. */
  resolve(ref: string): Promise<ResolvedRef> {
    let p = this.inflight.get(ref);
    if (p) return p;
    p = (async () => {
      try {
        const r = await this.registry.resolveModelRef({ modelRef: ref }, { timeoutMs: 5000 });
        const resolved: ResolvedRef = {
          ref,
          model: r.modelName,
          version: r.version,
          pinned: `${r.modelName}@${r.version}`,
          binding: r.featureBinding && r.featureBinding.inputs.length > 0 ? r.featureBinding : undefined,
          inputs: r.signature?.inputs.map((i) => i.name) ?? [],
          resolvedAt: Date.now(),
        };
        const prev = this.cache.get(ref);
        this.cache.set(ref, resolved);
        if (prev && prev.version !== resolved.version) this.onChange(ref);
        return resolved;
      } catch (err) {
        const ce = ConnectError.from(err);
        if (ce.code === Code.NotFound || ce.code === Code.InvalidArgument) throw new PreconditionError(`model ref ${ref} cannot be resolved: ${ce.rawMessage}`);
        throw new UnavailableError(`the registry could not resolve ${ref}: ${ce.rawMessage}`);
      } finally {
        this.inflight.delete(ref);
      }
    })();
    this.inflight.set(ref, p);
    return p;
  }

  /**
   * Load a version in inference before a plan sends it traffic. A version inference refuses
   * is FAILED_PRECONDITION; an unreachable inference only delays the load to the first request.
   */
  async load(r: ResolvedRef): Promise<void> {
    // Always asked (idempotent in inference): it may have evicted or restarted since.
    try {
      await this.inference.loadModel({ modelRef: r.pinned }, { timeoutMs: 30_000 });
      this.loaded.add(r.pinned);
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.Unavailable || ce.code === Code.DeadlineExceeded) {
        this.logger.warn({ err: ce.rawMessage, model: r.pinned }, "router: inference unreachable; the version loads on its first request");
        return;
      }
      throw new PreconditionError(`${r.pinned} cannot be loaded in inference: ${ce.rawMessage}`);
    }
  }

  /** Keep a version loaded in inference so switching to it never waits for a load (best effort). */
  ensureLoaded(r: ResolvedRef): void {
    if (this.loaded.has(r.pinned)) return;
    this.loaded.add(r.pinned);
    this.inference.loadModel({ modelRef: r.pinned }, { timeoutMs: 30_000 }).catch((err: unknown) => {
      this.loaded.delete(r.pinned);
      this.logger.warn({ err: ConnectError.from(err).rawMessage, model: r.pinned }, "router: preloading a plan version failed");
    });
  }

  /** Release a version no plan serves any more (best effort; inference keeps one an alias still routes to). */
  release(r: ResolvedRef, reason: string): void {
    this.loaded.delete(r.pinned);
    this.inference.unloadModel({ modelName: r.model, version: r.version, reason }, { timeoutMs: 10_000 }).catch((err: unknown) => {
      this.logger.debug({ err: ConnectError.from(err).rawMessage, model: r.pinned }, "router: version not unloaded");
    });
  }

  /** An alias of `model` moved: re-resolve every cached ref of that model. */
  async aliasMoved(model: string): Promise<void> {
    const refs = [...this.cache.values()].filter((r) => r.model === model || r.ref.startsWith(`${model}@`)).map((r) => r.ref);
    await Promise.all(refs.map((ref) => this.resolve(ref).then((r) => this.ensureLoaded(r)).catch((err: unknown) => this.logger.warn({ err, ref }, "router: re-resolving after an alias move failed"))));
  }

  private async refreshAll(): Promise<void> {
    for (const ref of [...this.cache.keys()]) {
      // Version refs never move.
      if (/@\d+$/.test(ref)) continue;
      await this.resolve(ref).catch(() => undefined);
    }
  }
}
