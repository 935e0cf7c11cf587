// The live monitor: per model version, drift windows fed by the prediction log and a rolling
// quality window fed by delayed labels joined to logged predictions; evaluated on a timer
// into gauges, states and (on state change only) DriftAlert / QualityAlert events.

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  DriftAlertSchema,
  QualityAlertSchema,
  type PredictionLogBatch,
} from "../../../gen/mlmesh/events/v1/inference_events_pb.js";
import {
  DriftState,
  QualityMetric,
  type DriftPolicy,
  type FeatureDriftSchema,
  type QualityReportSchema,
} from "../../../gen/mlmesh/inference/v1/inference_resources_pb.js";
import type { RegistryService } from "../../../gen/mlmesh/registry/v1/registry_service_pb.js";
import type { FeatureBinding, ReferenceDistributions } from "../../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { MonitoringConfig } from "../../../lib/config-monitoring.js";
import { evaluateAlert, INITIAL_ALERT_STATE, type AlertLevel, type AlertPolicy, type AlertState } from "../../../lib/drift/alerts.js";
import { RollingQuality, type QualitySnapshot } from "../../../lib/drift/quality.js";
import { UnavailableError } from "../../../lib/errors.js";
import type { EventBus } from "../../../lib/events.js";
import type { Logger } from "../../../lib/logger.js";
import type { MonitoredBatch } from "./log-decoder.js";
import type { MonitoringMetrics } from "./metrics.js";
import { effectivePolicy, psiAlertPolicy, QUALITY_METRIC_NAMES, qualityAlertPolicy, type MonitoringStore } from "./policy.js";
import { driftOf, VersionWindows, type FeatureDriftValues } from "./windows.js";

export const driftAlertSubject = (model: string) => `mlmesh.inference.drift_alert.${model}`;
export const qualityAlertSubject = (model: string) => `mlmesh.inference.quality_alert.${model}`;

const STATE_OF: Record<AlertLevel, DriftState> = { OK: DriftState.OK, WARN: DriftState.WARN, ALERT: DriftState.ALERT };
const GAUGE_OF: Record<AlertLevel, number> = { OK: 0, WARN: 1, ALERT: 2 };
const RANK: Record<DriftState, number> = {
  [DriftState.UNSPECIFIED]: -1,
  [DriftState.INSUFFICIENT_DATA]: 0,
  [DriftState.OK]: 1,
  [DriftState.WARN]: 2,
  [DriftState.ALERT]: 3,
};

/** One watched value's alert machine plus how many transitions it had (msg ids, see publish). */
interface Watch {
  state: AlertState;
  transitions: number;
  baseline: number | null;
}

/** Rolling quality of one version, with the prediction time of each labelled entry (window bounds). */
class QualityWindow {
  readonly rolling: RollingQuality;
  private readonly times: Float64Array;
  private head = 0;
  private length = 0;
  dirty = false;
  lastSnapshot: QualitySnapshot | undefined;

  constructor(readonly capacity: number) {
    this.rolling = new RollingQuality({ capacity });
    this.times = new Float64Array(capacity);
  }

  add(probability: number, label: 0 | 1, timeMs: number): void {
    this.rolling.add(probability, label);
    const slot = (this.head + this.length) % this.capacity;
    this.times[slot] = timeMs;
    if (this.length === this.capacity) this.head = (this.head + 1) % this.capacity;
    else this.length++;
    this.dirty = true;
  }

  bounds(): { start: number; end: number } | undefined {
    if (this.length === 0) return undefined;
    let start = Infinity;
    let end = -Infinity;
    for (let i = 0; i < this.length; i++) {
      const t = this.times[(this.head + i) % this.capacity]!;
      if (t < start) start = t;
      if (t > end) end = t;
    }
    return { start, end };
  }
}

interface VersionState {
  readonly model: string;
  readonly version: number;
  windows: VersionWindows | undefined;
  /** When a missing reference is asked for again (0: have it or never asked). */
  referenceRetryAt: number;
  referenceLoading: Promise<void> | undefined;
  /** The last attempt failed because the registry did not answer (not: has no reference). */
  referenceUnavailable: boolean;
  /** Last evaluation per feature (GetDrift states). */
  readonly drift: Map<string, Watch>;
  readonly quality: Map<string, Watch>;
  qualityWindow: QualityWindow | undefined;
  /** Worst quality level at the last evaluation, or undefined while insufficient. */
  qualityLevel: AlertLevel | undefined;
  restored: boolean;
}

