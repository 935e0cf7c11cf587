// `mlmesh models ...`: the registry from the command line — push an ONNX file with its
// lineage and card, list, show, promote (with the policy's verdict), alias, policy, audit.
// Every subcommand takes --json; errors say what to do and exit with output.ts's codes.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { parseArgs } from "node:util";
import { toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ModelVersionSchema,
  PromotionPolicySchema,
  PromotionRejectedSchema,
  PromotionRuleResultSchema,
  RegisteredModelSchema,
  Stage,
  type ModelVersion,
} from "../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { ModelVersionSpecSchema, UploadModelVersionRequestSchema } from "../gen/mlmesh/registry/v1/registry_service_pb.js";
import type { Config } from "../lib/config.js";
import { codeName, ValidationError } from "../lib/errors.js";
import { isMissing, parseDecimal, readCsvColumns } from "../lib/drift/csv-drift.js";
import { createMeshClients } from "../lib/mesh-clients.js";
import { parseRuleText } from "../services/registry/policy.js";
import { EXIT, printError, printJson, printTable, UsageError } from "./output.js";

export const MODELS_USAGE = `Usage:
  mlmesh models push FILE.onnx --name N [--metric k=v]... [--param k=v]... [--features view:f1,view:f2,...]
                     [--entity user_id] [--dataset URI@VERSION]... [--code-version SHA] [--card CARD.md]
                     [--description TEXT] [--tag k=v]... [--reference SAMPLE.csv] [--reason TEXT] [--json]
  mlmesh models list [--json]
  mlmesh models card N[@ref] [--json]          the model card as Markdown, lineage and metrics filled in
  mlmesh models show N[@ref] [--json]          ref: a version number, an alias, production, staging, latest
  mlmesh models promote N VERSION --to production|staging|archived|none [--override --reason TEXT] [--json]
  mlmesh models alias N ALIAS VERSION [--json]
  mlmesh models policy set N RULE... [--reason TEXT] [--json]
  mlmesh models policy show N [--json]
  mlmesh models audit N [--json]

Promotion rules (all must pass to enter production):
  auc>=0.80                    metric threshold (>, >=, <, <=)
  auc>=production.auc-0.005    relative to the production version (passes when there is none;
                               end with ! to fail instead)
  card:intended_use,evaluation required model card sections (intended_use, training_data,
                               evaluation, limitations, ethical_considerations)
  signature                    inputs compatible with production's (signature:compatible+outputs+features
                               also requires the same outputs / feature binding)
  lineage:code_version,datasets  required lineage fields (params, metrics, datasets, code_version,
                               code_repository, training_start_time, training_end_time, creator,
                               params.KEY, metrics.KEY)
`;

const CHUNK_BYTES = 512 * 1024;
const STAGES: Record<string, Stage> = { production: Stage.PRODUCTION, staging: Stage.STAGING, archived: Stage.ARCHIVED, none: Stage.NONE };

function parse(argv: readonly string[], options: Record<string, { type: "string" | "boolean"; multiple?: boolean; default?: boolean }>) {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: { json: { type: "boolean", default: false }, ...options }, allowPositionals: true, strict: true });
    return { values: values as Record<string, string | boolean | string[] | undefined>, positionals };
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${MODELS_USAGE}`);
  }
}

function keyValues(list: readonly string[] | undefined, flag: string): Array<[string, string]> {
  return (list ?? []).map((kv) => {
    const i = kv.indexOf("=");
    if (i <= 0) throw new UsageError(`--${flag} expects KEY=VALUE, got ${JSON.stringify(kv)}`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  });
}

/** Maps a CARD.md's `## ` headings to the model card fields by title; the rest is kept in order. */
export function parseCardMarkdown(md: string): NonNullable<MessageInitShape<typeof ModelVersionSpecSchema>["card"]> {
  const fields: Record<string, "intendedUse" | "trainingData" | "evaluation" | "limitations" | "ethicalConsiderations"> = {
    "intended use": "intendedUse",
    "training data": "trainingData",
    evaluation: "evaluation",
    "evaluation data": "evaluation",
    limitations: "limitations",
    "ethical considerations": "ethicalConsiderations",
  };
  const card: Record<string, unknown> & { additionalSections: Array<{ title: string; markdown: string }> } = { additionalSections: [] };
  let title: string | undefined;
  let body: string[] = [];
  const flush = () => {
    if (title === undefined) return;
    const text = body.join("\n").trim();
    const f = fields[title.toLowerCase()];
    if (f) card[f] = text;
    else card.additionalSections.push({ title, markdown: text });
  };
  for (const line of md.split(/\r?\n/)) {
    const m = /^##\s+(.+?)\s*#*\s*$/.exec(line);
    if (m) {
      flush();
      title = m[1]!;
      body = [];
    } else if (title !== undefined) body.push(line);
  }
  flush();
  return card;
}

