// The Prometheus configuration, rules and Grafana dashboards in deploy/ can be loaded as they
// are: promtool checks the config and rules and runs the alert unit tests; every series a
// rule or dashboard queries is one the services export (found in their metric definitions)
// or a recording rule, so a renamed metric cannot leave an empty panel or a silent alert.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { REPO_ROOT } from "../support/mlmesh-process.js";

const DIR = path.join(REPO_ROOT, "deploy/prometheus");
const GRAFANA = path.join(REPO_ROOT, "deploy/grafana");
const ruleFiles = () => fs.readdirSync(path.join(DIR, "rules")).filter((f) => f.endsWith(".yml")).map((f) => path.join(DIR, "rules", f));

function promtool(args: string[]): { status: number | null; out: string } {
  const r = spawnSync("promtool", args, { encoding: "utf8", cwd: DIR });
  assert.equal(r.error, undefined, "promtool must be installed (Debian package prometheus)");
  return { status: r.status, out: r.stdout + r.stderr };
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "node_modules" && e.name !== "migrations") out.push(...tsFiles(p));
    } else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

/** Series the services export: prom-client metric names, histograms as their _bucket/_sum/_count. */
function exportedSeries(): Set<string> {
  const series = new Set<string>(["up"]);
  for (const f of [...tsFiles(path.join(REPO_ROOT, "lib")), ...tsFiles(path.join(REPO_ROOT, "services"))]) {
    const text = fs.readFileSync(f, "utf8");
    for (const m of text.matchAll(/new (Counter|Gauge|Histogram|Summary)(?:<[^>]*>)?\(\{\s*name:\s*"(mlmesh_[a-z0-9_]+)"/g)) {
      const [, kind, name] = m;
      if (kind === "Histogram") for (const s of ["_bucket", "_sum", "_count"]) series.add(name + s);
      else if (kind === "Summary") for (const s of ["", "_sum", "_count"]) series.add(name + s);
      else series.add(name!);
    }
  }
  return series;
}

/** Names defined by `record:` in the rule files. */
function recordingRules(): Set<string> {
  const names = new Set<string>();
  for (const f of ruleFiles()) for (const m of fs.readFileSync(f, "utf8").matchAll(/^\s*- record:\s*(\S+)\s*$/gm)) names.add(m[1]!);
  return names;
}

const PROMQL_WORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"]);

/** Metric names a PromQL expression selects (strings, label matchers, ranges and grouping clauses removed). */
export function selectedMetrics(expr: string): string[] {
  let e = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  e = e.replace(/\{[^}]*\}/g, " ").replace(/\[[^\]]*\]/g, " ");
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const out: string[] = [];
  for (const m of e.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?/g)) {
    const [, name, call] = m;
    if (call || PROMQL_WORDS.has(name!.toLowerCase())) continue;
    if (/^\d/.test(name!) || /^[0-9.e]+$/i.test(name!)) continue;
    out.push(name!);
  }
  return out;
}

interface Panel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

