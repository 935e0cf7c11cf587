// Placeholder until mTLS (issue #9) lands.
import type { Config } from "../lib/config.js";
import { UsageError } from "./output.js";

export async function runCerts(_config: Config, _args: readonly string[]): Promise<number> {
  throw new UsageError("mlmesh certs: not available yet (issue #9)");
}
