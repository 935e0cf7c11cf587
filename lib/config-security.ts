// MLMESH_TLS_*, MLMESH_AUTH_*, MLMESH_RATE_LIMIT_* and MLMESH_TOKEN: transport security,
// authentication and per-principal limits. Secrets are held in Secret, whose JSON and
// inspect forms are "[redacted]", so no config dump or log line can print them.

import fs from "node:fs";
import { inspect } from "node:util";
import { ConfigError, readDurationMs, readEnum, readInt, readNumber, type Env } from "./config-read.js";
import { isRole, ROLES, type Role } from "./auth/roles.js";

/** A secret value: reveal() returns it; JSON.stringify, String() and util.inspect never do. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toJSON(): string {
    return "[redacted]";
  }
  toString(): string {
    return "[redacted]";
  }
  [inspect.custom](): string {
    return "[redacted]";
  }
}

export interface StaticTokenEntry {
  /** SHA-256 of the token (UTF-8), 32 bytes, as a Secret holding lowercase hex. */
  readonly sha256: Secret;
  readonly principal: string;
  readonly roles: readonly Role[];
}

export type JwtAlgorithm = "RS256" | "ES256" | "EdDSA";

export interface JwtConfig {
  /** PEM (SPKI public key or certificate). Public keys are not secret. */
  readonly publicKeyPem: string;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
  readonly rolesClaim: string;
  readonly clockSkewMs: number;
}

export interface TlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface SecurityConfig {
  readonly auth: {
    /** "off": every caller is "anonymous" with every role (dev only, warned at start). */
    readonly mode: "on" | "off";
    readonly tokens: readonly StaticTokenEntry[];
    readonly jwt: JwtConfig | undefined;
    /** Token the services present to each other (principal "mlmesh-service", role service). */
    readonly serviceToken: Secret | undefined;
  };
  /** Token this process presents as a client (the CLI): MLMESH_TOKEN. */
  readonly clientToken: Secret | undefined;
  /** Present when MLMESH_TLS_CA/CERT/KEY are set: mTLS on both ports and for mesh clients. */
  readonly tls: TlsFiles | undefined;
  readonly rateLimit: {
    /** Sustained calls per second per principal; 0 disables the limit. */
    readonly ratePerSecond: number;
    readonly burst: number;
  };
}

export const SERVICE_PRINCIPAL = "mlmesh-service";
/** What a static token's principal name may look like. */
const PRINCIPAL_RE = /^[A-Za-z0-9][A-Za-z0-9._@:\-/]{0,127}$/;

function readTokens(raw: string, variable: string): StaticTokenEntry[] {
  const out: StaticTokenEntry[] = [];
  for (const part of raw.split(/[,\n]/)) {
    const item = part.trim();
    if (!item || item.startsWith("#")) continue;
    const [hash, principal, roles, ...rest] = item.split(":");
    const expected = "entries sha256hex:principal:role1|role2 (roles: " + ROLES.join(", ") + ")";
    // Never echo a token entry back: it may be a raw token pasted by mistake.
    if (rest.length || !hash || !/^[0-9a-fA-F]{64}$/.test(hash)) throw new ConfigError(variable, expected, "(an entry whose first field is not a 64-hex-digit SHA-256)");
    if (!principal || !PRINCIPAL_RE.test(principal)) throw new ConfigError(variable, expected, `principal ${principal ?? ""}`);
    const list = (roles ?? "").split("|").map((r) => r.trim()).filter(Boolean);
    if (list.length === 0 || !list.every(isRole)) throw new ConfigError(variable, expected, `roles ${roles ?? ""}`);
    out.push(Object.freeze({ sha256: new Secret(hash.toLowerCase()), principal, roles: Object.freeze(list as Role[]) }));
  }
  return out;
}