describe("deploy/prometheus", () => {
  it("every rule file passes `promtool check rules`", () => {
    const files = ruleFiles();
    assert.ok(files.length >= 4);
    const r = promtool(["check", "rules", ...files]);
    assert.equal(r.status, 0, r.out);
  });

  it("the scrape configuration passes `promtool check config`", () => {
    const r = promtool(["check", "config", path.join(DIR, "prometheus.yml")]);
    assert.equal(r.status, 0, r.out);
  });

  it("the alert unit tests pass `promtool test rules` (drift, concept drift, lag, burn, latency)", () => {
    const tests = fs.readdirSync(path.join(DIR, "tests")).filter((f) => f.endsWith(".yml")).map((f) => path.join("tests", f));
    assert.ok(tests.length >= 1);
    const r = promtool(["test", "rules", ...tests]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });

  it("every series a rule queries is exported by a service or recorded by a rule", () => {
    const known = new Set([...exportedSeries(), ...recordingRules()]);
    assert.ok(known.has("mlmesh_inference_drift_value") && known.has("mlmesh_rpc_server_duration_seconds_bucket"), "metric definitions found");
    const unknown: string[] = [];
    for (const f of ruleFiles()) {
      const text = fs.readFileSync(f, "utf8");
      // expr: single line, or a block scalar (`|`) of indented lines.
      for (const m of text.matchAll(/^(\s*)expr:\s*(\|?)(.*)$/gm)) {
        let expr = m[3]!;
        if (m[2] === "|") {
          const after = text.slice(m.index! + m[0].length + 1).split("\n");
          const body: string[] = [];
          for (const line of after) {
            if (line.trim() !== "" && line.search(/\S/) <= m[1]!.length) break;
            body.push(line);
          }
          expr = body.join("\n");
        }
        for (const name of selectedMetrics(expr)) if (!known.has(name)) unknown.push(`${path.basename(f)}: ${name}`);
      }
    }
    assert.deepEqual(unknown, []);
  });
});

describe("deploy/grafana", () => {
  const dashboards = fs.readdirSync(path.join(GRAFANA, "dashboards")).filter((f) => f.endsWith(".json"));

  it("provisions the Prometheus datasource the dashboards use and a file provider for them", () => {
    const ds = fs.readFileSync(path.join(GRAFANA, "provisioning/datasources/prometheus.yml"), "utf8");
    assert.match(ds, /uid: mlmesh-prometheus/);
    assert.match(ds, /type: prometheus/);
    const prov = fs.readFileSync(path.join(GRAFANA, "provisioning/dashboards/mlmesh.yml"), "utf8");
    assert.match(prov, /type: file/);
    assert.match(prov, /path: \/var\/lib\/grafana\/dashboards\/mlmesh/);
    assert.deepEqual(dashboards.sort(), ["mesh-overview.json", "model.json"]);
  });

  it("every dashboard expr references an exported metric or a recording rule", () => {
    const known = new Set([...exportedSeries(), ...recordingRules()]);
    const uids = new Set<string>();
    for (const file of dashboards) {
      const d = JSON.parse(fs.readFileSync(path.join(GRAFANA, "dashboards", file), "utf8")) as {
        uid: string;
        title: string;
        panels: Panel[];
        templating: { list: Array<{ name: string; query: { query: string } | string; datasource?: { uid: string } }> };
      };
      assert.ok(d.uid && !uids.has(d.uid), `${file}: a unique uid`);
      uids.add(d.uid);
      const exprs: Array<{ where: string; expr: string }> = [];
      const walk = (ps: Panel[]) => {
        for (const p of ps) {
          for (const t of p.targets ?? []) if (t.expr) exprs.push({ where: `${file} / ${p.title}`, expr: t.expr });
          walk(p.panels ?? []);
        }
      };
      walk(d.panels);
      assert.ok(exprs.length >= 8, `${file}: ${exprs.length} queries`);
      for (const v of d.templating.list) {
        const q = typeof v.query === "string" ? v.query : v.query.query;
        const inner = /^label_values\((.*),\s*\w+\)$/.exec(q);
        assert.ok(inner, `${file}: variable ${v.name} is a label_values() query`);
        exprs.push({ where: `${file} / $${v.name}`, expr: inner[1]! });
      }
      const unknown: string[] = [];
      for (const { where, expr } of exprs) {
        const names = selectedMetrics(expr.replace(/\$\w+/g, "x"));
        assert.ok(names.length > 0, `${where}: no metric in ${expr}`);
        for (const n of names) if (!known.has(n)) unknown.push(`${where}: ${n}`);
      }
      assert.deepEqual(unknown, [], `${file}: queries of series nothing exports`);
    }
  });

  it("the PromQL name extraction the checks rely on", () => {
    assert.deepEqual(
      selectedMetrics('histogram_quantile(0.99, sum by (service, le) (rate(mlmesh_rpc_server_duration_seconds_bucket{code="OK"}[5m]))) > 0.05'),
      ["mlmesh_rpc_server_duration_seconds_bucket"],
    );
    assert.deepEqual(selectedMetrics("a:b:c / on (endpoint) group_left clamp_min(sum by (x) (rate(m_total[5m])), 1e-12)"), ["a:b:c", "m_total"]);
  });
});
