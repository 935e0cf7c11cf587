// The latency budget of one request: the effective deadline is min(client deadline,
// endpoint total); each step gets its slice (unset slices share what the set ones leave),
// scaled down by the same ratio when the client's deadline is the tighter one.

import { durationMs } from "@bufbuild/protobuf/wkt";
import type { LatencyBudget } from "../../gen/mlmesh/router/v1/router_resources_pb.js";

export type Step = "candidate_selection" | "feature_fetch" | "scoring" | "post_processing";

export interface BudgetPlan {
  /** min(client remaining, endpoint total), ms. */
  readonly effectiveMs: number;
  readonly slices: Readonly<Record<Step, number>>;
}

const PREDICT_STEPS: readonly Step[] = ["feature_fetch", "scoring", "post_processing"];
const RANK_STEPS: readonly Step[] = ["candidate_selection", "feature_fetch", "scoring", "post_processing"];

export function planBudget(budget: LatencyBudget | undefined, defaultTotalMs: number, clientRemainingMs: number | undefined, rank: boolean): BudgetPlan {
  const total = budget?.total ? durationMs(budget.total) : defaultTotalMs;
  const steps = rank ? RANK_STEPS : PREDICT_STEPS;
  const given: Record<Step, number | undefined> = {
    candidate_selection: budget?.candidateSelection ? durationMs(budget.candidateSelection) : undefined,
    feature_fetch: budget?.featureFetch ? durationMs(budget.featureFetch) : undefined,
    scoring: budget?.scoring ? durationMs(budget.scoring) : undefined,
    post_processing: budget?.postProcessing ? durationMs(budget.postProcessing) : undefined,
  };
  let used = 0;
  let unset = 0;
  for (const s of steps) {
    if (given[s] === undefined) unset++;
    else used += given[s]!;
  }
  const share = unset > 0 ? Math.max(0, total - used) / unset : 0;
  const effective = clientRemainingMs === undefined ? total : Math.max(0, Math.min(total, clientRemainingMs));
  const ratio = total > 0 ? effective / total : 0;
  const slices = { candidate_selection: 0, feature_fetch: 0, scoring: 0, post_processing: 0 } as Record<Step, number>;
  for (const s of steps) slices[s] = (given[s] ?? share) * ratio;
  return { effectiveMs: effective, slices };
}
