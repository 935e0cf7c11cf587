// `mlmesh config`: the configuration this process would run with, after validation. Secrets
// never print: tokens are Secret values (JSON "[redacted]"), token digests likewise, and a
// password inside a URL (nats://user:pass@host, redis://:pass@host) is masked.

import type { Config } from "../lib/config.js";
import { EXIT, printJson } from "./output.js";

const URL_PASSWORD = /^([a-z][a-z0-9+.-]*:\/\/[^/@\s:]*):[^/@\s]*@/i;

/** The config as plain JSON values with every secret masked. */
export function redactedConfig(config: Config): unknown {
  return JSON.parse(
    JSON.stringify(config, (_key, value: unknown) =>
      typeof value === "string" ? value.split(",").map((part) => part.replace(URL_PASSWORD, "$1:[redacted]@")).join(",") : value,
    ),
  );
}

export function runConfig(config: Config, json: boolean): number {
  const view = redactedConfig(config);
  if (json) {
    printJson(view);
    return EXIT.OK;
  }
  process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
  return EXIT.OK;
}
