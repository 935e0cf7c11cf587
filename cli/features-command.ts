// `mlmesh features apply|list|get`: thin clients of the feature service. Definitions come
// from a JSON file (one view or an array) in the short shape of issue #5; results go to
// stdout as a table or --json, errors to stderr with a meaningful exit code.

import fs from "node:fs";
import { parseArgs } from "node:util";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ApplyOutcome, FeatureStatus, type FeatureViewSchema } from "../gen/mlmesh/features/v1/features_resources_pb.js";
import { ValueType, type Value } from "../gen/mlmesh/types/v1/types_pb.js";
import type { Config } from "../lib/config.js";
import { codeName } from "../lib/errors.js";
import { createMeshClients } from "../lib/mesh-clients.js";
import { EXIT, printError, printJson, printTable, UsageError } from "./output.js";

const USAGE = `Usage:
  mlmesh features apply FILE.json [--validate-only] [--reason TEXT] [--json]
  mlmesh features list [--prefix P] [--json]
  mlmesh features get REF[,REF...] --entity KEY=VALUE[,KEY=VALUE] [--entity ...] [--json]`;

const TYPES: Record<string, ValueType> = {
  float32: ValueType.FLOAT32,
  float: ValueType.FLOAT32,
  float64: ValueType.FLOAT64,
  double: ValueType.FLOAT64,
  int64: ValueType.INT64,
  int: ValueType.INT64,
  string: ValueType.STRING,
  bool: ValueType.BOOL,
  float_vector: ValueType.FLOAT_VECTOR,
};

type ViewInit = MessageInitShape<typeof FeatureViewSchema>;

function typeOf(raw: unknown, where: string): ValueType {
  if (raw === undefined) return ValueType.UNSPECIFIED;
  const t = TYPES[String(raw).toLowerCase()];
  if (t === undefined) throw new UsageError(`${where}: unknown type ${JSON.stringify(raw)}; use one of ${Object.keys(TYPES).join(", ")}`);
  return t;
}

