// `mlmesh config`: the configuration this process would run with, after validation.

import type { Config } from "../lib/config.js";
import { EXIT, printJson } from "./output.js";

export function runConfig(config: Config, json: boolean): number {
  if (json) {
    printJson(config);
    return EXIT.OK;
  }
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  return EXIT.OK;
}
