// Turns an `authorization: Bearer <token>` header into a Principal: a static token (its
// SHA-256 compared in constant time against the configured digests) or a JWT verified
// against the configured public key. Verified tokens are cached (bounded; JWTs until they
// expire), so the steady-state cost of a call is one Map lookup.

import crypto from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { SERVICE_PRINCIPAL, type SecurityConfig } from "../config-security.js";
import type { Principal } from "../principal.js";
import { createJwtVerifier, JwtError, type JwtVerifier } from "./jwt.js";
import { isRole, roleMask, type Role } from "./roles.js";

const CACHE_MAX = 4096;

interface StaticEntry {
  readonly digest: Buffer;
  readonly name: string;
  readonly mask: number;
}

export class Authenticator {
  private readonly byDigest = new Map<string, StaticEntry>();
  private readonly jwt: JwtVerifier | undefined;
  private readonly cache = new Map<string, Principal>();

  constructor(auth: SecurityConfig["auth"]) {
    for (const t of auth.tokens) {
      const hex = t.sha256.reveal();
      this.byDigest.set(hex, { digest: Buffer.from(hex, "hex"), name: t.principal, mask: roleMask(t.roles) });
    }
    if (auth.serviceToken) {
      const digest = crypto.createHash("sha256").update(auth.serviceToken.reveal(), "utf8").digest();
      this.byDigest.set(digest.toString("hex"), { digest, name: SERVICE_PRINCIPAL, mask: roleMask(["service"]) });
    }
    this.jwt = auth.jwt ? createJwtVerifier(auth.jwt) : undefined;
  }

  /** The principal for an authorization header; throws UNAUTHENTICATED naming what is wrong. */
  authenticate(authorization: string | null | undefined, what: string): Principal {
    if (!authorization) {
      throw new ConnectError(`${what} needs credentials: send "authorization: Bearer <token>"`, Code.Unauthenticated);
    }
    const cached = this.cache.get(authorization);
    if (cached !== undefined) {
      if (cached.expiresAt === Infinity || Date.now() < cached.expiresAt) return cached;
      this.cache.delete(authorization);
    }
    if (authorization.length < 8 || authorization.slice(0, 7).toLowerCase() !== "bearer ") {
      throw new ConnectError(`${what}: the authorization header must be "Bearer <token>"`, Code.Unauthenticated);
    }
    const token = authorization.slice(7).trim();
    const p = this.verify(token, authorization);
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(authorization, p);
    return p;
  }

  private verify(token: string, authorization: string): Principal {
    const digest = crypto.createHash("sha256").update(token, "utf8").digest();
    const entry = this.byDigest.get(digest.toString("hex"));
    if (entry && crypto.timingSafeEqual(entry.digest, digest)) {
      return Object.freeze({ name: entry.name, mask: entry.mask, authorization, via: undefined, expiresAt: Infinity });
    }
    if (this.jwt && token.split(".").length === 3) {
      try {
        const claims = this.jwt.verify(token);
        const roles = claims.roles.filter(isRole).filter((r): r is Role => r !== "service");
        return Object.freeze({ name: claims.sub, mask: roleMask(roles), authorization, via: undefined, expiresAt: claims.expMs });
      } catch (err) {
        if (err instanceof JwtError) throw new ConnectError(`the bearer token was refused: ${err.message}`, Code.Unauthenticated);
        throw err;
      }
    }
    throw new ConnectError("the bearer token was refused: it is not a configured token" + (this.jwt ? " nor a valid JWT" : ""), Code.Unauthenticated);
  }
}
