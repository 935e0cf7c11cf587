// MLMESH_ROUTER_* variables. (Owned by the router work; add fields here, not in config.ts.)

import type { Env } from "./config-read.js";

export interface RouterConfig {}

export function readRouterConfig(_env: Env): RouterConfig {
  return Object.freeze({});
}

export const ROUTER_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [];
