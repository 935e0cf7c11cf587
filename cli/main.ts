// Entry point of the `mlmesh` command: parses the command line and dispatches. Each command
// lives in its own module; this file only knows their names.

import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../lib/config.js";
import { MLMESH_VERSION } from "../lib/version.js";
import { runConfig } from "./config-command.js";
import { runHealth } from "./health-command.js";
import { EXIT, printError, UsageError } from "./output.js";
import { runServe, runUp } from "./up-command.js";

const USAGE = `mlmesh ${MLMESH_VERSION} — production ML platform as a gRPC mesh

Usage:
  mlmesh up [--json]                 run all five services in this process (embedded defaults)
  mlmesh serve <service> [--json]    run one service: registry, features, inference, router, experiments
  mlmesh health [service] [--json]   ask grpc.health.v1 of one service (default: all five)
  mlmesh config [--json]             print the resolved configuration
  mlmesh models push|list|show|promote|alias|policy|audit ...   the model registry (\`mlmesh models help\`)
  mlmesh features apply|list|get ...  feature views and online values (see \`mlmesh features help\`)
  mlmesh experiments create|start|stop|assign|report ...  the experiment service (\`mlmesh experiments help\`)
  mlmesh endpoints apply|list|get|delete|plan ...   router endpoints and serving plans (\`mlmesh endpoints help\`)
  mlmesh predict ENDPOINT --entity KEY=VALUE... [--json]   one prediction through the router
  mlmesh rank ENDPOINT --entity KEY=VALUE --candidates a,b,c [--k N] [--json]   rank candidates
  mlmesh rollout start|status|pause|resume|promote|rollback ...   progressive rollouts (\`mlmesh rollout help\`)
  mlmesh score-batch MODEL_REF --in FILE --out FILE ...   batch scoring (\`mlmesh score-batch --help\`)
  mlmesh certs dev [--out DIR] [--services a,b] [--san NAME,...] [--days N] [--force]
                                     development CA and per-service certificates for mTLS
  mlmesh ab analyze --data FILE.csv ... | ab sample-size ...   A/B statistics, offline (\`mlmesh ab help\`)
  mlmesh drift --reference REF.csv --current CUR.csv [--bins N] [--psi-threshold X] [--alpha A] [--json]
                                     per-column drift between two CSV files, offline (exit 1 on drift)
  mlmesh version                     print the version

Configuration comes from MLMESH_* environment variables (see README).
Exit codes: 0 ok, 1 failed, 2 usage, 69 unavailable, 78 bad configuration.
`;

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(USAGE);
        return command === undefined ? EXIT.USAGE : EXIT.OK;
      case "version":
      case "--version":
        process.stdout.write(`${MLMESH_VERSION}\n`);
        return EXIT.OK;
      case "up":
        return await runUp(loadConfig(process.env), flags(rest, {}).json);
      case "serve": {
        const f = flags(rest, {});
        return await runServe(loadConfig(process.env), f.positionals[0], f.json);
      }
      case "health": {
        const f = flags(rest, {});
        return await runHealth(loadConfig(process.env), f.positionals[0], f.json);
      }
      case "config":
        return runConfig(loadConfig(process.env), flags(rest, {}).json);
      case "drift":
        return await (await import("./drift-command.js")).runDrift(rest);
      case "models":
        return await (await import("./models-command.js")).runModels(loadConfig(process.env), [...rest]);
      case "experiments":
        return await (await import("./experiments-command.js")).runExperiments(loadConfig(process.env), [...rest]);
      case "ab":
        return await (await import("./ab-command.js")).runAb(rest);
      case "features":
        return await (await import("./features-command.js")).runFeatures(loadConfig(process.env), rest);
      case "endpoints":
      case "predict":
      case "rank":
      case "rollout":
        return await (await import("./router-command.js")).runRouterCommand(loadConfig(process.env), command, rest);
      case "score-batch":
        return await (await import("./score-batch-command.js")).runScoreBatch(loadConfig(process.env), rest);
      case "certs":
        return await (await import("./certs-command.js")).runCerts(loadConfig(process.env), rest);
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}; run \`mlmesh help\``);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      printError(err.message);
      return EXIT.CONFIG;
    }
    if (err instanceof UsageError) {
      printError(err.message);
      return EXIT.USAGE;
    }
    printError(err instanceof Error ? err.message : String(err));
    return EXIT.FAILED;
  }
}

function flags(args: readonly string[], extra: Record<string, { type: "string" | "boolean"; multiple?: boolean }>) {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: { json: { type: "boolean", default: false }, ...extra },
      allowPositionals: true,
      strict: true,
    });
    return { json: values.json === true, values, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
