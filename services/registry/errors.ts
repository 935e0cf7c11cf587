// The promotion refusal: FAILED_PRECONDITION carrying every failed rule, so the handler can
// attach them as a PromotionRejected detail. The generic codes live in lib/errors.ts.

import type { PromotionRuleResult } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { PreconditionError } from "../../lib/errors.js";

export { AbortedError, DataLossError, OutOfRangeError } from "../../lib/errors.js";

/** FAILED_PRECONDITION for a promotion the policy refuses. */
export class PromotionRejectedError extends PreconditionError {
  constructor(
    readonly modelName: string,
    readonly version: number,
    readonly policyRevision: number,
    readonly productionVersion: number,
    readonly failedRules: readonly PromotionRuleResult[],
  ) {
    super(
      `${modelName} v${version} fails the promotion policy (revision ${policyRevision}); fix the version or promote with override and a reason`,
      failedRules.map((r) => ({ subject: r.rule?.description ?? "rule", description: `actual ${r.actual}, required ${r.required}` })),
    );
  }
}
