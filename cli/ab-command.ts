// `mlmesh ab analyze|sample-size`: the experiment statistics for data scientists, offline
// (no server). The numbers come from services/experiments/stats, checked against SciPy and
// statsmodels; this file only reads the CSV, accumulates per-arm sufficient statistics in
// one streaming pass, and prints.

import { parseArgs } from "node:util";
import { CsvFormatError, forEachCsvRecord } from "../lib/drift/csv-drift.js";
import { ValidationError } from "../lib/errors.js";
import { benjaminiHochberg, holm } from "../services/experiments/stats/corrections.js";
import { cupedTest } from "../services/experiments/stats/cuped.js";
import type { Comparison } from "../services/experiments/stats/effect.js";
import { proportionsFromStats } from "../services/experiments/stats/proportions.js";
import { sampleSizeForMeans, sampleSizeForProportions } from "../services/experiments/stats/sample-size.js";
import { sampleRatioMismatch } from "../services/experiments/stats/srm.js";
import { addObservation, emptyStats, type ArmStats } from "../services/experiments/stats/sufficient-stats.js";
import { welchFromStats } from "../services/experiments/stats/welch.js";
import { EXIT, printJson, printTable, UsageError } from "./output.js";

const USAGE = `Usage:
  mlmesh ab analyze --data FILE.csv [--control NAME] [--covariate COL] [--type mean|proportion]
                    [--alpha 0.05] [--weights a=0.5,b=0.5] [--json]
      CSV columns: unit_id, arm, value (and the covariate column if named); one row per unit.
  mlmesh ab sample-size (--baseline-rate P | --sd S) --mde D [--alpha 0.05] [--power 0.8] [--json]
      D is absolute (a difference of means, or of conversion rates).`;

export async function runAb(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "analyze":
      return analyze(rest);
    case "sample-size":
      return sampleSize(rest);
    case "help":
    case "--help":
    case undefined:
      process.stdout.write(`${USAGE}\n`);
      return sub === undefined ? EXIT.USAGE : EXIT.OK;
    default:
      throw new UsageError(`unknown ab command ${JSON.stringify(sub)}\n${USAGE}`);
  }
}