function readFile(env: Env, name: string): string | undefined {
  const p = env[name]?.trim();
  if (!p) return undefined;
  try {
    return fs.readFileSync(p, "utf8");
  } catch (err) {
    throw new ConfigError(name, "a readable file", `${p} (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

function readSecret(env: Env, name: string): Secret | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  if (raw.length < 16) throw new ConfigError(name, "a token of at least 16 characters", "(too short; not shown)");
  return new Secret(raw);
}

export function readSecurityConfig(env: Env): SecurityConfig {
  const tokens = [
    ...readTokens(env.MLMESH_AUTH_TOKENS ?? "", "MLMESH_AUTH_TOKENS"),
    ...readTokens(readFile(env, "MLMESH_AUTH_TOKENS_FILE") ?? "", "MLMESH_AUTH_TOKENS_FILE"),
  ];
  let jwt: JwtConfig | undefined;
  const pem = readFile(env, "MLMESH_AUTH_JWT_PUBLIC_KEY_FILE");
  if (pem !== undefined) {
    if (!/-----BEGIN (PUBLIC KEY|CERTIFICATE)-----/.test(pem)) {
      throw new ConfigError("MLMESH_AUTH_JWT_PUBLIC_KEY_FILE", "a PEM public key (SPKI) or certificate", env.MLMESH_AUTH_JWT_PUBLIC_KEY_FILE ?? "");
    }
    jwt = Object.freeze({
      publicKeyPem: pem,
      issuer: env.MLMESH_AUTH_JWT_ISSUER?.trim() || undefined,
      audience: env.MLMESH_AUTH_JWT_AUDIENCE?.trim() || undefined,
      rolesClaim: env.MLMESH_AUTH_JWT_ROLES_CLAIM?.trim() || "roles",
      clockSkewMs: readDurationMs(env, "MLMESH_AUTH_JWT_CLOCK_SKEW", 30_000, 0, 600_000),
    });
  }
  const serviceToken = readSecret(env, "MLMESH_AUTH_SERVICE_TOKEN");
  const haveCredentials = tokens.length > 0 || jwt !== undefined || serviceToken !== undefined;
  // Off is the default so `mlmesh up` on a laptop just works; it is logged as a warning at
  // every start. Configuring any credential source turns authentication on.
  const mode = readEnum<"on" | "off">(env, "MLMESH_AUTH", ["on", "off"], haveCredentials ? "on" : "off");
  if (mode === "on" && !haveCredentials) {
    throw new ConfigError("MLMESH_AUTH", "credentials to check when on: MLMESH_AUTH_TOKENS, MLMESH_AUTH_TOKENS_FILE or MLMESH_AUTH_JWT_PUBLIC_KEY_FILE", "on");
  }

  const tlsVars = ["MLMESH_TLS_CA", "MLMESH_TLS_CERT", "MLMESH_TLS_KEY"] as const;
  const set = tlsVars.filter((v) => env[v]?.trim());
  let tls: TlsFiles | undefined;
  if (set.length > 0) {
    const missing = tlsVars.find((v) => !env[v]?.trim());
    if (missing) throw new ConfigError(missing, "a PEM file path (MLMESH_TLS_CA, MLMESH_TLS_CERT and MLMESH_TLS_KEY go together)", "");
    for (const v of tlsVars) if (!fs.existsSync(env[v]!.trim())) throw new ConfigError(v, "an existing PEM file", env[v]!);
    tls = Object.freeze({ caFile: env.MLMESH_TLS_CA!.trim(), certFile: env.MLMESH_TLS_CERT!.trim(), keyFile: env.MLMESH_TLS_KEY!.trim() });
  }

  const ratePerSecond = readNumber(env, "MLMESH_RATE_LIMIT_RPS", 0, 0, 1_000_000);
  const burst = readInt(env, "MLMESH_RATE_LIMIT_BURST", Math.max(1, Math.ceil(ratePerSecond * 2)), 1, 10_000_000);

  return Object.freeze({
    auth: Object.freeze({ mode, tokens: Object.freeze(tokens), jwt, serviceToken }),
    clientToken: readSecret(env, "MLMESH_TOKEN"),
    tls,
    rateLimit: Object.freeze({ ratePerSecond, burst }),
  });
}

export const SECURITY_CONFIG_VARIABLES: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: "MLMESH_AUTH", default: "off (on when credentials are configured)", meaning: "on: every non-public RPC needs a bearer token; off: dev mode, warned at start" },
  { name: "MLMESH_AUTH_TOKENS", default: "(unset)", meaning: "static tokens: sha256hex:principal:role1|role2,... (SHA-256 of the token)" },
  { name: "MLMESH_AUTH_TOKENS_FILE", default: "(unset)", meaning: "file of the same entries, one per line (# comments)" },
  { name: "MLMESH_AUTH_JWT_PUBLIC_KEY_FILE", default: "(unset)", meaning: "PEM public key verifying JWT bearer tokens (RS256, ES256, EdDSA)" },
  { name: "MLMESH_AUTH_JWT_ISSUER", default: "(unset)", meaning: "required `iss` of JWTs when set" },
  { name: "MLMESH_AUTH_JWT_AUDIENCE", default: "(unset)", meaning: "required `aud` of JWTs when set" },
  { name: "MLMESH_AUTH_JWT_ROLES_CLAIM", default: "roles", meaning: "claim holding the roles (array or space-separated)" },
  { name: "MLMESH_AUTH_JWT_CLOCK_SKEW", default: "30s", meaning: "leeway on exp/nbf" },
  { name: "MLMESH_AUTH_SERVICE_TOKEN", default: "(unset)", meaning: "shared token services call each other with (principal mlmesh-service)" },
  { name: "MLMESH_TOKEN", default: "(unset)", meaning: "bearer token the CLI presents" },
  { name: "MLMESH_TLS_CA", default: "(unset)", meaning: "CA (PEM) that signs peers' certificates; with CERT and KEY turns on mTLS" },
  { name: "MLMESH_TLS_CERT", default: "(unset)", meaning: "this process's certificate (PEM), used as server and client" },
  { name: "MLMESH_TLS_KEY", default: "(unset)", meaning: "its private key (PEM)" },
  { name: "MLMESH_RATE_LIMIT_RPS", default: "0 (off)", meaning: "sustained calls per second per principal and service" },
  { name: "MLMESH_RATE_LIMIT_BURST", default: "2 × RPS", meaning: "token-bucket size per principal" },
];