interface IndexedPrediction {
  readonly model: string;
  readonly version: number;
  readonly score: number;
  readonly timeMs: number;
}

/**
 * The predictions logged under one request id: usually one, more when the same request was
 * also scored by a shadow or mirrored version, which then gets the same label (so a
 * shadow's quality is measured too). `label` once an outcome arrived.
 */
interface IndexEntry {
  label: 0 | 1 | undefined;
  readonly predictions: IndexedPrediction[];
}

export interface MonitorDeps {
  readonly config: MonitoringConfig;
  readonly registry: Client<typeof RegistryService>;
  readonly bus: EventBus;
  readonly store: MonitoringStore;
  readonly metrics: MonitoringMetrics;
  readonly logger: Logger;
}

const key = (model: string, version: number) => `${model}@${version}`;

export class Monitor {
  /** Insertion order is recency: a touched version is moved to the end; the first is evicted. */
  private readonly versions = new Map<string, VersionState>();
  private readonly predictions = new Map<string, IndexEntry>();
  private readonly pending = new Map<string, { label: 0 | 1 }>();
  private readonly policies = new Map<string, { policy: DriftPolicy; psi: AlertPolicy }>();

  constructor(private readonly d: MonitorDeps) {}

  // ---- policies --------------------------------------------------------------------------

  policyOf(model: string): { policy: DriftPolicy; psi: AlertPolicy } {
    let p = this.policies.get(model);
    if (!p) {
      const policy = effectivePolicy(this.d.store.policy(model), this.d.config);
      p = { policy, psi: psiAlertPolicy(policy) };
      this.policies.set(model, p);
    }
    return p;
  }

  setPolicy(model: string, requested: DriftPolicy | undefined): DriftPolicy {
    const policy = effectivePolicy(requested, this.d.config);
    const psi = psiAlertPolicy(policy);
    this.d.store.setPolicy(model, policy);
    this.policies.set(model, { policy, psi });
    // Windows re-evaluate under the new thresholds at the next tick.
    for (const st of this.versions.values()) {
      if (st.model !== model) continue;
      if (st.windows) st.windows.dirty = true;
      if (st.qualityWindow && st.qualityWindow.capacity !== Number(policy.qualityWindowCount)) st.qualityWindow = undefined;
      else if (st.qualityWindow) st.qualityWindow.dirty = true;
    }
    return policy;
  }

  // ---- version state and references ------------------------------------------------------

  private stateOf(model: string, version: number): VersionState {
    const k = key(model, version);
    let st = this.versions.get(k);
    if (st) {
      this.versions.delete(k);
      this.versions.set(k, st);
      return st;
    }
    st = { model, version, windows: undefined, referenceRetryAt: 0, referenceLoading: undefined, referenceUnavailable: false, drift: new Map(), quality: new Map(), qualityWindow: undefined, qualityLevel: undefined, restored: false };
    this.versions.set(k, st);
    while (this.versions.size > this.d.config.maxVersions) {
      const oldest = this.versions.values().next().value as VersionState;
      this.forget(oldest);
    }
    return st;
  }

  /** Drops a version's windows and its gauges (LRU past MLMESH_MONITORING_MAX_VERSIONS). */
  private forget(st: VersionState): void {
    this.versions.delete(key(st.model, st.version));
    const m = this.d.metrics;
    const version = String(st.version);
    for (const w of st.windows?.all() ?? []) {
      for (const metric of ["psi", "kl", "js", "hellinger", "wasserstein", "chi_square_p_value"]) m.driftValue.remove({ model: st.model, version, feature: w.feature, metric });
      m.driftState.remove({ model: st.model, version, feature: w.feature });
      m.driftWindow.remove({ model: st.model, version, feature: w.feature });
    }
    for (const name of Object.values(QUALITY_METRIC_NAMES)) {
      m.qualityValue.remove({ model: st.model, version, metric: name });
      m.qualityBaseline.remove({ model: st.model, version, metric: name });
    }
    m.qualityState.remove({ model: st.model, version });
    m.qualityLabelled.remove({ model: st.model, version });
  }

