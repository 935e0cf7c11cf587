// The roles a principal can hold. Roles are additive and kept as a bit mask so the check on
// the request path is one AND. Every role includes "viewer" (anyone who may act may read);
// admin and service include every role. "service" is the mesh's own identity: admin rights,
// and it alone may say on whose behalf it calls (x-mlmesh-on-behalf-of).

export const ROLES = ["viewer", "predictor", "feature-writer", "deployer", "admin", "service"] as const;
export type Role = (typeof ROLES)[number];

/** What a method needs: a role, or "public" (no credentials at all: health and liveness). */
export type Requirement = Role | "public";

const BIT: Readonly<Record<Role, number>> = {
  viewer: 1,
  predictor: 2,
  "feature-writer": 4,
  deployer: 8,
  admin: 16,
  service: 32,
};
const ALL = 63;
/** Admin holds every role but "service": only the mesh's own identity may delegate. */
const ADMIN_ALL = ALL & ~32;

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

/** The mask a principal holding `roles` has: its roles, viewer, and everything for admin/service. */
export function roleMask(roles: readonly Role[]): number {
  let m = 0;
  for (const r of roles) m |= BIT[r];
  if (m & BIT.service) return ALL;
  if (m & BIT.admin) return ADMIN_ALL;
  return m === 0 ? 0 : m | BIT.viewer;
}

/** The bit a method needs (0 for public). */
export function requirementBit(req: Requirement): number {
  return req === "public" ? 0 : BIT[req];
}

export function hasRole(mask: number, role: Role): boolean {
  return (mask & BIT[role]) !== 0;
}

export function rolesOf(mask: number): Role[] {
  return ROLES.filter((r) => (mask & BIT[r]) !== 0);
}
