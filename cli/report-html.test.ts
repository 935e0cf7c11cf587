// The HTML report renders every part a reader needs from a report with data: the decision,
// SRM, an interval chart and a table per metric, the sequential p-value chart, with user
// text escaped and nothing loaded from elsewhere.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Decision, ExperimentReportSchema, MetricRole } from "../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { renderExperimentReportHtml } from "./report-html.js";

describe("renderExperimentReportHtml", () => {
  const report = create(ExperimentReportSchema, {
    experimentKey: "checkout<v2>",
    alpha: 0.05,
    decision: Decision.INVALID,
    decisionReason: "sample ratio mismatch (p = 1e-6)",
    srm: { chi2: 24.1, pValue: 1e-6, ok: false, threshold: 0.001, arms: [{ arm: "control", observed: 5400n, expected: 5000 }, { arm: "b", observed: 4600n, expected: 5000 }] },
    metrics: [
      {
        metric: "conversion",
        role: MetricRole.PRIMARY,
        arms: [{ arm: "control", n: 5400n, mean: 0.1 }, { arm: "b", n: 4600n, mean: 0.11 }],
        comparisons: [
          {
            arm: "b",
            controlArm: "control",
            diff: 0.01,
            ciLow: 0.002,
            ciHigh: 0.018,
            pValue: 0.01,
            pValueHolm: 0.01,
            pValueBh: 0.01,
            relativeLift: 0.1,
            relativeLiftCiLow: 0.02,
            relativeLiftCiHigh: 0.18,
            significant: true,
            sequential: { pValue: 0.04 },
            history: [
              { time: { seconds: 1000n }, n: 100n, sequentialPValue: 1 },
              { time: { seconds: 2000n }, n: 5000n, sequentialPValue: 0.2 },
              { time: { seconds: 3000n }, n: 10000n, sequentialPValue: 0.04 },
            ],
          },
        ],
      },
    ],
  });

  it("shows the decision, SRM, charts and tables, escaping user text", () => {
    const page = renderExperimentReportHtml(report);
    assert.match(page, /Invalid — do not trust/);
    assert.match(page, /Sample ratio mismatch/);
    assert.ok(page.includes("checkout&lt;v2&gt;") && !page.includes("checkout<v2>"), "experiment key escaped");
    assert.equal((page.match(/<svg /g) ?? []).length, 2, "interval chart and sequential chart");
    assert.match(page, /<polyline [^>]*points="[\d.]+,[\d.]+ [\d.]+,[\d.]+ [\d.]+,[\d.]+"/);
    assert.match(page, /10\.00% \[2\.00%, 18\.00%\]/);
    assert.ok(!/<script|src=|href=/.test(page), "self-contained");
  });
});
