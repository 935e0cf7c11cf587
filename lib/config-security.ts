// MLMESH_SECURITY_* variables. (Owned by the security work; add fields here, not in config.ts.)

import type { Env } from "./config-read.js";

export interface SecurityConfig {}

export function readSecurityConfig(_env: Env): SecurityConfig {
  return Object.freeze({});
}

export const SECURITY_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [];
