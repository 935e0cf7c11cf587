// Resolved model refs (version, feature binding, input names), cached so the request path
// never calls the registry: refreshed when the registry moves an alias (AliasMoved on NATS)
// and, as a safety net for a missed event, every `refreshMs`.
//
// An alias that moves to another version is switched only once inference has that version
// loaded (LoadModel answered OK), retried with back-off: right after a promotion inference
// may still be loading it (or its own registry channel may still be reconnecting after an
// outage) and would answer UNAVAILABLE, while the version the alias pointed at is loaded and
// serving. After SWITCH_MAX_WAIT_MS the switch happens anyway (the registry is the truth;
// an inference that loads on first Score still works). The replaced resolution is kept for
// PREVIOUS_KEEP_MS so the request path can answer from it when the new version's Score
// fails with UNAVAILABLE / FAILED_PRECONDITION / NOT_FOUND (another inference replica that
// has not loaded it yet, an eviction): see Server.score.

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

/** Longest an alias switch waits for inference to report the new version loaded. */
const SWITCH_MAX_WAIT_MS = 60_000;
/** First and largest pause between LoadModel attempts while a switch waits. */
const SWITCH_RETRY_MIN_MS = 200;
const SWITCH_RETRY_MAX_MS = 3_000;
/** How long the resolution an alias switch replaced stays available as the request path's fallback. */
const PREVIOUS_KEEP_MS = 120_000;
/** After the new version failed, requests go straight to the previous one for this long. */
const FAILED_BACKOFF_MS = 500;

/** The version an alias pointed at before its last switch (still loaded in inference). */
interface Previous {
  readonly resolved: ResolvedRef;
  /** Replaced at (ms epoch); dropped PREVIOUS_KEEP_MS later. */
  readonly since: number;
  /** The new version failed at (ms epoch): skip it until FAILED_BACKOFF_MS later. */
  failedAt: number;
}

const isVersionRef = (ref: string) => /@\d+$/.test(ref);

export class RefCache {
  private readonly cache = new Map<string, ResolvedRef>();
  private readonly inflight = new Map<string, Promise<ResolvedRef>>();
  private readonly loaded = new Set<string>();
  /** Alias ref -> the new resolution waiting for inference to load it (the cache still serves the old one). */
  private readonly pending = new Map<string, ResolvedRef>();
  /** Alias ref -> what its last switch replaced (bounded: one per cached alias ref, pruned by age). */
  private readonly previous = new Map<string, Previous>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
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
    this.stopped = true;
    clearInterval(this.timer);
  }

  /**
   * The resolution `ref` served before its last switch, while it is recent (request path: the
   * fallback when the new version is not ready in inference). Undefined in steady state.
   */
  previousOf(ref: string): ResolvedRef | undefined {
    const p = this.previous.get(ref);
    if (!p) return undefined;
    if (Date.now() - p.since > PREVIOUS_KEEP_MS) {
      this.previous.delete(ref);
      return undefined;
    }
    return p.resolved;
  }

  /** True while the new version of `ref` is in its back-off after a failure (requests go to the previous one). */
  inBackoff(ref: string): boolean {
    const p = this.previous.get(ref);
    return p !== undefined && Date.now() - p.failedAt < FAILED_BACKOFF_MS;
  }

  /** The new version of `ref` failed as not ready: start a short back-off. */
  noteNotReady(ref: string): void {
    const p = this.previous.get(ref);
    if (p) p.failedAt = Date.now();
  }

  /** The new version of `ref` answered: no back-off. */
  noteReady(ref: string): void {
    const p = this.previous.get(ref);
    if (p && p.failedAt) p.failedAt = 0;
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
        if (prev && prev.version !== resolved.version && !isVersionRef(ref)) {
          // An alias moved: keep serving the loaded version until inference has the new one.
          if (this.pending.get(ref)?.version !== resolved.version) {
            this.pending.set(ref, resolved);
            void this.switchWhenLoaded(ref, resolved);
          }
          return resolved;
        }
        // Moved back to the version still served (or first resolution): nothing waits any more.
        this.pending.delete(ref);
        this.cache.set(ref, resolved);
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

  /** Make `r` what `r.ref` serves (if it is still the alias's newest resolution), remembering the replaced one. */
  private commit(r: ResolvedRef): void {
    const waiting = this.pending.get(r.ref);
    if (waiting && waiting.version !== r.version) return; // superseded by a newer move
    this.pending.delete(r.ref);
    const prev = this.cache.get(r.ref);
    this.cache.set(r.ref, r);
    if (prev && prev.version !== r.version) {
      this.previous.set(r.ref, { resolved: prev, since: Date.now(), failedAt: 0 });
      this.logger.info({ ref: r.ref, from: prev.pinned, to: r.pinned }, "router: alias switched to a version inference has loaded");
      this.onChange(r.ref);
    }
  }

  /** LoadModel until inference has `r` (or SWITCH_MAX_WAIT_MS passed), then switch `r.ref` to it. */
  private async switchWhenLoaded(ref: string, r: ResolvedRef): Promise<void> {
    const t0 = Date.now();
    let pause = SWITCH_RETRY_MIN_MS;
    for (;;) {
      if (this.stopped || this.pending.get(ref) !== r) return;
      const left = SWITCH_MAX_WAIT_MS - (Date.now() - t0);
      if (left <= 0) {
        this.logger.warn({ ref, model: r.pinned, waitedMs: Date.now() - t0 }, "router: inference never reported the new version loaded; switching anyway (the previous version answers while it fails)");
        break;
      }
      try {
        await this.inference.loadModel({ modelRef: r.pinned }, { timeoutMs: Math.min(left, 30_000) });
        this.loaded.add(r.pinned);
        break;
      } catch (err) {
        this.logger.warn({ err: ConnectError.from(err).rawMessage, model: r.pinned, ref }, "router: new alias version not loaded in inference yet; the previous version keeps serving");
      }
      await new Promise((res) => setTimeout(res, Math.min(pause, Math.max(1, SWITCH_MAX_WAIT_MS - (Date.now() - t0)))).unref());
      pause = Math.min(SWITCH_RETRY_MAX_MS, pause * 2);
    }
    if (!this.stopped && this.pending.get(ref) === r) this.commit(r);
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
      // Loaded: an alias waiting to switch to it may switch now.
      const waiting = this.pending.get(r.ref);
      if (waiting && waiting.version === r.version) this.commit(waiting);
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
    // A pending switch loads it (with retries) itself.
    if (this.loaded.has(r.pinned) || this.pending.get(r.ref)?.version === r.version) return;
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
    const now = Date.now();
    for (const [ref, p] of this.previous) if (now - p.since > PREVIOUS_KEEP_MS) this.previous.delete(ref);
    for (const ref of [...this.cache.keys()]) {
      // Version refs never move.
      if (isVersionRef(ref)) continue;
      await this.resolve(ref).catch(() => undefined);
    }
  }
}
