// MLMESH_EXPERIMENTS_* variables. (Owned by the experiments work; add fields here, not in config.ts.)

import type { Env } from "./config-read.js";

export interface ExperimentsConfig {}

export function readExperimentsConfig(_env: Env): ExperimentsConfig {
  return Object.freeze({});
}

export const EXPERIMENTS_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [];
