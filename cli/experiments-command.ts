// `mlmesh experiments create|start|stop|assign|report`: thin clients of the experiment
// service. A definition file is an Experiment in the proto3 JSON mapping (as curl would
// send it); results go to stdout as a table or --json, errors to stderr with an exit code.

import { writeFile } from "node:fs/promises";
import { renderExperimentReportHtml } from "./report-html.js";
import fs from "node:fs";
import { parseArgs } from "node:util";
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AssignmentReason,
  AssignmentSchema,
  Decision,
  ExperimentReportSchema,
  ExperimentSchema,
  ExperimentStatus,
  SampleSizePlanSchema,
} from "../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import type { Config } from "../lib/config.js";
import { codeName } from "../lib/errors.js";
import { createMeshClients } from "../lib/mesh-clients.js";
import { EXIT, printError, printJson, printTable, UsageError } from "./output.js";

const USAGE = `Usage:
  mlmesh experiments create FILE.json [--reason TEXT] [--json]   (FILE: an Experiment in proto3 JSON)
  mlmesh experiments start KEY [--reason TEXT] [--json]
  mlmesh experiments stop KEY --reason TEXT [--ship ARM] [--json]
  mlmesh experiments assign KEY UNIT_ID [--attr NAME=VALUE ...] [--json]
  mlmesh experiments report KEY [--bootstrap N] [--seed S] [--html OUT.html] [--json]`;

function one(positionals: readonly string[], n: number, what: string): string[] {
  if (positionals.length !== n) throw new UsageError(`${what}\n${USAGE}`);
  return [...positionals];
}

function attribute(raw: string): [string, { kind: { case: "stringValue"; value: string } | { case: "doubleValue"; value: number } | { case: "boolValue"; value: boolean } }] {
  const eq = raw.indexOf("=");
  if (eq <= 0) throw new UsageError(`--attr ${JSON.stringify(raw)} is not NAME=VALUE`);
  const name = raw.slice(0, eq);
  const value = raw.slice(eq + 1);
  if (value === "true" || value === "false") return [name, { kind: { case: "boolValue", value: value === "true" } }];
  if (value.trim() !== "" && Number.isFinite(Number(value))) return [name, { kind: { case: "doubleValue", value: Number(value) } }];
  return [name, { kind: { case: "stringValue", value } }];
}

export async function runExperiments(config: Config, argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "help" || sub === "--help" || sub === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return sub === undefined ? EXIT.USAGE : EXIT.OK;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: {
        json: { type: "boolean", default: false },
        reason: { type: "string", default: "" },
        ship: { type: "string", default: "" },
        attr: { type: "string", multiple: true, default: [] },
        bootstrap: { type: "string", default: "0" },
        seed: { type: "string", default: "0" },
        html: { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  const json = values.json === true;
  const client = createMeshClients(config).experiments;
  try {
    switch (sub) {
      case "create": {
        const [file] = one(positionals, 1, "create takes one file");
        let experiment;
        try {
          experiment = fromJson(ExperimentSchema, JSON.parse(fs.readFileSync(file!, "utf8")) as JsonValue);
        } catch (err) {
          throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
        }
        const res = await client.createExperiment({ experiment, reason: String(values.reason) });
        const e = res.experiment!;
        if (json) printJson({ experiment: toJson(ExperimentSchema, e), plan: toJson(SampleSizePlanSchema, res.plan!) });
        else printTable([{ key: e.key, status: ExperimentStatus[e.status], revision: Number(e.revision), n_per_arm: Number(res.plan?.nPerArm ?? 0), plan: res.plan?.unavailableReason ?? "" }], ["key", "status", "revision", "n_per_arm", "plan"]);
        return EXIT.OK;
      }
      case "start":
      case "stop": {
        const [key] = one(positionals, 1, `${sub} takes one experiment key`);
        const e =
          sub === "start"
            ? (await client.startExperiment({ key: key!, reason: String(values.reason) })).experiment!
            : (await client.stopExperiment({ key: key!, reason: String(values.reason), shippedArm: String(values.ship) })).experiment!;
        if (json) printJson({ experiment: toJson(ExperimentSchema, e) });
        else printTable([{ key: e.key, status: ExperimentStatus[e.status], revision: Number(e.revision) }], ["key", "status", "revision"]);
        return EXIT.OK;
      }
      case "assign": {
        const [key, unitId] = one(positionals, 2, "assign takes an experiment key and a unit id");
        const attributes = Object.fromEntries((values.attr as string[]).map(attribute));
        const a = (await client.assign({ experimentKey: key!, unitId: unitId!, attributes })).assignment!;
        if (json) printJson(toJson(AssignmentSchema, a));
        else printTable([{ unit: a.unitId, arm: a.arm, in_experiment: String(a.inExperiment), reason: AssignmentReason[a.reason], bucket: a.bucket, phase: a.phase }], ["unit", "arm", "in_experiment", "reason", "bucket", "phase"]);
        return EXIT.OK;
      }
      case "report": {
        const [key] = one(positionals, 1, "report takes one experiment key");
        const resamples = Number(values.bootstrap);
        if (!Number.isInteger(resamples) || resamples < 0) throw new UsageError(`--bootstrap must be a whole number >= 0, got ${JSON.stringify(values.bootstrap)}`);
        if (!/^\d+$/.test(String(values.seed))) throw new UsageError(`--seed must be a whole number, got ${JSON.stringify(values.seed)}`);
        const html = typeof values.html === "string" ? values.html : undefined;
        const r = (await client.getReport({ experimentKey: key!, bootstrapResamples: resamples, bootstrapSeed: BigInt(String(values.seed)), includeHistory: html !== undefined })).report!;
        if (html !== undefined) {
          if (html.trim() === "") throw new UsageError("--html needs an output file name");
          await writeFile(html, renderExperimentReportHtml(r), "utf8");
          if (json) printJson({ html, decision: Decision[r.decision] });
          else process.stdout.write(`wrote ${html} (decision: ${Decision[r.decision]})\n`);
          return EXIT.OK;
        }
        if (json) {
          printJson(toJson(ExperimentReportSchema, r));
          return EXIT.OK;
        }
        process.stdout.write(`decision: ${Decision[r.decision]}: ${r.decisionReason}\n`);
        process.stdout.write(`srm: chi2=${r.srm?.chi2.toPrecision(4)} p=${r.srm?.pValue.toPrecision(4)} ${r.srm?.ok ? "ok" : "MISMATCH"}\n`);
        printTable(
          r.metrics.flatMap((m) =>
            m.comparisons.map((c) => ({
              metric: m.metric,
              arm: c.arm,
              diff: c.unavailableReason ? "-" : c.diff.toPrecision(4),
              ci: c.unavailableReason ? "-" : `[${c.ciLow.toPrecision(4)}, ${c.ciHigh.toPrecision(4)}]`,
              p: c.unavailableReason ? "-" : c.pValue.toPrecision(3),
              p_holm: c.unavailableReason ? "-" : c.pValueHolm.toPrecision(3),
              note: c.unavailableReason,
            })),
          ),
          ["metric", "arm", "diff", "ci", "p", "p_holm", "note"],
        );
        return EXIT.OK;
      }
      default:
        throw new UsageError(`unknown experiments command ${JSON.stringify(sub)}\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const ce = ConnectError.from(err);
    printError(`${codeName(ce.code)}: ${ce.rawMessage}`);
    return ce.code === Code.Unavailable ? EXIT.UNAVAILABLE : EXIT.FAILED;
  }
}