  /** Restores persisted alert states once per version (so a restart does not alert again). */
  private restore(st: VersionState): void {
    if (st.restored) return;
    st.restored = true;
    for (const [k, s] of this.d.store.alertStates(st.model, st.version)) {
      const [kind, subject] = [k.slice(0, k.indexOf("|")), k.slice(k.indexOf("|") + 1)];
      const watch: Watch = { state: { level: s.level, clearStreak: s.clearStreak, evaluations: s.evaluations }, transitions: s.transitions, baseline: s.baseline };
      (kind === "drift" ? st.drift : st.quality).set(subject, watch);
    }
  }

  /**
   * Fetches the version's reference distributions and binding from the registry, once
   * (a missing reference is asked for again after MLMESH_MONITORING_REFERENCE_RETRY).
   * A registry that cannot answer is asked again within 2 s; meanwhile the version has no windows.
   */
  async ensureReference(st: VersionState): Promise<void> {
    if (st.windows || Date.now() < st.referenceRetryAt) return;
    if (!st.referenceLoading) {
      st.referenceLoading = this.loadReference(st).finally(() => (st.referenceLoading = undefined));
    }
    await st.referenceLoading;
  }

  private async loadReference(st: VersionState): Promise<void> {
    const modelRef = key(st.model, st.version);
    let reference: ReferenceDistributions | undefined;
    let binding: FeatureBinding | undefined;
    st.referenceUnavailable = false;
    try {
      const [r, v] = await Promise.all([
        this.d.registry.getReferenceDistributions({ modelRef }, { timeoutMs: 5000 }),
        this.d.registry.getModelVersion({ modelRef }, { timeoutMs: 5000 }),
      ]);
      reference = r.referenceDistributions;
      binding = v.modelVersion?.featureBinding;
    } catch (err) {
      const code = ConnectError.from(err).code;
      if (code === Code.NotFound || code === Code.FailedPrecondition || code === Code.InvalidArgument) {
        st.referenceRetryAt = Date.now() + this.d.config.referenceRetryMs;
        this.d.logger.debug({ model: st.model, version: st.version }, "monitoring: no reference distributions; drift not computed for this version");
        return;
      }
      // Registry unreachable: count this traffic for labels now and drift once it answers,
      // rather than stall the whole log (redelivery would hold back every model's records).
      st.referenceRetryAt = Date.now() + Math.min(this.d.config.referenceRetryMs, 2000);
      st.referenceUnavailable = true;
      this.d.logger.warn({ err, model: st.model, version: st.version }, "monitoring: registry unavailable; drift of this version waits for its reference");
      return;
    }
    if (!reference) {
      st.referenceRetryAt = Date.now() + this.d.config.referenceRetryMs;
      return;
    }
    st.windows = new VersionWindows(st.model, st.version, reference, binding, this.d.config.windowCount);
    st.referenceRetryAt = 0;
  }

  /** The version's state with its reference, for GetDrift (loads it when not seen yet). */
  async versionForQuery(model: string, version: number): Promise<VersionState> {
    const st = this.stateOf(model, version);
    this.restore(st);
    if (!st.windows) {
      st.referenceRetryAt = 0;
      await this.ensureReference(st);
      if (!st.windows && st.referenceUnavailable) throw new UnavailableError(`registry: reference distributions of ${key(model, version)} could not be read; try again`);
    }
    return st;
  }

  // ---- the prediction log ----------------------------------------------------------------

  /** Counts one PredictionLogBatch (every replica's traffic) into windows and the prediction index. */
  async onBatch(batch: MonitoredBatch): Promise<void> {
    const now = Date.now();
    // References first (async), then counting (sync), so a batch is counted all at once.
    const seen = new Map<string, VersionState>();
    for (const r of batch.records) {
      const k = key(r.modelName, r.version);
      if (seen.has(k)) continue;
      const st = this.stateOf(r.modelName, r.version);
      this.restore(st);
      seen.set(k, st);
      await this.ensureReference(st);
    }
    let newest = 0;
    for (const r of batch.records) {
      const version = r.version;
      const st = seen.get(key(r.modelName, version))!;
      const t = r.timeMs ?? now;
      if (t > newest) newest = t;
      st.windows?.add(r, t);
      this.d.metrics.records.inc({ model: r.modelName });
      const id = r.rowIndex === 0 ? r.requestId : `${r.requestId}#${r.rowIndex}`;
      if (id === "" || id === `#${r.rowIndex}`) continue;
      const p: IndexedPrediction = { model: r.modelName, version, score: r.score ?? Number.NaN, timeMs: t };
      const entry = this.indexPrediction(id, p);
      const waiting = this.pending.get(id);
      if (waiting) {
        this.pending.delete(id);
        entry.label = waiting.label;
      }
      if (entry.label !== undefined) this.join(p, entry.label);
    }
    if (newest > 0) this.d.metrics.lag.set(Math.max(0, (now - newest) / 1000));
  }

