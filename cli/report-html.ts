// `mlmesh experiments report KEY --html OUT.html`: one self-contained page (inline CSS and
// SVG, no scripts, no network) that a product manager can read: the decision and why, SRM,
// per metric the lift and its confidence interval per arm, and the always-valid (sequential)
// p-value over time, so peeking is visibly safe.

import {
  Decision,
  MetricRole,
  type Comparison,
  type ExperimentReport,
  type MetricResult,
} from "../gen/mlmesh/experiments/v1/experiments_resources_pb.js";

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const fmt = (x: number, digits = 3) => (Number.isFinite(x) ? x.toPrecision(digits) : "–");
const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(2)}%` : "–");

const DECISION_STYLE: Record<number, { label: string; color: string }> = {
  [Decision.SHIP]: { label: "Ship", color: "#1a7f37" },
  [Decision.DO_NOT_SHIP]: { label: "Do not ship", color: "#b42318" },
  [Decision.KEEP_RUNNING]: { label: "Keep running", color: "#9a6700" },
  [Decision.INVALID]: { label: "Invalid — do not trust", color: "#b42318" },
};

/** A horizontal interval chart: one row per comparison, the CI as a bar and the estimate as a dot. */
function forestPlot(metric: MetricResult): string {
  const rows = metric.comparisons.filter((c) => !c.unavailableReason);
  if (rows.length === 0) return "<p class=muted>No comparison available yet.</p>";
  // Relative lift when every row has one (a clearer scale for readers), else the raw difference.
  const relative = rows.every((c) => Number.isFinite(c.relativeLiftCiLow) && Number.isFinite(c.relativeLiftCiHigh) && (c.relativeLiftCiLow !== 0 || c.relativeLiftCiHigh !== 0));
  const lo = (c: Comparison) => (relative ? c.relativeLiftCiLow : c.ciLow);
  const hi = (c: Comparison) => (relative ? c.relativeLiftCiHigh : c.ciHigh);
  const mid = (c: Comparison) => (relative ? c.relativeLift : c.diff);
  let min = Math.min(0, ...rows.map(lo));
  let max = Math.max(0, ...rows.map(hi));
  if (min === max) [min, max] = [min - 1, max + 1];
  const pad = (max - min) * 0.08;
  min -= pad;
  max += pad;
  const W = 640;
  const left = 120;
  const rowH = 34;
  const H = rows.length * rowH + 40;
  const x = (v: number) => left + ((v - min) / (max - min)) * (W - left - 20);
  const label = (v: number) => (relative ? pct(v) : fmt(v));
  const parts: string[] = [
    `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(metric.metric)} effect by arm">`,
    `<line x1="${x(0)}" x2="${x(0)}" y1="5" y2="${H - 25}" stroke="#888" stroke-dasharray="4 3"/>`,
    `<text x="${x(0)}" y="${H - 8}" text-anchor="middle" class="axis">0</text>`,
    `<text x="${x(min + pad)}" y="${H - 8}" text-anchor="start" class="axis">${label(min + pad)}</text>`,
    `<text x="${x(max - pad)}" y="${H - 8}" text-anchor="end" class="axis">${label(max - pad)}</text>`,
  ];
  rows.forEach((c, i) => {
    const y = 20 + i * rowH;
    const color = c.significant ? (mid(c) > 0 ? "#1a7f37" : "#b42318") : "#57606a";
    parts.push(
      `<text x="${left - 10}" y="${y + 4}" text-anchor="end" class="arm">${esc(c.arm)}</text>`,
      `<line x1="${x(lo(c))}" x2="${x(hi(c))}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="6" stroke-linecap="round" opacity="0.45"/>`,
      `<circle cx="${x(mid(c))}" cy="${y}" r="6" fill="${color}"><title>${esc(c.arm)}: ${label(mid(c))} [${label(lo(c))}, ${label(hi(c))}], p=${fmt(c.pValue)}</title></circle>`,
    );
  });
  parts.push("</svg>");
  return `<p class=muted>${relative ? "Relative lift" : "Difference"} vs control with its ${"confidence interval"}; green/red: significant after correction.</p>${parts.join("")}`;
}