function parse(args: readonly string[], options: Record<string, { type: "string" | "boolean" }>) {
  try {
    return parseArgs({ args: [...args], options: { json: { type: "boolean" }, ...options }, strict: true }).values as Record<
      string,
      string | boolean | undefined
    >;
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
}

function number(flag: string, raw: string | boolean | undefined, fallback?: number): number | undefined {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${flag} must be a number, got ${JSON.stringify(raw)}`);
  return n;
}

/** Input errors (a bad CSV line, an arm with one unit, weights not summing to 1) are usage errors. */
async function asUsage<T>(f: () => Promise<T> | T): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof ValidationError || err instanceof CsvFormatError) throw new UsageError(err.message);
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new UsageError(`no such file: ${(err as NodeJS.ErrnoException).path}`);
    throw err;
  }
}

function parseWeights(raw: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of raw.split(",")) {
    const [name, w] = part.split("=");
    const n = Number(w);
    if (!name || w === undefined || !Number.isFinite(n) || n <= 0) throw new UsageError(`--weights expects arm=weight,... with positive weights, got ${JSON.stringify(part)}`);
    out.set(name.trim(), n);
  }
  return out;
}

async function analyze(args: readonly string[]): Promise<number> {
  const v = parse(args, {
    data: { type: "string" },
    control: { type: "string" },
    covariate: { type: "string" },
    type: { type: "string" },
    alpha: { type: "string" },
    weights: { type: "string" },
  });
  if (typeof v.data !== "string") throw new UsageError(`analyze needs --data FILE.csv\n${USAGE}`);
  const control = typeof v.control === "string" ? v.control : "control";
  const type = (v.type as string | undefined) ?? "mean";
  if (type !== "mean" && type !== "proportion") throw new UsageError(`--type must be mean or proportion, got ${JSON.stringify(type)}`);
  const alpha = number("alpha", v.alpha, 0.05)!;
  const covariate = typeof v.covariate === "string" ? v.covariate : undefined;

  const arms = new Map<string, ArmStats>();
  const units = new Set<string>();
  await asUsage(() =>
    forEachCsvRecord(v.data as string, (fields, line, header) => {
      const col = (name: string) => {
        const i = header.indexOf(name);
        if (i < 0) throw new ValidationError(name === covariate ? "--covariate" : "data", `column ${JSON.stringify(name)} is missing (header: ${header.join(", ")})`);
        return i;
      };
      const iUnit = col("unit_id");
      const iArm = col("arm");
      const iValue = col("value");
      const iCov = covariate === undefined ? -1 : col(covariate);
      const unit = fields[iUnit]!;
      if (units.has(unit)) throw new ValidationError(`${v.data}:${line}`, `unit_id ${JSON.stringify(unit)} appears twice; one row per unit`);
      units.add(unit);
      const y = Number(fields[iValue]);
      if (fields[iValue]!.trim() === "" || !Number.isFinite(y)) throw new ValidationError(`${v.data}:${line}`, `value ${JSON.stringify(fields[iValue])} is not a number`);
      let x = 0;
      if (iCov >= 0) {
        x = Number(fields[iCov]);
        if (fields[iCov]!.trim() === "" || !Number.isFinite(x)) throw new ValidationError(`${v.data}:${line}`, `${covariate} ${JSON.stringify(fields[iCov])} is not a number`);
      }
      const arm = fields[iArm]!;
      let s = arms.get(arm);
      if (!s) arms.set(arm, (s = emptyStats()));
      addObservation(s, y, x);
    }),
  );
  if (!arms.has(control)) {
    throw new UsageError(`control arm ${JSON.stringify(control)} is not in the data (arms: ${[...arms.keys()].join(", ") || "none"}); name it with --control`);
  }
  if (arms.size < 2) throw new UsageError("the data has a single arm; nothing to compare");
  const names = [control, ...[...arms.keys()].filter((a) => a !== control)];

  const report = await asUsage(() => {
    let weights: number[];
    if (typeof v.weights === "string") {
      const w = parseWeights(v.weights);
      for (const a of names) if (!w.has(a)) throw new ValidationError("--weights", `has no weight for arm ${JSON.stringify(a)}`);
      for (const a of w.keys()) if (!arms.has(a)) throw new ValidationError("--weights", `names arm ${JSON.stringify(a)}, which has no units in the data`);
      weights = names.map((a) => w.get(a)!);
    } else {
      weights = names.map(() => 1 / names.length);
    }
    const stats = names.map((a) => arms.get(a)!);
    const srm = sampleRatioMismatch(stats.map((s) => s.n), weights);
    const tests = names.slice(1).map((arm, i) => {
      const t = stats[i + 1]!;
      const base: Comparison = type === "proportion" ? proportionsFromStats(stats[0]!, t, { alpha }) : welchFromStats(stats[0]!, t, { alpha });
      const cuped = covariate === undefined ? undefined : cupedTest(stats[0]!, t, stats, { alpha });
      return { arm, base, cuped };
    });
    const ps = tests.map((t) => t.base.pValue);
    const holmP = holm(ps, alpha).adjusted;
    const bhP = benjaminiHochberg(ps, alpha).adjusted;
    return {
      srm: { chi2: srm.chi2, p_value: srm.pValue, ok: !srm.flagged },
      arms: names.map((name, i) => {
        const s = stats[i]!;
        return { name, n: s.n, mean: s.meanY, variance: s.n > 1 ? s.m2Y / (s.n - 1) : null };
      }),
      comparisons: tests.map((t, i) => ({
        arm: t.arm,
        diff: t.base.diff,
        ci_low: t.base.ciLow,
        ci_high: t.base.ciHigh,
        p_value: t.base.pValue,
        relative_lift: t.base.relative?.lift ?? null,
        relative_ci_low: t.base.relative?.ciLow ?? null,
        relative_ci_high: t.base.relative?.ciHigh ?? null,
        p_value_holm: holmP[i]!,
        p_value_bh: bhP[i]!,
        ...(t.cuped
          ? {
              cuped: {
                theta: t.cuped.theta,
                diff: t.cuped.diff,
                ci_low: t.cuped.ciLow,
                ci_high: t.cuped.ciHigh,
                p_value: t.cuped.pValue,
                variance_reduction: t.cuped.varianceReduction,
              },
            }
          : {}),
      })),
      type,
      alpha,
      control,
    };
  });

  if (v.json) {
    printJson(report);
  } else {
    const f = (x: number | null, d = 4) => (x === null ? "-" : x.toPrecision(d));
    process.stdout.write(
      `SRM: chi2 ${f(report.srm.chi2)}, p ${f(report.srm.p_value)} — ${report.srm.ok ? "ok" : "MISMATCH: the split is broken; do not trust these results"}\n`,
    );
    printTable(
      report.arms.map((a) => ({ arm: a.name, n: a.n, mean: f(a.mean, 6), variance: f(a.variance, 6) })),
      ["arm", "n", "mean", "variance"],
    );
    printTable(
      report.comparisons.map((c) => ({
        arm: c.arm,
        diff: f(c.diff),
        ci: `[${f(c.ci_low)}, ${f(c.ci_high)}]`,
        p: f(c.p_value),
        holm: f(c.p_value_holm),
        bh: f(c.p_value_bh),
        lift: c.relative_lift === null ? "-" : `${(100 * c.relative_lift).toFixed(2)}%`,
        ...(c.cuped ? { cuped_p: f(c.cuped.p_value), var_reduction: `${(100 * c.cuped.variance_reduction).toFixed(1)}%` } : {}),
      })),
      ["arm", "diff", "ci", "p", "holm", "bh", "lift", ...(covariate ? ["cuped_p", "var_reduction"] : [])],
    );
  }
  return EXIT.OK;
}

async function sampleSize(args: readonly string[]): Promise<number> {
  const v = parse(args, {
    "baseline-rate": { type: "string" },
    sd: { type: "string" },
    mde: { type: "string" },
    alpha: { type: "string" },
    power: { type: "string" },
  });
  const rate = number("baseline-rate", v["baseline-rate"]);
  const sd = number("sd", v.sd);
  const mde = number("mde", v.mde);
  if ((rate === undefined) === (sd === undefined)) throw new UsageError(`give exactly one of --baseline-rate and --sd\n${USAGE}`);
  if (mde === undefined) throw new UsageError(`sample-size needs --mde\n${USAGE}`);
  const options = { alpha: number("alpha", v.alpha, 0.05), power: number("power", v.power, 0.8) };
  const out = await asUsage(() => {
    if (rate !== undefined) {
      const r = sampleSizeForProportions(rate, mde, options);
      return { n_per_arm: r.nPerArm, n_per_arm_arcsine: r.nPerArmArcsine };
    }
    return { n_per_arm: sampleSizeForMeans(sd!, mde, options).nPerArm };
  });
  if (v.json) printJson(out);
  else {
    process.stdout.write(`${out.n_per_arm} units per arm\n`);
    if ("n_per_arm_arcsine" in out) process.stdout.write(`${out.n_per_arm_arcsine} units per arm by Cohen's h (statsmodels NormalIndPower)\n`);
  }
  return EXIT.OK;
}
