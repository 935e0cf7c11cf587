// `mlmesh endpoints|predict|rank|rollout ...`: the router from the command line — apply
// endpoint files, show and change serving plans, get predictions and rankings, and drive
// progressive rollouts. Results on stdout (--json for scripts), errors on stderr.

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BlueGreenColor,
  EndpointSchema,
  GateVerdict,
  RolloutSchema,
  RolloutSpecSchema,
  RolloutState,
  ServedBy,
  ServingPlanSchema,
  type Endpoint,
  type Rollout,
} from "../gen/mlmesh/router/v1/router_resources_pb.js";
import { GetShadowStatsResponseSchema, PredictResponseSchema, RankResponseSchema } from "../gen/mlmesh/router/v1/router_service_pb.js";
import type { Value } from "../gen/mlmesh/types/v1/types_pb.js";
import type { Config } from "../lib/config.js";
import { codeName } from "../lib/errors.js";
import { createMeshClients } from "../lib/mesh-clients.js";
import { gateName } from "../services/router/rollout.js";
import { EXIT, printError, printJson, printTable, UsageError } from "./output.js";

export const ROUTER_USAGE = `Usage:
  mlmesh endpoints apply FILE.json [--reason TEXT] [--dry-run] [--json]   FILE holds one endpoint or an array
  mlmesh endpoints list [--model NAME] [--json]
  mlmesh endpoints get NAME [--json]
  mlmesh endpoints delete NAME [--force] [--reason TEXT] [--json]
  mlmesh endpoints plan show NAME [--json]
  mlmesh endpoints plan set NAME PLAN.json [--reason TEXT] [--json]        PLAN.json: a ServingPlan, e.g.
                                 {"canary":{"canaryModelRef":"churn@3","canaryWeight":0.1}}
  mlmesh endpoints plan switch NAME [--to blue|green] [--reason TEXT] [--json]
  mlmesh endpoints plan shadow-stats NAME [--json]
  mlmesh endpoints audit NAME [--json]
  mlmesh predict ENDPOINT --entity KEY=VALUE... [--context KEY=VALUE]... [--unit ID] [--timings] [--json]
  mlmesh rank ENDPOINT --entity KEY=VALUE --candidates a,b,c [--k N] [--context KEY=VALUE]... [--explain] [--json]
  mlmesh rollout start ENDPOINT --version N [--steps 1,5,10,25,50,100] [--interval 60s] [--min-requests 200]
                       [--max-p99-ms X] [--max-error-rate R] [--max-score-psi P] [--max-drift-psi P]
                       [--max-inconclusive N] [--manual-promotion] [--reason TEXT] [--json]
  mlmesh rollout status ENDPOINT [--id ROLLOUT] [--json]
  mlmesh rollout list [ENDPOINT] [--json]
  mlmesh rollout pause|resume ENDPOINT [--reason TEXT] [--json]
  mlmesh rollout promote|rollback ENDPOINT [--reason TEXT] [--json]

Steps are percentages of units sent to the canary; --version is a version number or a ref
(churn@7, churn@staging). Entity values that look like integers are sent as int64.
`;

type Opts = Record<string, { type: "string" | "boolean"; multiple?: boolean; default?: boolean }>;