/** The sequential p-value of each comparison over the analyses so far, against alpha. */
function sequentialChart(metric: MetricResult, alpha: number): string {
  const series = metric.comparisons.filter((c) => c.history.length > 0);
  if (series.length === 0) return "<p class=muted>No history yet: the chart fills in as the report is computed over time.</p>";
  const times = series.flatMap((c) => c.history.map((h) => Number(h.time?.seconds ?? 0n)));
  const t0 = Math.min(...times);
  const t1 = Math.max(...times, t0 + 1);
  const W = 640;
  const H = 240;
  const x = (t: number) => 50 + ((t - t0) / (t1 - t0)) * (W - 70);
  // Log scale from 1 down to 1e-4: the region around alpha is where decisions happen.
  const plotH = H - 40 - series.length * 14;
  const y = (p: number) => 15 + (-Math.log10(Math.max(1e-4, Math.min(1, p))) / 4) * plotH;
  const colors = ["#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700"];
  const parts = [
    `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="sequential p-value over time">`,
    `<line x1="50" x2="${W - 20}" y1="${y(alpha)}" y2="${y(alpha)}" stroke="#b42318" stroke-dasharray="5 3"/>`,
    `<text x="${W - 20}" y="${y(alpha) - 4}" text-anchor="end" class="axis">alpha ${alpha}</text>`,
    `<text x="45" y="${y(1) + 4}" text-anchor="end" class="axis">1</text>`,
    `<text x="45" y="${y(0.01) + 4}" text-anchor="end" class="axis">0.01</text>`,
    `<text x="45" y="${y(1e-4) + 4}" text-anchor="end" class="axis">≤1e-4</text>`,
  ];
  series.forEach((c, i) => {
    const pts = c.history.map((h) => `${x(Number(h.time?.seconds ?? 0n)).toFixed(1)},${y(h.sequentialPValue).toFixed(1)}`).join(" ");
    const color = colors[i % colors.length]!;
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>`, `<text x="60" y="${H - 8 - i * 14}" class="arm" style="fill:${color}">— ${esc(c.arm)}</text>`);
  });
  parts.push("</svg>");
  return `<p class=muted>Always-valid p-value (mSPRT, log scale): it may be watched at every look; below the red line the difference is significant.</p>${parts.join("")}`;
}

function comparisonTable(metric: MetricResult): string {
  const head = "<tr><th>arm</th><th>n</th><th>mean</th><th>diff [CI]</th><th>lift [CI]</th><th>p</th><th>p (Holm)</th><th>p (BH)</th><th>sequential p</th><th>CUPED diff [CI]</th></tr>";
  const n = (arm: string) => metric.arms.find((a) => a.arm === arm);
  const body = metric.comparisons
    .map((c) => {
      if (c.unavailableReason) return `<tr><td>${esc(c.arm)}</td><td colspan=9 class=muted>${esc(c.unavailableReason)}</td></tr>`;
      const a = n(c.arm);
      const cuped = c.cuped ? `${fmt(c.cuped.diff)} [${fmt(c.cuped.ciLow)}, ${fmt(c.cuped.ciHigh)}] (−${pct(c.cuped.varianceReduction)} var)` : "–";
      return `<tr${c.significant ? " class=sig" : ""}><td>${esc(c.arm)}</td><td>${a ? a.n : "–"}</td><td>${a ? fmt(a.mean, 4) : "–"}</td><td>${fmt(c.diff)} [${fmt(c.ciLow)}, ${fmt(c.ciHigh)}]</td><td>${pct(c.relativeLift)} [${pct(c.relativeLiftCiLow)}, ${pct(c.relativeLiftCiHigh)}]</td><td>${fmt(c.pValue)}</td><td>${fmt(c.pValueHolm)}</td><td>${fmt(c.pValueBh)}</td><td>${c.sequential ? fmt(c.sequential.pValue) : "–"}</td><td>${cuped}</td></tr>`;
    })
    .join("");
  const control = metric.comparisons[0]?.controlArm;
  const c = control ? n(control) : undefined;
  const controlRow = c ? `<tr class=muted><td>${esc(control!)} (control)</td><td>${c.n}</td><td>${fmt(c.mean, 4)}</td><td colspan=7></td></tr>` : "";
  return `<table>${head}${controlRow}${body}</table>`;
}

export function renderExperimentReportHtml(r: ExperimentReport): string {
  const d = DECISION_STYLE[r.decision] ?? { label: "Unknown", color: "#57606a" };
  const computed = r.computeTime ? new Date(Number(r.computeTime.seconds) * 1000).toISOString() : "";
  const srm = r.srm;
  const metrics = [...r.metrics].sort((a, b) => a.role - b.role);
  const role = (m: MetricResult) => (MetricRole[m.role] ?? "").toLowerCase().replace(/_/g, " ");
  const guardrails = r.guardrails.length
    ? `<h2>Guardrails</h2><table><tr><th>metric</th><th>arm</th><th>status</th><th>diff</th><th>tolerated</th><th>bound</th><th>p</th></tr>${r.guardrails
        .map((g) => `<tr><td>${esc(g.metric)}</td><td>${esc(g.arm)}</td><td>${esc(String(g.status))}</td><td>${fmt(g.diff)}</td><td>${fmt(g.margin)}</td><td>${fmt(g.bound)}</td><td>${fmt(g.pValue)}</td></tr>`)
        .join("")}</table>`
    : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Experiment ${esc(r.experimentKey)}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:980px;color:#1f2328;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
.decision{display:inline-block;padding:.4rem .8rem;border-radius:6px;color:#fff;font-weight:600;background:${d.color}}
.muted{color:#57606a}.bad{color:#b42318;font-weight:600}.ok{color:#1a7f37}
table{border-collapse:collapse;margin:.5rem 0;font-size:14px}td,th{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left}
tr.sig td{background:#f0fff4}svg .axis{font-size:11px;fill:#57606a}svg .arm{font-size:13px;fill:#1f2328}
</style></head><body>
<h1>Experiment <code>${esc(r.experimentKey)}</code></h1>
<p class=muted>${computed ? `Computed ${esc(computed)} · ` : ""}revision ${r.revision} · alpha ${r.alpha} · sample progress ${pct(r.sampleProgressFraction)}</p>
<p><span class=decision>${esc(d.label)}</span>${r.recommendedArm ? ` — recommended arm <b>${esc(r.recommendedArm)}</b>` : ""}</p>
<p>${esc(r.decisionReason)}</p>
<h2>Traffic split (SRM)</h2>
${
  srm
    ? `<p class=${srm.ok ? "ok" : "bad"}>${srm.ok ? "The split matches the plan" : "Sample ratio mismatch: the assignment or the exposure logging is broken, so the results below cannot be trusted"} (chi² ${fmt(srm.chi2)}, p ${fmt(srm.pValue)}, flagged below ${srm.threshold}).</p>
<table><tr><th>arm</th><th>units</th><th>expected</th></tr>${srm.arms.map((a) => `<tr><td>${esc(a.arm)}</td><td>${a.observed}</td><td>${fmt(a.expected, 6)}</td></tr>`).join("")}</table>`
    : "<p class=muted>No exposures yet.</p>"
}
${metrics
  .map(
    (m) => `<h2>${esc(m.metric)} <small class=muted>(${esc(role(m))})</small></h2>
${forestPlot(m)}
${comparisonTable(m)}
<h3>Sequential p-value over time</h3>
${sequentialChart(m, r.alpha)}`,
  )
  .join("\n")}
${guardrails}
<p class=muted>Welch's t-test for means, the pooled two-proportion z-test for proportions, the delta method for ratios; Holm and Benjamini–Hochberg corrections across arms × metrics; CUPED with θ pooled over all arms; mSPRT always-valid p-values. Generated by mlmesh.</p>
</body></html>
`;
}
