// The per-call check the observer runs before a handler: authenticate, authorize against the
// method table, apply the per-principal rate limit. Built once per server; with
// authentication off and no rate limit there is no guard at all (zero cost per call).

import { create, toBinary } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { SecurityConfig } from "../config-security.js";
import { ANONYMOUS, type Principal } from "../principal.js";
import { RateLimiter } from "../rate-limit.js";
import { Authenticator } from "./authenticator.js";
import { METHOD_ROLES, UNDECLARED_REQUIREMENT } from "./method-roles.js";
import { hasRole, requirementBit, roleMask, rolesOf, type Requirement } from "./roles.js";

export const ON_BEHALF_OF_HEADER = "x-mlmesh-on-behalf-of";

export type HeaderGetter = { get(key: string): string | null | undefined };

/** Returns the caller (undefined for a public method called without credentials); throws a ConnectError to refuse. */
export type CallGuard = (service: string, method: string, header: HeaderGetter) => Principal | undefined;

/** The anonymous principal of auth-off mode: every role, so rate limiting alone can apply. */
const ANONYMOUS_PRINCIPAL: Principal = Object.freeze({ name: ANONYMOUS, mask: roleMask(["admin"]), authorization: undefined, via: undefined, expiresAt: Infinity });

interface MethodRule {
  readonly requirement: Requirement;
  readonly bit: number;
}

export function createCallGuard(security: SecurityConfig): CallGuard | undefined {
  const authOn = security.auth.mode === "on";
  const limiter = security.rateLimit.ratePerSecond > 0 ? new RateLimiter(security.rateLimit.ratePerSecond, security.rateLimit.burst) : undefined;
  if (!authOn && !limiter) return undefined;
  const auth = authOn ? new Authenticator(security.auth) : undefined;

  // service -> method -> rule: two lookups, no string building per call.
  const rules = new Map<string, Map<string, MethodRule>>();
  for (const [full, requirement] of Object.entries(METHOD_ROLES)) {
    const slash = full.indexOf("/");
    const svc = full.slice(0, slash);
    let m = rules.get(svc);
    if (!m) rules.set(svc, (m = new Map()));
    m.set(full.slice(slash + 1), { requirement, bit: requirementBit(requirement) });
  }
  const undeclared: MethodRule = { requirement: UNDECLARED_REQUIREMENT, bit: requirementBit(UNDECLARED_REQUIREMENT) };

  return (service, method, header) => {
    const rule = rules.get(service)?.get(method) ?? undeclared;
    let p: Principal | undefined;
    if (!auth) {
      p = ANONYMOUS_PRINCIPAL;
    } else {
      const authorization = header.get("authorization");
      if (rule.bit === 0 && !authorization) return undefined;
      p = auth.authenticate(authorization, `${service}/${method}`);
      if ((p.mask & rule.bit) === 0 && rule.bit !== 0) {
        throw new ConnectError(
          `principal ${JSON.stringify(p.name)} (roles: ${rolesOf(p.mask).join(", ") || "none"}) may not call ${service}/${method}: it needs role ${rule.requirement}${rule.requirement === "admin" ? "" : " (or admin)"}`,
          Code.PermissionDenied,
        );
      }
      // A service calling on a user's behalf: the user is who the audit log names.
      const onBehalf = header.get(ON_BEHALF_OF_HEADER);
      if (onBehalf) {
        if (!hasRole(p.mask, "service")) {
          throw new ConnectError(`principal ${JSON.stringify(p.name)} may not send ${ON_BEHALF_OF_HEADER}: only the mesh's service identity may`, Code.PermissionDenied);
        }
        const name = decodePrincipalHeader(onBehalf);
        if (name === undefined) throw new ConnectError(`${ON_BEHALF_OF_HEADER} is not a URI-encoded principal name of at most 256 characters`, Code.InvalidArgument);
        // The service already authorized the user at the front door; limits were applied there.
        return Object.freeze({ name, mask: p.mask, authorization: p.authorization, via: p.name, expiresAt: p.expiresAt });
      }
      // The mesh's own calls are not rate limited: the caller was limited where it came in.
      if (hasRole(p.mask, "service")) return p;
    }
    if (limiter && rule.bit !== 0) {
      const waitMs = limiter.take(p.name);
      if (waitMs > 0) throw rateLimited(p.name, waitMs, limiter);
    }
    return p;
  };
}

/**
 * Principal names travel URI-encoded in x-mlmesh-on-behalf-of: a JWT `sub` may hold any
 * Unicode, and gRPC metadata values must be printable ASCII.
 */
export function encodePrincipalHeader(name: string): string {
  return encodeURIComponent(name);
}

function decodePrincipalHeader(value: string): string | undefined {
  try {
    const name = decodeURIComponent(value);
    // eslint-disable-next-line no-control-regex
    return name.length > 0 && name.length <= 256 && !/[\u0000-\u001f\u007f]/.test(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

/** RESOURCE_EXHAUSTED with a google.rpc.RetryInfo detail, which gRPC clients honour for backoff. */
function rateLimited(name: string, waitMs: number, limiter: RateLimiter): ConnectError {
  const seconds = Math.floor(waitMs / 1000);
  const retryDelay = create(DurationSchema, { seconds: BigInt(seconds), nanos: (waitMs - seconds * 1000) * 1_000_000 });
  // RetryInfo { google.protobuf.Duration retry_delay = 1; }: one length-delimited field.
  const duration = toBinary(DurationSchema, retryDelay);
  const value = new Uint8Array(2 + duration.length);
  value[0] = 0x0a;
  value[1] = duration.length;
  value.set(duration, 2);
  const err = new ConnectError(
    `rate limit exceeded for principal ${JSON.stringify(name)}: ${limiter.ratePerSecond} calls/s, burst ${limiter.burst}; retry in ${(waitMs / 1000).toFixed(3)} s`,
    Code.ResourceExhausted,
  );
  err.details.push({ type: "google.rpc.RetryInfo", value });
  err.metadata.set("retry-after", String(Math.max(1, Math.ceil(waitMs / 1000))));
  return err;
}