function parse(argv: readonly string[], options: Opts) {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: { json: { type: "boolean", default: false }, ...options }, allowPositionals: true, strict: true });
    return { values: values as Record<string, string | boolean | string[] | undefined>, positionals };
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${ROUTER_USAGE}`);
  }
}

function keyValues(list: readonly string[] | undefined, flag: string): Array<[string, string]> {
  return (list ?? []).map((kv) => {
    const i = kv.indexOf("=");
    if (i <= 0) throw new UsageError(`--${flag} expects KEY=VALUE, got ${JSON.stringify(kv)}`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  });
}

/** Entity key values: integers as int64 (the usual key type), the rest as strings. */
function keyValue(s: string): Value {
  return (/^-?\d{1,18}$/.test(s) ? { kind: { case: "int64Value", value: BigInt(s) } } : { kind: { case: "stringValue", value: s } }) as Value;
}

/** Context values: numbers as doubles, true/false as bools, the rest as strings. */
function contextValue(s: string): Value {
  if (s === "true" || s === "false") return { kind: { case: "boolValue", value: s === "true" } } as Value;
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(s)) return { kind: { case: "doubleValue", value: Number(s) } } as Value;
  return { kind: { case: "stringValue", value: s } } as Value;
}

function durationArg(s: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new UsageError(`--${flag} expects a duration such as 500ms, 60s, 5m`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
}

function numberArg(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${flag} expects a number, got ${JSON.stringify(v)}`);
  return n;
}