/**
 * A reference sample from a CSV (one column per model input feature, plus the score column
 * if present): numeric when every non-missing value is a number, categorical otherwise.
 * The registry bins it with lib/drift, so push-time and live drift use the same edges.
 */
async function referenceSample(file: string) {
  let csv;
  try {
    csv = await readCsvColumns(file);
  } catch (err) {
    if (err instanceof ValidationError) throw new UsageError(`--reference: ${err.message}`);
    throw new UsageError(`--reference: cannot read ${file}`);
  }
  const columns = [...csv.columns].map(([name, text]) => {
    const present = text.filter((t) => !isMissing(t));
    const numbers = present.map(parseDecimal);
    if (numbers.every((n) => n !== undefined)) return { name, values: { case: "numeric" as const, value: { values: numbers as number[] } } };
    return { name, values: { case: "categorical" as const, value: { values: present } } };
  });
  return { columns };
}

function versionRow(v: ModelVersion) {
  return {
    model: v.modelName,
    version: Number(v.version),
    stage: (Stage[v.stage] ?? "").toLowerCase(),
    aliases: v.aliases.join(","),
    sha256: (v.artifact?.sha256 ?? "").slice(0, 12),
    metrics: Object.entries(v.lineage?.metrics ?? {}).map(([k, m]) => `${k}=${m}`).join(" "),
  };
}

