// Which logged inputs are personal data. A model's feature binding (registry) names the
// feature refs `view:feature` behind each graph input; the feature views (features service,
// GetFeatureView) say which of those are tagged PII. Views are fetched when a version loads
// and kept current by FeatureViewApplied events; the prediction log asks for a version's
// policy when it builds records (off the response path). Fail closed: a feature whose view
// could not be read (features service down, timeout) is treated as PII until it is read.

import type { FeatureView } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import type { FeatureBinding } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { Logger } from "../../lib/logger.js";

/** What the prediction log masks for one binding. */
export interface PiiPolicy {
  /** Row value keys holding PII: the full ref `view:feature` and the short `feature`. */
  readonly columns: ReadonlySet<string>;
  /** Graph inputs with at least one PII column: their column refs and which are PII. */
  readonly dense: ReadonlyMap<string, { readonly refs: readonly string[]; readonly pii: readonly boolean[] }>;
}

export const NO_PII: PiiPolicy = Object.freeze({ columns: new Set<string>(), dense: new Map() });

type ViewState =
  | { readonly state: "known"; readonly version: bigint; readonly pii: ReadonlySet<string>; readonly checkedAt: number }
  | { readonly state: "absent"; readonly checkedAt: number }
  | { readonly state: "unknown"; readonly checkedAt: number };

export interface PiiTagsOptions {
  /** The view, or undefined when the features service says it does not exist; throws when it cannot answer. */
  readonly fetchView: (name: string) => Promise<FeatureView | undefined>;
  readonly logger: Logger;
  /** After a failed read, how long before trying again (default 5 s). */
  readonly retryMs?: number;
  /** How long "no such view" is trusted before asking again (default 60 s; an applied view arrives by event sooner). */
  readonly absentTtlMs?: number;
}

function splitRef(ref: string): { view: string; feature: string } | undefined {
  const i = ref.indexOf(":");
  return i > 0 ? { view: ref.slice(0, i), feature: ref.slice(i + 1) } : undefined;
}

function piiOf(view: FeatureView): Set<string> {
  const out = new Set<string>();
  for (const f of view.features) if (f.pii) out.add(f.name);
  for (const f of view.onDemandFeatures) if (f.pii) out.add(f.name);
  return out;
}

export class PiiTags {
  private readonly views = new Map<string, ViewState>();
  private readonly fetching = new Map<string, Promise<void>>();
  /** Bumped whenever a view's tags change, so memoised policies are rebuilt. */
  private generation = 0;
  private readonly policies = new WeakMap<FeatureBinding, { generation: number; policy: PiiPolicy }>();
  private readonly retryMs: number;
  private readonly absentTtlMs: number;

  constructor(private readonly o: PiiTagsOptions) {
    this.retryMs = o.retryMs ?? 5_000;
    this.absentTtlMs = o.absentTtlMs ?? 60_000;
  }

  /** Reads the views a binding uses (at model load), so its first records are masked by the real tags. */
  async prefetch(binding: FeatureBinding | undefined): Promise<void> {
    if (!binding) return;
    await Promise.all([...viewsOf(binding)].map((v) => this.fetch(v)));
  }

  /** The binding's policy from what is known now; views never read (or stale) are fetched in the background. */
  policyFor(binding: FeatureBinding | undefined): PiiPolicy {
    if (!binding || binding.inputs.length === 0) return NO_PII;
    const memo = this.policies.get(binding);
    if (memo && memo.generation === this.generation && !this.anyStale(binding)) return memo.policy;
    const columns = new Set<string>();
    const dense = new Map<string, { refs: string[]; pii: boolean[] }>();
    for (const input of binding.inputs) {
      const pii = input.features.map((ref) => this.isPii(ref));
      if (!pii.some(Boolean)) continue;
      dense.set(input.inputName, { refs: [...input.features], pii });
      input.features.forEach((ref, i) => {
        if (!pii[i]) return;
        columns.add(ref);
        const s = splitRef(ref);
        if (s) columns.add(s.feature);
      });
    }
    const policy: PiiPolicy = columns.size === 0 ? NO_PII : { columns, dense };
    this.policies.set(binding, { generation: this.generation, policy });
    return policy;
  }

  /** A FeatureViewApplied event: its tags replace ours (an older version never replaces a newer one). */
  viewApplied(view: FeatureView): void {
    const have = this.views.get(view.name);
    if (have?.state === "known" && have.version > view.version) return;
    this.set(view.name, { state: "known", version: view.version, pii: piiOf(view), checkedAt: Date.now() });
  }

  private isPii(ref: string): boolean {
    const s = splitRef(ref);
    // A ref without a view names no tagged feature.
    if (!s) return false;
    const v = this.views.get(s.view);
    if (!v || v.state === "unknown") return true;
    if (v.state === "absent") return false;
    return v.pii.has(s.feature);
  }

  private anyStale(binding: FeatureBinding): boolean {
    let stale = false;
    const now = Date.now();
    for (const view of viewsOf(binding)) {
      const v = this.views.get(view);
      const due = !v || (v.state === "unknown" && now - v.checkedAt >= this.retryMs) || (v.state === "absent" && now - v.checkedAt >= this.absentTtlMs);
      if (due) {
        void this.fetch(view);
        stale = true;
      }
    }
    return stale;
  }

  private fetch(view: string): Promise<void> {
    let p = this.fetching.get(view);
    if (p) return p;
    p = this.o
      .fetchView(view)
      .then(
        (fv) => {
          if (fv) this.viewApplied(fv);
          else this.set(view, { state: "absent", checkedAt: Date.now() });
        },
        (err: unknown) => {
          const before = this.views.get(view)?.state;
          if (before === "known") return; // keep the tags we have
          this.set(view, { state: "unknown", checkedAt: Date.now() });
          // Once per outage, not at every retry.
          if (before !== "unknown") this.o.logger.warn({ err, view }, "inference: PII tags of a feature view could not be read; its features are masked in the prediction log until they are");
        },
      )
      .finally(() => this.fetching.delete(view));
    this.fetching.set(view, p);
    return p;
  }

  private set(view: string, s: ViewState): void {
    this.views.set(view, s);
    this.generation++;
  }
}

/** A binding's views; bindings are replaced, never changed, so once per binding. */
const bindingViews = new WeakMap<FeatureBinding, ReadonlySet<string>>();

function viewsOf(binding: FeatureBinding): ReadonlySet<string> {
  let out = bindingViews.get(binding);
  if (out) return out;
  const views = new Set<string>();
  for (const input of binding.inputs) for (const ref of input.features) {
    const s = splitRef(ref);
    if (s) views.add(s.view);
  }
  bindingViews.set(binding, (out = views));
  return out;
}