async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new UsageError(`cannot read ${file}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
}

function endpointFromJson(obj: unknown, where: string): Endpoint {
  try {
    return fromJson(EndpointSchema, obj as JsonValue);
  } catch (err) {
    throw new UsageError(`${where}: ${(err as Error).message}`);
  }
}

const pct = (w: number) => `${Number((w * 100).toFixed(2))}%`;
const stateName = (s: RolloutState) => (RolloutState[s] ?? "UNSPECIFIED").toLowerCase();

function printRollout(r: Rollout): void {
  process.stdout.write(`rollout ${r.id} on ${r.endpoint}: ${r.model} v${r.canaryVersion} vs production v${r.productionVersion}\n`);
  process.stdout.write(`  state ${stateName(r.state)}, step ${r.currentStepIndex + 1}/${r.spec?.steps.length ?? 0}, canary weight ${pct(r.currentWeight)}\n`);
  if (r.reason) process.stdout.write(`  reason: ${r.reason}\n`);
  for (const g of r.gates) {
    process.stdout.write(`  gate ${gateName(g.gate).padEnd(12)} ${(GateVerdict[g.verdict] ?? "").toLowerCase().padEnd(12)} value ${Number(g.value.toFixed(4))} threshold ${g.threshold}${g.reason ? `  (${g.reason})` : ""}\n`);
  }
}

function rolloutJson(r: Rollout): unknown {
  return toJson(RolloutSchema, r);
}

export async function runRouterCommand(config: Config, command: string, args: readonly string[]): Promise<number> {
  const clients = createMeshClients(config);
  const router = clients.router;
  try {
    switch (command) {
      case "predict": {
        const { values: v, positionals } = parse(args, { entity: { type: "string", multiple: true }, context: { type: "string", multiple: true }, unit: { type: "string" }, timings: { type: "boolean" } });
        const endpoint = positionals[0];
        if (!endpoint) throw new UsageError(`mlmesh predict needs an ENDPOINT\n${ROUTER_USAGE}`);
        const entity = keyValues(v.entity as string[] | undefined, "entity");
        if (entity.length === 0) throw new UsageError("mlmesh predict needs at least one --entity KEY=VALUE");
        const res = await router.predict({
          endpoint,
          entityKey: { keys: Object.fromEntries(entity.map(([k, x]) => [k, keyValue(x)])) },
          context: Object.fromEntries(keyValues(v.context as string[] | undefined, "context").map(([k, x]) => [k, contextValue(x)])),
          unitId: (v.unit as string | undefined) ?? "",
          includeTimings: Boolean(v.timings),
        });
        if (v.json) {
          printJson({ ...(toJson(PredictResponseSchema, res, { alwaysEmitImplicit: true }) as object), score: res.score, model: res.model, version: Number(res.version) });
        } else {
          process.stdout.write(`score ${res.score}  ${res.model ? `${res.model} v${res.version}` : "fallback"}  served by ${(ServedBy[res.servedBy] ?? "").toLowerCase()}${res.arm ? ` (arm ${res.arm})` : ""}${res.degraded ? "  DEGRADED" : ""}\n`);
          for (const f of res.fallbacks) process.stdout.write(`  fallback: ${f.reason}\n`);
        }
        return EXIT.OK;
      }
      case "rank": {
        const { values: v, positionals } = parse(args, { entity: { type: "string", multiple: true }, context: { type: "string", multiple: true }, candidates: { type: "string" }, k: { type: "string" }, unit: { type: "string" }, explain: { type: "boolean" }, timings: { type: "boolean" } });
        const endpoint = positionals[0];
        if (!endpoint) throw new UsageError(`mlmesh rank needs an ENDPOINT\n${ROUTER_USAGE}`);
        const entity = keyValues(v.entity as string[] | undefined, "entity");
        const k = numberArg(v.k as string | undefined, "k") ?? 0;
        if (!Number.isInteger(k) || k < 0) throw new UsageError("--k expects a non-negative integer");
        const candidates = String(v.candidates ?? "").split(",").map((s) => s.trim()).filter(Boolean);
        const res = await router.rank({
          endpoint,
          entityKey: { keys: Object.fromEntries(entity.map(([kk, x]) => [kk, keyValue(x)])) },
          candidates: candidates.map((id) => ({ id })),
          k,
          context: Object.fromEntries(keyValues(v.context as string[] | undefined, "context").map(([kk, x]) => [kk, contextValue(x)])),
          unitId: (v.unit as string | undefined) ?? "",
          explain: Boolean(v.explain),
          includeTimings: Boolean(v.timings),
        });
        if (v.json) printJson({ ...(toJson(RankResponseSchema, res) as object), model: res.model, version: Number(res.version) });
        else {
          printTable(res.items.map((i) => ({ rank: i.rank, id: i.id, score: Number(i.score.toFixed(6)), boosts: i.boostsApplied.join(",") })), ["rank", "id", "score", "boosts"]);
          process.stdout.write(`${res.model} v${res.version}; ${res.candidatesScored} of ${res.candidatesReceived} candidates scored\n`);
        }
        return EXIT.OK;
      }
      case "endpoints":
        return await endpointsCommand(clients.router, args);
      case "rollout":
        return await rolloutCommand(clients.router, args);
      default:
        throw new UsageError(`unknown command ${command}\n${ROUTER_USAGE}`);
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (err instanceof ConnectError) return reportRpcError(err);
    throw err;
  }
}

type RouterClient = ReturnType<typeof createMeshClients>["router"];

async function endpointsCommand(router: RouterClient, args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "apply": {
      const { values: v, positionals } = parse(rest, { reason: { type: "string" }, "dry-run": { type: "boolean" } });
      const file = positionals[0];
      if (!file) throw new UsageError(`mlmesh endpoints apply needs FILE.json\n${ROUTER_USAGE}`);
      const raw = await readJsonFile(file);
      const list = Array.isArray(raw) ? raw : [raw];
      const specs = list.map((o, i) => endpointFromJson(o, Array.isArray(raw) ? `${file}[${i}]` : file));
      const results = [];
      for (const spec of specs) {
        const r = await router.applyEndpoint({ endpoint: spec, reason: (v.reason as string | undefined) ?? "", validateOnly: Boolean(v["dry-run"]) });
        results.push(r);
        if (!v.json) {
          const verb = v["dry-run"] ? "valid" : r.created ? "created" : r.changed ? "updated" : "unchanged";
          process.stdout.write(`endpoint ${r.endpoint!.name} ${verb} (generation ${r.endpoint!.status?.generation ?? 0n}, plan revision ${r.endpoint!.status?.planRevision ?? 0n})\n`);
        }
      }
      if (v.json) printJson(results.map((r) => ({ endpoint: toJson(EndpointSchema, r.endpoint!), created: r.created, changed: r.changed })));
      return EXIT.OK;
    }
    case "list": {
      const { values: v } = parse(rest, { model: { type: "string" } });
      const all: Endpoint[] = [];
      let pageToken = "";
      do {
        const page = await router.listEndpoints({ model: (v.model as string | undefined) ?? "", pageSize: 1000, pageToken });
        all.push(...page.endpoints);
        pageToken = page.nextPageToken;
      } while (pageToken);
      if (v.json) printJson(all.map((e) => toJson(EndpointSchema, e)));
      else
        printTable(
          all.map((e) => ({ name: e.name, model: e.model, plan: e.servingPlan?.plan.case ?? "", revision: Number(e.status?.planRevision ?? 0n), traffic: (e.status?.traffic ?? []).map((t) => `${t.version ? `v${t.version}` : `${t.modelRef}(unresolved)`}:${t.shadow ? `shadow ${pct(t.mirrorFraction)}` : pct(t.weight)}`).join(" "), rollout: e.status?.activeRolloutId ?? "" })),
          ["name", "model", "plan", "revision", "traffic", "rollout"],
        );
      return EXIT.OK;
    }
    case "get": {
      const { values: v, positionals } = parse(rest, {});
      if (!positionals[0]) throw new UsageError("mlmesh endpoints get needs NAME");
      const e = (await router.getEndpoint({ name: positionals[0] })).endpoint!;
      if (v.json) printJson(toJson(EndpointSchema, e));
      else process.stdout.write(`${JSON.stringify(toJson(EndpointSchema, e), null, 2)}\n`);
      return EXIT.OK;
    }
    case "delete": {
      const { values: v, positionals } = parse(rest, { force: { type: "boolean" }, reason: { type: "string" } });
      if (!positionals[0]) throw new UsageError("mlmesh endpoints delete needs NAME");
      const r = await router.deleteEndpoint({ name: positionals[0], force: Boolean(v.force), reason: (v.reason as string | undefined) ?? "" });
      if (v.json) printJson(toJson(EndpointSchema, r.endpoint!));
      else process.stdout.write(`endpoint ${positionals[0]} deleted\n`);
      return EXIT.OK;
    }
    case "audit": {
      const { values: v, positionals } = parse(rest, {});
      if (!positionals[0]) throw new UsageError("mlmesh endpoints audit needs NAME");
      const r = await router.listAuditRecords({ resourcePrefix: `endpoints/${positionals[0]}`, pageSize: 1000 });
      if (v.json) printJson(r.records.map((x) => ({ sequence: Number(x.sequence), principal: x.principal, action: x.action, resource: x.resource, reason: x.reason })));
      else printTable(r.records.map((x) => ({ seq: Number(x.sequence), action: x.action, resource: x.resource, principal: x.principal, reason: x.reason })), ["seq", "action", "resource", "principal", "reason"]);
      return EXIT.OK;
    }
    case "plan":
      return await planCommand(router, rest);
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(ROUTER_USAGE);
      return sub === undefined ? EXIT.USAGE : EXIT.OK;
    default:
      throw new UsageError(`unknown endpoints command ${JSON.stringify(sub)}\n${ROUTER_USAGE}`);
  }
}

async function planCommand(router: RouterClient, args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values: v, positionals } = parse(rest, { reason: { type: "string" }, to: { type: "string" } });
  const name = positionals[0];
  if (!name) throw new UsageError(`mlmesh endpoints plan ${sub ?? ""} needs NAME\n${ROUTER_USAGE}`);
  switch (sub) {
    case "show": {
      const r = await router.getServingPlan({ endpoint: name });
      if (v.json) printJson({ plan: toJson(ServingPlanSchema, r.plan!), revision: Number(r.revision), activeRolloutId: r.activeRolloutId, traffic: r.traffic.map((t) => ({ modelRef: t.modelRef, version: Number(t.version), role: ServedBy[t.role], weight: t.weight, shadow: t.shadow, mirrorFraction: t.mirrorFraction })) });
      else {
        process.stdout.write(`plan revision ${r.revision}: ${JSON.stringify(toJson(ServingPlanSchema, r.plan!))}\n`);
        for (const t of r.traffic) process.stdout.write(`  ${t.modelRef} -> v${t.version}  ${(ServedBy[t.role] ?? "").toLowerCase()}  ${t.shadow ? `shadow ${pct(t.mirrorFraction)}` : pct(t.weight)}\n`);
      }
      return EXIT.OK;
    }
    case "set": {
      const file = positionals[1];
      if (!file) throw new UsageError("mlmesh endpoints plan set needs NAME PLAN.json");
      let plan;
      try {
        plan = fromJson(ServingPlanSchema, (await readJsonFile(file)) as JsonValue);
      } catch (err) {
        if (err instanceof UsageError) throw err;
        throw new UsageError(`${file}: ${(err as Error).message}`);
      }
      const r = await router.setServingPlan({ endpoint: name, plan, reason: (v.reason as string | undefined) ?? "" });
      if (v.json) printJson({ plan: toJson(ServingPlanSchema, r.plan!), revision: Number(r.revision), changed: r.changed });
      else process.stdout.write(`plan of ${name} ${r.changed ? "set" : "unchanged"} (revision ${r.revision})\n`);
      return EXIT.OK;
    }
    case "switch": {
      const to = v.to === undefined ? BlueGreenColor.UNSPECIFIED : v.to === "blue" ? BlueGreenColor.BLUE : v.to === "green" ? BlueGreenColor.GREEN : undefined;
      if (to === undefined) throw new UsageError("--to expects blue or green");
      const r = await router.switchBlueGreen({ endpoint: name, target: to, reason: (v.reason as string | undefined) ?? "" });
      const colour = (c: BlueGreenColor) => (BlueGreenColor[c] ?? "").toLowerCase();
      if (v.json) printJson({ active: colour(r.active), previous: colour(r.previous), revision: Number(r.revision), changed: r.changed });
      else process.stdout.write(`${name}: ${colour(r.previous)} -> ${colour(r.active)} (revision ${r.revision})\n`);
      return EXIT.OK;
    }
    case "shadow-stats": {
      const r = await router.getShadowStats({ endpoint: name });
      if (v.json) printJson(toJson(GetShadowStatsResponseSchema, r));
      else
        printTable(
          r.shadows.map((s) => ({ shadow: s.modelRef, version: Number(s.version), mirrored: Number(s.mirroredRequests), compared: Number(s.comparedRequests), errors: Number(s.shadowErrors), agreement: Number(s.agreementRate.toFixed(4)), mean_abs_diff: Number(s.meanAbsScoreDiff.toFixed(6)), psi: Number(s.scorePsi.toFixed(4)) })),
          ["shadow", "version", "mirrored", "compared", "errors", "agreement", "mean_abs_diff", "psi"],
        );
      return EXIT.OK;
    }
    default:
      throw new UsageError(`unknown endpoints plan command ${JSON.stringify(sub)}\n${ROUTER_USAGE}`);
  }
}

async function rolloutCommand(router: RouterClient, args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "start": {
      const { values: v, positionals } = parse(rest, {
        version: { type: "string" },
        steps: { type: "string" },
        interval: { type: "string" },
        "min-requests": { type: "string" },
        "max-p99-ms": { type: "string" },
        "max-error-rate": { type: "string" },
        "max-score-psi": { type: "string" },
        "max-drift-psi": { type: "string" },
        "max-inconclusive": { type: "string" },
        "manual-promotion": { type: "boolean" },
        reason: { type: "string" },
      });
      const endpoint = positionals[0];
      if (!endpoint || !v.version) throw new UsageError(`mlmesh rollout start needs ENDPOINT and --version N\n${ROUTER_USAGE}`);
      const version = String(v.version);
      let modelRef = version;
      if (/^\d+$/.test(version)) {
        const ep = (await router.getEndpoint({ name: endpoint })).endpoint!;
        modelRef = `${ep.model}@${version}`;
      }
      const steps = v.steps === undefined ? [] : String(v.steps).split(",").map((s) => {
        const n = numberArg(s, "steps");
        return n! / 100;
      });
      const minReq = numberArg(v["min-requests"] as string | undefined, "min-requests");
      const spec = create(RolloutSpecSchema, {
        steps,
        interval: v.interval ? durationFromMs(durationArg(String(v.interval), "interval")) : undefined,
        minRequests: minReq === undefined ? undefined : BigInt(Math.round(minReq)),
        maxP99Ms: numberArg(v["max-p99-ms"] as string | undefined, "max-p99-ms"),
        maxErrorRate: numberArg(v["max-error-rate"] as string | undefined, "max-error-rate"),
        maxScorePsi: numberArg(v["max-score-psi"] as string | undefined, "max-score-psi"),
        maxDriftPsi: numberArg(v["max-drift-psi"] as string | undefined, "max-drift-psi"),
        maxInconclusiveIntervals: numberArg(v["max-inconclusive"] as string | undefined, "max-inconclusive") ?? 0,
        requireManualPromotion: Boolean(v["manual-promotion"]),
      });
      const r = (await router.startRollout({ endpoint, modelRef, spec, reason: (v.reason as string | undefined) ?? "" })).rollout!;
      if (v.json) printJson(rolloutJson(r));
      else printRollout(r);
      return EXIT.OK;
    }
    case "status": {
      const { values: v, positionals } = parse(rest, { id: { type: "string" } });
      if (!positionals[0]) throw new UsageError("mlmesh rollout status needs ENDPOINT");
      const r = (await router.getRolloutStatus({ endpoint: positionals[0], rolloutId: (v.id as string | undefined) ?? "" })).rollout!;
      if (v.json) printJson(rolloutJson(r));
      else printRollout(r);
      return EXIT.OK;
    }
    case "list": {
      const { values: v, positionals } = parse(rest, {});
      const r = await router.listRollouts({ endpoint: positionals[0] ?? "", pageSize: 1000 });
      if (v.json) printJson(r.rollouts.map(rolloutJson));
      else printTable(r.rollouts.map((x) => ({ id: x.id, endpoint: x.endpoint, canary: `${x.model}@${x.canaryVersion}`, state: stateName(x.state), weight: pct(x.currentWeight) })), ["id", "endpoint", "canary", "state", "weight"]);
      return EXIT.OK;
    }
    case "pause":
    case "resume":
    case "promote":
    case "rollback": {
      const { values: v, positionals } = parse(rest, { reason: { type: "string" }, id: { type: "string" } });
      const endpoint = positionals[0];
      if (!endpoint) throw new UsageError(`mlmesh rollout ${sub} needs ENDPOINT`);
      const reason = (v.reason as string | undefined) ?? `mlmesh rollout ${sub}`;
      const req = { endpoint, rolloutId: (v.id as string | undefined) ?? "", reason };
      const r =
        sub === "pause"
          ? (await router.pauseRollout(req)).rollout!
          : sub === "resume"
            ? (await router.resumeRollout(req)).rollout!
            : sub === "promote"
              ? (await router.promoteRollout(req)).rollout!
              : (await router.rollbackRollout(req)).rollout!;
      if (v.json) printJson(rolloutJson(r));
      else printRollout(r);
      return EXIT.OK;
    }
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(ROUTER_USAGE);
      return sub === undefined ? EXIT.USAGE : EXIT.OK;
    default:
      throw new UsageError(`unknown rollout command ${JSON.stringify(sub)}\n${ROUTER_USAGE}`);
  }
}

function reportRpcError(err: ConnectError): number {
  if (err.code === Code.Unavailable && /connect|ECONNREFUSED|No connection/i.test(err.rawMessage)) {
    printError(`the router could not be reached (${err.rawMessage}); is it running? (mlmesh up, or set MLMESH_ROUTER_ADDR)`);
    return EXIT.UNAVAILABLE;
  }
  printError(`${codeName(err.code)}: ${err.rawMessage}`);
  return EXIT.FAILED;
}