export async function runModels(config: Config, argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const clients = createMeshClients(config, { defaultTimeoutMs: 60_000 });
  const registry = clients.registry;
  try {
    switch (sub) {
      case "push": {
        const { values: v, positionals } = parse(rest, {
          name: { type: "string" },
          metric: { type: "string", multiple: true },
          param: { type: "string", multiple: true },
          tag: { type: "string", multiple: true },
          features: { type: "string" },
          entity: { type: "string", multiple: true },
          dataset: { type: "string", multiple: true },
          "code-version": { type: "string" },
          card: { type: "string" },
          description: { type: "string" },
          reference: { type: "string" },
          reason: { type: "string" },
        });
        const file = positionals[0] ?? "";
        if (!file || positionals.length > 1 || !v.name) throw new UsageError(`push needs FILE.onnx and --name N\n${MODELS_USAGE}`);
        const metrics: Record<string, number> = {};
        for (const [k, raw] of keyValues(v.metric as string[] | undefined, "metric")) {
          const n = Number(raw);
          if (raw.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--metric ${k}=${raw}: ${JSON.stringify(raw)} is not a finite number`);
          metrics[k] = n;
        }
        const datasets = ((v.dataset as string[] | undefined) ?? []).map((d) => {
          const at = d.lastIndexOf("@");
          if (at <= 0) return { uri: d };
          const rev = d.slice(at + 1);
          return { uri: d.slice(0, at), revision: /^[a-z0-9]+:[0-9a-fA-F]{8,}$/.test(rev) ? { case: "digest" as const, value: rev } : { case: "version" as const, value: rev } };
        });
        const features = v.features ? String(v.features).split(",").map((f) => f.trim()).filter(Boolean) : [];
        let size: number;
        try {
          size = (await stat(file)).size;
        } catch {
          throw new UsageError(`cannot read ${file}: no such file`);
        }
        const spec: MessageInitShape<typeof ModelVersionSpecSchema> = {
          description: (v.description as string | undefined) ?? "",
          tags: Object.fromEntries(keyValues(v.tag as string[] | undefined, "tag")),
          lineage: { metrics, params: Object.fromEntries(keyValues(v.param as string[] | undefined, "param")), datasets, codeVersion: (v["code-version"] as string | undefined) ?? "" },
          card: v.card ? parseCardMarkdown(await readFile(String(v.card), "utf8")) : undefined,
          // Without an input name the CLI binds the features to the model's single input;
          // the registry checks the count against the signature.
          reference: v.reference ? { source: { case: "sample", value: await referenceSample(String(v.reference)) } } : undefined,
          featureBinding: features.length ? { inputs: [{ inputName: await singleInputName(file), features }], entityKeys: (v.entity as string[] | undefined) ?? [] } : undefined,
        };
        const hash = createHash("sha256");
        const uploadId = crypto.randomUUID();
        const name = String(v.name);
        async function* parts(): AsyncGenerator<MessageInitShape<typeof UploadModelVersionRequestSchema>> {
          yield { part: { case: "header", value: { uploadId, modelName: name, expectedSizeBytes: BigInt(size), createModelIfMissing: true, spec, reason: (v.reason as string | undefined) ?? "" } } };
          let total = 0;
          for await (const chunk of createReadStream(file, { highWaterMark: CHUNK_BYTES })) {
            hash.update(chunk as Buffer);
            total += (chunk as Buffer).length;
            yield { part: { case: "chunk", value: chunk as Buffer } };
          }
          yield { part: { case: "trailer", value: { sha256: hash.digest("hex"), sizeBytes: BigInt(total) } } };
        }
        const res = await registry.uploadModelVersion(parts() as never);
        const mv = res.modelVersion!;
        if (v.json) printJson({ ...(toJson(ModelVersionSchema, mv) as object), artifactDeduplicated: res.artifactDeduplicated, modelCreated: res.modelCreated });
        else process.stdout.write(`pushed ${mv.modelName}@${mv.version} (sha256 ${mv.artifact?.sha256}, ${mv.artifact?.sizeBytes} bytes${res.artifactDeduplicated ? ", content already stored" : ""})\n`);
        return EXIT.OK;
      }
      case "list": {
        const { values: v } = parse(rest, {});
        const models = [];
        let pageToken = "";
        do {
          const page = await registry.listModels({ pageToken, pageSize: 1000 });
          models.push(...page.registeredModels);
          pageToken = page.nextPageToken;
        } while (pageToken);
        if (v.json) printJson(models.map((m) => toJson(RegisteredModelSchema, m)));
        else printTable(models.map((m) => ({ name: m.name, latest: Number(m.latestVersion), aliases: Object.entries(m.aliases).map(([a, n]) => `${a}=${n}`).join(","), owner: m.owner })), ["name", "latest", "aliases", "owner"]);
        return EXIT.OK;
      }
      case "show": {
        const { values: v, positionals } = parse(rest, {});
        const ref = positionals[0];
        if (!ref) throw new UsageError(`show needs N or N@ref\n${MODELS_USAGE}`);
        if (ref.includes("@")) {
          const mv = (await registry.getModelVersion({ modelRef: ref })).modelVersion!;
          if (v.json) printJson(toJson(ModelVersionSchema, mv));
          else {
            const card = await registry.getModelCard({ modelRef: `${mv.modelName}@${mv.version}` });
            process.stdout.write(card.markdown);
          }
          return EXIT.OK;
        }
        const model = (await registry.getModel({ name: ref })).registeredModel!;
        const versions = (await registry.listModelVersions({ modelName: ref, pageSize: 1000 })).modelVersions;
        if (v.json) printJson({ model: toJson(RegisteredModelSchema, model), versions: versions.map((x) => toJson(ModelVersionSchema, x)) });
        else printTable(versions.map(versionRow), ["version", "stage", "aliases", "sha256", "metrics"]);
        return EXIT.OK;
      }
      case "promote": {
        const { values: v, positionals } = parse(rest, { to: { type: "string" }, override: { type: "boolean", default: false }, reason: { type: "string" } });
        const [name, versionText] = positionals;
        const version = versionText !== undefined && /^[1-9][0-9]*$/.test(versionText) ? BigInt(versionText) : undefined;
        if (!name || version === undefined || !v.to) throw new UsageError(`promote needs N VERSION --to production|staging|archived|none\n${MODELS_USAGE}`);
        const stage = STAGES[String(v.to).toLowerCase()];
        if (stage === undefined) throw new UsageError(`--to must be production, staging, archived or none, got ${JSON.stringify(v.to)}`);
        if (v.override && !v.reason) throw new UsageError("--override needs --reason (it is recorded in the audit log)");
        if (stage === Stage.PRODUCTION) {
          const r = await registry.promoteModelVersion({ modelName: name, version, override: v.override === true, reason: (v.reason as string | undefined) ?? "" });
          if (v.json) printJson({ modelVersion: toJson(ModelVersionSchema, r.modelVersion!), displacedVersion: Number(r.displacedVersion), overridden: r.overridden, ruleResults: r.ruleResults.map((x) => toJson(PromotionRuleResultSchema, x)) });
          else {
            process.stdout.write(`${name}@${version} is in production${r.displacedVersion ? ` (v${r.displacedVersion} moved out)` : ""}${r.overridden ? " — OVERRIDDEN policy" : ""}\n`);
            printRules(r.ruleResults);
          }
          return EXIT.OK;
        }
        const r = await registry.transitionStage({ modelName: name, version, stage, reason: (v.reason as string | undefined) ?? "" });
        if (v.json) printJson({ modelVersion: toJson(ModelVersionSchema, r.modelVersion!), displacedVersion: Number(r.displacedVersion) });
        else process.stdout.write(`${name}@${version} is in ${String(v.to).toLowerCase()}${r.displacedVersion ? ` (v${r.displacedVersion} moved out)` : ""}\n`);
        return EXIT.OK;
      }
      case "alias": {
        const { values: v, positionals } = parse(rest, { reason: { type: "string" } });
        const [name, alias, versionText] = positionals;
        if (!name || !alias || !versionText || !/^[1-9][0-9]*$/.test(versionText)) throw new UsageError(`alias needs N ALIAS VERSION\n${MODELS_USAGE}`);
        const r = await registry.setAlias({ modelName: name, alias, version: BigInt(versionText), reason: (v.reason as string | undefined) ?? "" });
        if (v.json) printJson({ alias, version: Number(versionText), previousVersion: Number(r.previousVersion) });
        else process.stdout.write(`${name}@${alias} -> v${versionText}${r.previousVersion ? ` (was v${r.previousVersion})` : ""}\n`);
        return EXIT.OK;
      }
      case "policy": {
        const [action, ...more] = rest;
        const { values: v, positionals } = parse(more, { reason: { type: "string" } });
        const [name, ...ruleTexts] = positionals;
        if (!name || (action !== "set" && action !== "show")) throw new UsageError(`policy set N RULE... | policy show N\n${MODELS_USAGE}`);
        let policy;
        if (action === "set") {
          let rules;
          try {
            rules = ruleTexts.map(parseRuleText);
          } catch (err) {
            if (err instanceof ValidationError) throw new UsageError(`${err.message}\n${MODELS_USAGE}`);
            throw err;
          }
          policy = (await registry.setPromotionPolicy({ policy: { modelName: name, rules }, reason: (v.reason as string | undefined) ?? "" })).policy!;
        } else policy = (await registry.getPromotionPolicy({ modelName: name })).policy!;
        if (v.json) printJson(toJson(PromotionPolicySchema, policy));
        else {
          process.stdout.write(`${name} promotion policy, revision ${policy.revision}${policy.rules.length ? ":" : ": no rules (any version may enter production)"}\n`);
          for (const r of policy.rules) process.stdout.write(`  ${r.description}\n`);
        }
        return EXIT.OK;
      }
      case "card": {
        const { values: v, positionals } = parse(rest, {});
        if (!positionals[0]) throw new UsageError(`card needs N or N@ref\n${MODELS_USAGE}`);
        const res = await registry.getModelCard({ modelRef: positionals[0] });
        if (v.json) printJson({ model: res.modelName, version: Number(res.version), markdown: res.markdown });
        else process.stdout.write(res.markdown.endsWith("\n") ? res.markdown : `${res.markdown}\n`);
        return EXIT.OK;
      }
      case "audit": {
        const { values: v, positionals } = parse(rest, {});
        if (!positionals[0]) throw new UsageError(`audit needs N\n${MODELS_USAGE}`);
        const records = (await registry.listAuditRecords({ modelName: positionals[0], pageSize: 1000 })).auditRecords;
        if (v.json) printJson(records.map((r) => ({ sequence: Number(r.sequence), time: r.time ? new Date(Number(r.time.seconds) * 1000 + Math.floor(r.time.nanos / 1e6)).toISOString() : "", principal: r.principal, action: r.action, resource: r.resource, reason: r.reason, before: r.beforeJson ? JSON.parse(r.beforeJson) : null, after: r.afterJson ? JSON.parse(r.afterJson) : null })));
        else printTable(records.map((r) => ({ seq: Number(r.sequence), time: r.time ? new Date(Number(r.time.seconds) * 1000).toISOString() : "", principal: r.principal, action: r.action, resource: r.resource, reason: r.reason })), ["seq", "time", "principal", "action", "resource", "reason"]);
        return EXIT.OK;
      }
      case undefined:
      case "help":
      case "--help":
        process.stdout.write(MODELS_USAGE);
        return sub === undefined ? EXIT.USAGE : EXIT.OK;
      default:
        throw new UsageError(`unknown models command ${JSON.stringify(sub)}\n${MODELS_USAGE}`);
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (err instanceof ConnectError) return reportRpcError(err);
    throw err;
  }
}

function printRules(results: ReadonlyArray<{ passed: boolean; rule?: { description: string }; actual: string; required: string }>): void {
  for (const r of results) process.stdout.write(`  ${r.passed ? "pass" : "FAIL"}  ${r.rule?.description ?? ""}  (actual ${r.actual}, required ${r.required})\n`);
}

function reportRpcError(err: ConnectError): number {
  const rejected = err.findDetails(PromotionRejectedSchema)[0];
  if (err.code === Code.Unavailable) {
    printError(`the registry could not be reached (${err.rawMessage}); is it running? (mlmesh up, or set MLMESH_REGISTRY_ADDR)`);
    return EXIT.UNAVAILABLE;
  }
  printError(`${codeName(err.code)}: ${err.rawMessage}`);
  if (rejected) {
    process.stderr.write("failed rules:\n");
    for (const r of rejected.failedRules) process.stderr.write(`  ${r.rule?.description}: actual ${r.actual}, required ${r.required}\n`);
  }
  return EXIT.FAILED;
}

/** Name of the model's single graph input, read from the file (the registry reads it properly). */
async function singleInputName(file: string): Promise<string> {
  const ort = await import("onnxruntime-node");
  let session;
  try {
    session = await ort.InferenceSession.create(file);
  } catch {
    throw new UsageError(`${file} is not an ONNX model onnxruntime can load`);
  }
  try {
    if (session.inputNames.length !== 1) throw new UsageError(`--features binds one input, but ${file} has ${session.inputNames.length} inputs (${session.inputNames.join(", ")})`);
    return session.inputNames[0]!;
  } finally {
    await session.release();
  }
}
