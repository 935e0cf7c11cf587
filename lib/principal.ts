// Who is calling. The observer (lib/rpc-observe.ts) authenticates every call and stores the
// principal in the handler's context values and in the OpenTelemetry context the handler
// runs in, so principalOf(ctx) in any service — and its audit records — names the caller
// without the service knowing how authentication works. With MLMESH_AUTH=off every caller is
// "anonymous", and the audit log says so.

import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { context, createContextKey as createOtelContextKey, type Context } from "@opentelemetry/api";

export const ANONYMOUS = "anonymous";

/** An authenticated caller. */
export interface Principal {
  /** The name audit records carry (token principal, JWT `sub`, or the delegating caller's). */
  readonly name: string;
  /** Role bit mask (lib/auth/roles.ts). */
  readonly mask: number;
  /** The authorization header it came with, forwarded by mesh clients when no service token is configured. */
  readonly authorization: string | undefined;
  /** When a service called on someone's behalf: the service principal that did. */
  readonly via: string | undefined;
  /** Epoch ms after which a cached verification must be redone (JWT exp); Infinity for static tokens. */
  readonly expiresAt: number;
}

/** Where connect-style handlers find the principal (HandlerContext.values). */
export const PRINCIPAL_VALUE = createContextKey<Principal | undefined>(undefined, { description: "mlmesh principal" });
const PRINCIPAL_OTEL_KEY = createOtelContextKey("mlmesh.principal");

export function withPrincipal(ctx: Context, p: Principal): Context {
  return ctx.setValue(PRINCIPAL_OTEL_KEY, p);
}

/** The principal of the call being served on this async path, if authentication is on. */
export function currentPrincipal(): Principal | undefined {
  return context.active().getValue(PRINCIPAL_OTEL_KEY) as Principal | undefined;
}

/** The caller's name for audit records: the authenticated principal, or "anonymous". */
export function principalOf(ctx: HandlerContext): string {
  return ctx.values.get(PRINCIPAL_VALUE)?.name ?? currentPrincipal()?.name ?? ANONYMOUS;
}