  private indexPrediction(id: string, p: IndexedPrediction): IndexEntry {
    let entry = this.predictions.get(id);
    if (entry) {
      // The same version logged again under this id (a retried request): keep the newest.
      const same = entry.predictions.findIndex((q) => q.model === p.model && q.version === p.version);
      if (same >= 0) entry.predictions.splice(same, 1);
      entry.predictions.push(p);
      return entry;
    }
    entry = { label: undefined, predictions: [p] };
    this.predictions.set(id, entry);
    if (this.predictions.size > this.d.config.predictionIndexSize) {
      this.predictions.delete(this.predictions.keys().next().value as string);
    }
    return entry;
  }

  // ---- outcomes (delayed labels) ----------------------------------------------------------

  private join(p: IndexedPrediction, label: 0 | 1): "joined" | "not_a_probability" {
    if (!(p.score >= 0 && p.score <= 1)) {
      this.d.metrics.outcomes.inc({ result: "not_a_probability" });
      return "not_a_probability";
    }
    const st = this.stateOf(p.model, p.version);
    this.restore(st);
    const cap = Number(this.policyOf(p.model).policy.qualityWindowCount);
    if (!st.qualityWindow) st.qualityWindow = new QualityWindow(cap);
    st.qualityWindow.add(p.score, label, p.timeMs);
    this.d.metrics.outcomes.inc({ result: "joined" });
    return "joined";
  }

  /** Joins validated outcomes to logged predictions; the rest wait for their prediction. */
  recordOutcomes(outcomes: ReadonlyArray<{ requestId: string; label: 0 | 1 }>): { joined: number; pending: number } {
    let joined = 0;
    let pending = 0;
    for (const o of outcomes) {
      const entry = this.predictions.get(o.requestId);
      if (entry) {
        if (entry.label !== undefined) {
          this.d.metrics.outcomes.inc({ result: "duplicate" });
          continue;
        }
        entry.label = o.label;
        let any = false;
        for (const p of entry.predictions) if (this.join(p, o.label) === "joined") any = true;
        if (any) joined++;
        continue;
      }
      if (this.d.config.pendingOutcomes === 0) {
        this.d.metrics.outcomes.inc({ result: "dropped" });
        continue;
      }
      this.pending.delete(o.requestId);
      this.pending.set(o.requestId, { label: o.label });
      if (this.pending.size > this.d.config.pendingOutcomes) {
        this.pending.delete(this.pending.keys().next().value as string);
        this.d.metrics.outcomes.inc({ result: "dropped" });
      }
      this.d.metrics.outcomes.inc({ result: "pending" });
      pending++;
    }
    return { joined, pending };
  }

  // ---- evaluation ------------------------------------------------------------------------

  /** One tick: expire, evaluate what changed, publish transitions. */
  evaluate(now = Date.now()): void {
    for (const st of this.versions.values()) {
      const { policy, psi } = this.policyOf(st.model);
      if (st.windows) {
        const durationMs = policy.window ? Number(policy.window.seconds) * 1000 + Math.floor(policy.window.nanos / 1e6) : this.d.config.windowMs;
        st.windows.expire(now - durationMs);
        if (st.windows.dirty) {
          st.windows.dirty = false;
          this.evaluateDrift(st, policy, psi);
        }
      }
      if (st.qualityWindow?.dirty) {
        st.qualityWindow.dirty = false;
        this.evaluateQuality(st, policy);
      }
    }
  }

  private watch(map: Map<string, Watch>, subject: string): Watch {
    let w = map.get(subject);
    if (!w) map.set(subject, (w = { state: INITIAL_ALERT_STATE, transitions: 0, baseline: null }));
    return w;
  }

