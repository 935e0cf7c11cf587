// Placeholder until the router work (issue #7) lands its CLI: endpoints, predict, rank, rollout.
import type { Config } from "../lib/config.js";
import { UsageError } from "./output.js";

export async function runRouterCommand(_config: Config, command: string, _args: readonly string[]): Promise<number> {
  throw new UsageError(`mlmesh ${command}: not available yet (issue #7)`);
}
