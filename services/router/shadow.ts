// Shadow traffic: after the caller has its answer, each sampled request is scored again by
// the shadow versions with the same feature values, and the shadow's score is compared with
// production's (agreement, score differences, PSI). Bounded in-flight work: beyond the
// limit mirrors are dropped and counted, never queued behind live traffic.

import type { Client } from "@connectrpc/connect";
import { ConnectError } from "@connectrpc/connect";
import type { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import type { Row } from "../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import type { PostProcessing } from "../../gen/mlmesh/router/v1/router_resources_pb.js";
import type { Logger } from "../../lib/logger.js";
import type { RouterMetrics } from "./metrics.js";
import { calibrate, rawScore } from "./postprocess.js";
import type { RefCache, ResolvedRef } from "./refs.js";
import { quantile, scorePsi } from "./window.js";

/** Mirror outcomes kept per shadow (about a day of moderate traffic); older ones fall off. */
const KEEP = 50_000;
const DAY_MS = 24 * 3600 * 1000;

type Outcome = "compared" | "error" | "dropped";

interface MirrorRecord {
  readonly time: number;
  readonly outcome: Outcome;
  readonly shadowScore: number;
  readonly productionScore: number;
  readonly agree: boolean;
  readonly latencyMs: number;
}

/** The statistics GetShadowStats reports, over one window. */
export interface ShadowSummary {
  readonly mirrored: number;
  readonly compared: number;
  readonly errors: number;
  readonly dropped: number;
  readonly agreementRate: number;
  readonly meanDiff: number;
  readonly meanAbsDiff: number;
  readonly maxAbsDiff: number;
  readonly psi: number;
  readonly p99LatencyMs: number;
  readonly firstTime: number;
}

/** One shadow's mirror outcomes, time-stamped in a ring so any window up to a day can be summarised. */
export class ShadowAccumulator {
  model = "";
  version = 0n;
  agree = 0;
  compared = 0;
  private readonly ring: MirrorRecord[] = [];
  private next = 0;

  add(r: MirrorRecord): void {
    if (r.outcome === "compared") {
      this.compared++;
      if (r.agree) this.agree++;
    }
    if (this.ring.length < KEEP) this.ring.push(r);
    else {
      this.ring[this.next] = r;
      this.next = (this.next + 1) % KEEP;
    }
  }

  summary(sinceMs: number): ShadowSummary {
    const from = Math.max(sinceMs, Date.now() - DAY_MS);
    let mirrored = 0;
    let errors = 0;
    let dropped = 0;
    let agree = 0;
    let sumDiff = 0;
    let sumAbs = 0;
    let maxAbs = 0;
    let first = Number.POSITIVE_INFINITY;
    const shadow: number[] = [];
    const prod: number[] = [];
    const lat: number[] = [];
    for (const r of this.ring) {
      if (r.time < from) continue;
      mirrored++;
      first = Math.min(first, r.time);
      if (r.outcome === "error") errors++;
      else if (r.outcome === "dropped") dropped++;
      else {
        const d = r.shadowScore - r.productionScore;
        if (r.agree) agree++;
        sumDiff += d;
        sumAbs += Math.abs(d);
        maxAbs = Math.max(maxAbs, Math.abs(d));
        shadow.push(r.shadowScore);
        prod.push(r.productionScore);
        lat.push(r.latencyMs);
      }
    }
    const n = shadow.length;
    const psi = scorePsi(prod, shadow);
    const p99 = quantile(lat, 0.99);
    return {
      mirrored,
      compared: n,
      errors,
      dropped,
      agreementRate: n ? agree / n : 0,
      meanDiff: n ? sumDiff / n : 0,
      meanAbsDiff: n ? sumAbs / n : 0,
      maxAbsDiff: maxAbs,
      psi: Number.isFinite(psi) ? psi : 0,
      p99LatencyMs: Number.isFinite(p99) ? p99 : 0,
      firstTime: Number.isFinite(first) ? first : from,
    };
  }
}

export interface MirrorJob {
  readonly endpoint: string;
  readonly shadows: readonly string[];
  readonly model: string;
  /** Feature ref -> value the production version saw. */
  readonly values: ReadonlyMap<string, import("../../gen/mlmesh/types/v1/types_pb.js").Value>;
  readonly entity: Row["entity"];
  readonly productionScore: number;
  readonly post: PostProcessing | undefined;
  readonly tolerance: number;
  readonly requestId: string;
  readonly buildRow: (r: ResolvedRef, values: ReadonlyMap<string, import("../../gen/mlmesh/types/v1/types_pb.js").Value>, entity: Row["entity"]) => Row;
}

export class ShadowMirror {
  /** endpoint -> shadow ref -> stats. */
  readonly stats = new Map<string, Map<string, ShadowAccumulator>>();
  private inFlight = 0;

  constructor(
    private readonly inference: Client<typeof InferenceService>,
    private readonly refs: RefCache,
    private readonly metrics: RouterMetrics,
    private readonly logger: Logger,
    private readonly maxInFlight: number,
    private readonly timeoutMs: number,
  ) {}

  accumulator(endpoint: string, ref: string): ShadowAccumulator {
    let m = this.stats.get(endpoint);
    if (!m) this.stats.set(endpoint, (m = new Map()));
    let a = m.get(ref);
    if (!a) m.set(ref, (a = new ShadowAccumulator()));
    return a;
  }

  /** Schedule the mirror after the current response has been written (next macrotask). */
  schedule(job: MirrorJob): void {
    setImmediate(() => {
      for (const ref of job.shadows) void this.mirrorOne(job, ref);
    });
  }

  private async mirrorOne(job: MirrorJob, ref: string): Promise<void> {
    const acc = this.accumulator(job.endpoint, ref);
    const now = Date.now();
    if (this.inFlight >= this.maxInFlight) {
      acc.add({ time: now, outcome: "dropped", shadowScore: 0, productionScore: job.productionScore, agree: false, latencyMs: 0 });
      this.metrics.shadowRequests.inc({ endpoint: job.endpoint, shadow: ref, outcome: "dropped" });
      return;
    }
    this.inFlight++;
    const t0 = performance.now();
    try {
      const resolved = await this.refs.get(ref);
      acc.model = resolved.model;
      acc.version = resolved.version;
      const row = job.buildRow(resolved, job.values, job.entity);
      const res = await this.inference.score(
        { modelRef: resolved.pinned, inputs: { case: "rows", value: { rows: [row] } }, requestId: `${job.requestId}:shadow:${ref}`, servedAs: "shadow", endpoint: job.endpoint },
        { timeoutMs: this.timeoutMs },
      );
      const latency = performance.now() - t0;
      const s = calibrate(rawScore(res.outputs[0]!, job.post), job.post?.calibration);
      const diff = s - job.productionScore;
      const thr = job.post?.threshold;
      const agree = thr !== undefined ? s >= thr === job.productionScore >= thr : Math.abs(diff) <= job.tolerance;
      acc.add({ time: now, outcome: "compared", shadowScore: s, productionScore: job.productionScore, agree, latencyMs: latency });
      this.metrics.shadowRequests.inc({ endpoint: job.endpoint, shadow: ref, outcome: agree ? "agree" : "disagree" });
      this.metrics.shadowAgreement.set({ endpoint: job.endpoint, shadow: ref }, acc.agree / acc.compared);
      this.metrics.shadowAbsDiff.observe({ endpoint: job.endpoint, shadow: ref }, Math.abs(diff));
    } catch (err) {
      acc.add({ time: now, outcome: "error", shadowScore: 0, productionScore: job.productionScore, agree: false, latencyMs: performance.now() - t0 });
      this.metrics.shadowRequests.inc({ endpoint: job.endpoint, shadow: ref, outcome: "error" });
      this.logger.debug({ err: ConnectError.from(err).rawMessage, shadow: ref }, "router: shadow scoring failed");
    } finally {
      this.inFlight--;
    }
  }
}
