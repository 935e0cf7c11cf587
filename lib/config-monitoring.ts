// MLMESH_MONITORING_* variables. (Owned by the monitoring work; add fields here, not in config.ts.)

import type { Env } from "./config-read.js";

export interface MonitoringConfig {}

export function readMonitoringConfig(_env: Env): MonitoringConfig {
  return Object.freeze({});
}

export const MONITORING_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [];
