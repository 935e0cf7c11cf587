// Placeholder until batch scoring (issue #10) lands.
import type { Config } from "../lib/config.js";
import { UsageError } from "./output.js";

export async function runScoreBatch(_config: Config, _args: readonly string[]): Promise<number> {
  throw new UsageError("mlmesh score-batch: not available yet (issue #10)");
}