  private evaluateDrift(st: VersionState, policy: DriftPolicy, psi: AlertPolicy): void {
    const m = this.d.metrics;
    const version = String(st.version);
    for (const w of st.windows!.all()) {
      const labels = { model: st.model, version, feature: w.feature };
      const v = driftOf(w);
      m.driftWindow.set(labels, w.hist.size);
      if (!v) {
        m.driftState.set(labels, -1);
        continue;
      }
      m.driftValue.set({ ...labels, metric: "psi" }, v.psi);
      m.driftValue.set({ ...labels, metric: "kl" }, v.kl);
      m.driftValue.set({ ...labels, metric: "js" }, v.js);
      m.driftValue.set({ ...labels, metric: "hellinger" }, v.hellinger);
      if (!w.categorical) m.driftValue.set({ ...labels, metric: "wasserstein" }, v.wasserstein);
      else if (!Number.isNaN(v.chiSquareP)) m.driftValue.set({ ...labels, metric: "chi_square_p_value" }, v.chiSquareP);
      const watch = this.watch(st.drift, w.feature);
      const r = evaluateAlert(watch.state, { value: v.psi, windowSize: v.windowCount }, psi);
      watch.state = r.state;
      m.driftState.set(labels, r.skipped === "window-too-small" ? -1 : GAUGE_OF[r.state.level]);
      if (!r.transition) continue;
      watch.transitions++;
      const { from, to } = r.transition;
      const threshold = to === "ALERT" ? policy.psiAlert : to === "WARN" ? policy.psiWarn : from === "ALERT" ? policy.psiAlert : policy.psiWarn;
      this.d.store.saveAlertState(st.model, st.version, "drift", w.feature, { ...watch.state, transitions: watch.transitions, baseline: null });
      m.driftAlerts.inc({ model: st.model, state: to });
      const event = create(DriftAlertSchema, {
        meta: { eventId: crypto.randomUUID(), occurredAt: timestampFromMs(Date.now()), producer: "inference" },
        modelName: st.model,
        version: BigInt(st.version),
        feature: w.feature,
        metric: "psi",
        value: v.psi,
        threshold,
        previousState: STATE_OF[from],
        state: STATE_OF[to],
        windowCount: BigInt(v.windowCount),
      });
      // Deterministic msg id: replicas that see the same traffic make the same transition,
      // and JetStream stores it once (within its dedup window).
      const msgId = `drift_alert:${st.model}@${st.version}:${w.feature}:${watch.transitions}:${to}`;
      this.d.logger.warn({ model: st.model, version: st.version, feature: w.feature, from, to, psi: v.psi }, "drift state changed");
      this.d.bus.publish(driftAlertSubject(st.model), DriftAlertSchema, event, { msgId }).catch((err) => this.d.logger.error({ err, msgId }, "monitoring: DriftAlert not published"));
    }
  }

  private evaluateQuality(st: VersionState, policy: DriftPolicy): void {
    const m = this.d.metrics;
    const version = String(st.version);
    const q = st.qualityWindow!;
    m.qualityLabelled.set({ model: st.model, version }, q.rolling.size);
    if (q.rolling.size === 0) return;
    const snap = q.rolling.snapshot();
    q.lastSnapshot = snap;
    const values: Record<string, number> = {
      auc: snap.auc ?? Number.NaN,
      log_loss: snap.logLoss,
      accuracy: snap.accuracy,
      expected_calibration_error: snap.calibration.ece,
    };
    for (const [metric, value] of Object.entries(values)) if (!Number.isNaN(value)) m.qualityValue.set({ model: st.model, version, metric }, value);
    if (snap.n < Number(policy.minLabelledCount)) {
      st.qualityLevel = undefined;
      m.qualityState.set({ model: st.model, version }, -1);
      return;
    }
    let worst: AlertLevel = "OK";
    for (const t of policy.qualityThresholds) {
      const name = QUALITY_METRIC_NAMES[t.metric as Exclude<QualityMetric, QualityMetric.UNSPECIFIED>];
      const value = values[name]!;
      const watch = this.watch(st.quality, name);
      if (Number.isNaN(value)) continue;
      if (watch.baseline === null) {
        // The baseline is the first window with enough labels: later drops are measured from it.
        watch.baseline = value;
        this.d.store.saveAlertState(st.model, st.version, "quality", name, { ...watch.state, transitions: watch.transitions, baseline: value });
      }
      m.qualityBaseline.set({ model: st.model, version, metric: name }, watch.baseline);
      const r = evaluateAlert(watch.state, { value, windowSize: snap.n }, qualityAlertPolicy(t, policy, watch.baseline));
      watch.state = r.state;
      if (RANK[STATE_OF[r.state.level]] > RANK[STATE_OF[worst]]) worst = r.state.level;
      if (!r.transition) continue;
      watch.transitions++;
      const { from, to } = r.transition;
      this.d.store.saveAlertState(st.model, st.version, "quality", name, { ...watch.state, transitions: watch.transitions, baseline: watch.baseline });
      m.qualityAlerts.inc({ model: st.model, state: to });
      const event = create(QualityAlertSchema, {
        meta: { eventId: crypto.randomUUID(), occurredAt: timestampFromMs(Date.now()), producer: "inference" },
        modelName: st.model,
        version: BigInt(st.version),
        metric: name,
        value,
        baseline: watch.baseline,
        previousState: STATE_OF[from],
        state: STATE_OF[to],
      });
      const msgId = `quality_alert:${st.model}@${st.version}:${name}:${watch.transitions}:${to}`;
      this.d.logger.warn({ model: st.model, version: st.version, metric: name, from, to, value, baseline: watch.baseline }, "quality state changed");
      this.d.bus.publish(qualityAlertSubject(st.model), QualityAlertSchema, event, { msgId }).catch((err) => this.d.logger.error({ err, msgId }, "monitoring: QualityAlert not published"));
    }
    st.qualityLevel = worst;
    m.qualityState.set({ model: st.model, version }, GAUGE_OF[worst]);
  }