/** "7d", "12h", "30m", "45s", "500ms" or a number of seconds. */
export function parseDuration(raw: unknown, where: string): { seconds: bigint; nanos: number } | undefined {
  if (raw === undefined || raw === null || raw === "" || raw === 0) return undefined;
  const m = typeof raw === "number" ? [String(raw), String(raw), "s"] : /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(String(raw).trim());
  if (!m) throw new UsageError(`${where}: ${JSON.stringify(raw)} is not a duration like 7d, 12h, 30m, 45s`);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
  const ms = Math.round(Number(m[1]) * unit[m[2]!]!);
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

type Obj = Record<string, unknown>;
const arr = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** The file's short shape -> FeatureView. Unknown keys are an error, as in the RPC. */
export function viewFromFile(raw: Obj, i: number): ViewInit {
  const at = `view ${i} (${String(raw.name ?? "?")})`;
  const known = new Set(["name", "entities", "features", "ttl", "description", "owner", "labels", "on_demand_features", "request_fields"]);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw new UsageError(`${at}: unknown key ${JSON.stringify(k)}; allowed: ${[...known].join(", ")}`);
  return {
    name: String(raw.name ?? ""),
    entities: arr(raw.entities).map((e, j) =>
      typeof e === "string" ? { name: e } : { name: String((e as Obj).name), type: typeOf((e as Obj).type, `${at} entities[${j}]`), description: String((e as Obj).description ?? "") },
    ),
    features: arr(raw.features).map((f, j) => {
      const o = f as Obj;
      return {
        name: String(o.name ?? ""),
        type: typeOf(o.type, `${at} features[${j}]`),
        vectorDimension: Number(o.vector_dimension ?? 0),
        pii: o.pii === true,
        description: String(o.description ?? ""),
        labels: (o.labels ?? {}) as Record<string, string>,
      };
    }),
    ttl: parseDuration(raw.ttl, `${at} ttl`),
    description: String(raw.description ?? ""),
    owner: String(raw.owner ?? ""),
    labels: (raw.labels ?? {}) as Record<string, string>,
    requestFields: arr(raw.request_fields).map((r, j) => {
      const o = r as Obj;
      return { name: String(o.name ?? ""), type: typeOf(o.type, `${at} request_fields[${j}]`), required: o.required === true, description: String(o.description ?? "") };
    }),
    onDemandFeatures: arr(raw.on_demand_features).map((d, j) => {
      const o = d as Obj;
      return {
        name: String(o.name ?? ""),
        transform: String(o.transform ?? ""),
        // "view:feature" is a stored feature; {"request_field": "x"} a request field.
        inputs: arr(o.inputs).map((input) =>
          typeof input === "string"
            ? { source: { case: "featureRef" as const, value: input } }
            : { source: { case: "requestField" as const, value: String((input as Obj).request_field) } },
        ),
        params: (o.params ?? {}) as never,
        type: typeOf(o.type, `${at} on_demand_features[${j}]`),
        pii: o.pii === true,
        description: String(o.description ?? ""),
      };
    }),
  };
}

function formatValue(v: Value | undefined): string {
  const k = v?.kind;
  if (!k || k.case === undefined) return "";
  if (k.case === "floatVectorValue") return `[${k.value.values.join(" ")}]`;
  return String(k.value);
}

export async function runFeatures(config: Config, argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "help" || sub === "--help" || sub === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.OK;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: {
        json: { type: "boolean", default: false },
        "validate-only": { type: "boolean", default: false },
        reason: { type: "string", default: "" },
        prefix: { type: "string", default: "" },
        entity: { type: "string", multiple: true, default: [] },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  const json = values.json === true;
  const client = createMeshClients(config).features;
  try {
    switch (sub) {
      case "apply": {
        const file = positionals[0];
        if (!file || positionals.length > 1) throw new UsageError(`apply takes one file\n${USAGE}`);
        let doc: unknown;
        try {
          doc = JSON.parse(fs.readFileSync(file, "utf8"));
        } catch (err) {
          throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
        }
        const views = arr(doc).map((v, i) => viewFromFile(v as Obj, i));
        const res = await client.applyFeatureViews({ views, validateOnly: values["validate-only"] === true, reason: String(values.reason) });
        const rows = res.results.map((r) => ({
          name: r.name,
          outcome: ApplyOutcome[r.outcome] ?? String(r.outcome),
          version: String(r.view?.version ?? 0n),
          changes: r.changes.join("; "),
        }));
        if (json) printJson(rows);
        else printTable(rows, ["name", "outcome", "version", "changes"]);
        return EXIT.OK;
      }
      case "list": {
        const rows: Array<Record<string, string>> = [];
        let pageToken = "";
        do {
          const page = await client.listFeatureViews({ namePrefix: String(values.prefix), pageToken });
          for (const v of page.views) {
            rows.push({
              name: v.name,
              version: String(v.version),
              entities: v.entities.map((e) => e.name).join(","),
              features: [...v.features.map((f) => f.name), ...v.onDemandFeatures.map((f) => `${f.name}*`)].join(","),
              ttl: v.ttl ? `${v.ttl.seconds}s` : "",
              owner: v.owner,
            });
          }
          pageToken = page.nextPageToken;
        } while (pageToken);
        if (json) printJson(rows);
        else printTable(rows, ["name", "version", "entities", "features", "ttl", "owner"]);
        return EXIT.OK;
      }
      case "get": {
        if (positionals.length !== 1) throw new UsageError(`get takes one comma-separated list of refs\n${USAGE}`);
        const refs = positionals[0]!.split(",").map((r) => r.trim()).filter(Boolean);
        const entities = (values.entity as string[]).map((spec) => {
          const keys: Record<string, { kind: { case: "stringValue"; value: string } }> = {};
          for (const pair of spec.split(",")) {
            const eq = pair.indexOf("=");
            if (eq <= 0) throw new UsageError(`--entity ${JSON.stringify(spec)}: expected KEY=VALUE[,KEY=VALUE]`);
            // Sent as strings: the server normalises them to each key's declared type.
            keys[pair.slice(0, eq)] = { kind: { case: "stringValue", value: pair.slice(eq + 1) } };
          }
          return { keys };
        });
        if (entities.length === 0) throw new UsageError(`get needs at least one --entity\n${USAGE}`);
        const res = await client.getOnlineFeatures({ entities, refs });
        const rows = res.rows.map((r, i) => {
          const row: Record<string, string> = { entity: String(values.entity![i]) };
          res.refs.forEach((ref, c) => {
            const v = r.values[c]!;
            row[ref] = v.status === FeatureStatus.PRESENT ? formatValue(v.value) : (FeatureStatus[v.status] ?? "");
          });
          return row;
        });
        if (json) printJson(rows);
        else printTable(rows, ["entity", ...res.refs]);
        return EXIT.OK;
      }
      default:
        throw new UsageError(`unknown features command ${JSON.stringify(sub ?? "")}\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const ce = ConnectError.from(err);
    printError(`${codeName(ce.code)}: ${ce.rawMessage}`);
    return ce.code === Code.Unavailable ? EXIT.UNAVAILABLE : EXIT.FAILED;
  }
}