  // ---- queries ---------------------------------------------------------------------------

  /** GetDrift's features: fresh statistics, states from the last evaluation. */
  driftReport(st: VersionState): { features: Array<MessageInitShape<typeof FeatureDriftSchema>>; state: DriftState; start: number; end: number } {
    const { psi } = this.policyOf(st.model);
    const features: Array<MessageInitShape<typeof FeatureDriftSchema>> = [];
    let worst = DriftState.UNSPECIFIED;
    for (const w of st.windows?.all() ?? []) {
      const v: FeatureDriftValues | undefined = driftOf(w);
      const n = w.hist.size;
      const level = st.drift.get(w.feature)?.state.level ?? "OK";
      const state = n < psi.minWindow ? DriftState.INSUFFICIENT_DATA : STATE_OF[level];
      if (RANK[state] > RANK[worst]) worst = state;
      features.push({
        feature: w.feature,
        categorical: w.categorical,
        psi: v?.psi ?? 0,
        klDivergence: v?.kl ?? 0,
        jsDistance: v?.js ?? 0,
        hellinger: v?.hellinger ?? 0,
        wasserstein: v && !Number.isNaN(v.wasserstein) ? v.wasserstein : 0,
        chiSquarePValue: v && !Number.isNaN(v.chiSquareP) ? v.chiSquareP : 0,
        windowCount: BigInt(n),
        state,
      });
    }
    return { features, state: worst === DriftState.UNSPECIFIED ? DriftState.INSUFFICIENT_DATA : worst, start: st.windows?.firstTimeMs() ?? 0, end: st.windows?.lastTimeMs ?? 0 };
  }

  /** GetQuality's report of a version (zero counts when no label has joined yet). */
  qualityReport(model: string, version: number): MessageInitShape<typeof QualityReportSchema> {
    const st = this.versions.get(key(model, version));
    const q = st?.qualityWindow;
    const base = { modelName: model, version: BigInt(version) };
    if (!st || !q || q.rolling.size === 0) return { ...base, labelledCount: 0n, state: DriftState.INSUFFICIENT_DATA };
    const snap = q.rolling.snapshot();
    const b = q.bounds();
    const { policy } = this.policyOf(model);
    const evaluated = snap.n >= Number(policy.minLabelledCount) && st.qualityLevel !== undefined;
    return {
      ...base,
      labelledCount: BigInt(snap.n),
      auc: snap.auc ?? Number.NaN,
      logLoss: snap.logLoss,
      accuracy: snap.accuracy,
      expectedCalibrationError: snap.calibration.ece,
      calibration: snap.calibration.bins.map((c) => ({ lower: c.lower, upper: c.upper, count: BigInt(c.count), meanPredicted: c.meanPredicted, observedRate: c.observed })),
      state: evaluated ? STATE_OF[st.qualityLevel!] : DriftState.INSUFFICIENT_DATA,
      windowStart: b ? timestampFromMs(b.start) : undefined,
      windowEnd: b ? timestampFromMs(b.end) : undefined,
    };
  }
}
