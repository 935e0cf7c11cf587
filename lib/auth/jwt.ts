// JWT (JWS compact) verification with node:crypto: RS256, ES256 and EdDSA (Ed25519), the
// algorithm pinned by the configured key's type (never by the token alone, so an RSA key
// cannot be used as an HMAC secret or "none" slip through). exp is required; nbf, iss and
// aud are checked when present/configured, with a configured clock skew.

import crypto, { type KeyObject } from "node:crypto";
import type { JwtAlgorithm, JwtConfig } from "../config-security.js";

export interface JwtClaims {
  readonly sub: string;
  readonly roles: readonly string[];
  /** Expiry, epoch ms. */
  readonly expMs: number;
}

export class JwtError extends Error {}

export interface JwtVerifier {
  readonly algorithm: JwtAlgorithm;
  verify(token: string, nowMs?: number): JwtClaims;
}

function algorithmFor(key: KeyObject): JwtAlgorithm {
  switch (key.asymmetricKeyType) {
    case "rsa":
      return "RS256";
    case "ec":
      if (key.asymmetricKeyDetails?.namedCurve !== "prime256v1") throw new Error("JWT EC keys must be P-256 (ES256)");
      return "ES256";
    case "ed25519":
      return "EdDSA";
    default:
      throw new Error(`JWT public key type ${key.asymmetricKeyType} is not supported (RSA, EC P-256, Ed25519)`);
  }
}

function json(part: string, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as unknown;
    if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new JwtError(`its ${what} is not base64url JSON`);
}

export function createJwtVerifier(cfg: JwtConfig): JwtVerifier {
  const key = cfg.publicKeyPem.includes("BEGIN CERTIFICATE")
    ? new crypto.X509Certificate(cfg.publicKeyPem).publicKey
    : crypto.createPublicKey(cfg.publicKeyPem);
  const algorithm = algorithmFor(key);
  const verifyKey = algorithm === "ES256" ? { key, dsaEncoding: "ieee-p1363" as const } : key;
  const digest = algorithm === "EdDSA" ? null : "sha256";
  return {
    algorithm,
    verify(token, nowMs = Date.now()) {
      const dot1 = token.indexOf(".");
      const dot2 = token.indexOf(".", dot1 + 1);
      if (dot1 < 0 || dot2 < 0 || token.indexOf(".", dot2 + 1) >= 0) throw new JwtError("it is not a JWT (three dot-separated parts)");
      const header = json(token.slice(0, dot1), "header");
      if (header.alg !== algorithm) throw new JwtError(`its alg ${JSON.stringify(header.alg)} is not the configured key's ${algorithm}`);
      const signature = Buffer.from(token.slice(dot2 + 1), "base64url");
      const ok = crypto.verify(digest, Buffer.from(token.slice(0, dot2), "ascii"), verifyKey, signature);
      if (!ok) throw new JwtError("its signature does not verify with the configured key");
      const claims = json(token.slice(dot1 + 1, dot2), "payload");
      if (typeof claims.exp !== "number") throw new JwtError("it has no numeric exp claim");
      const expMs = claims.exp * 1000;
      if (nowMs > expMs + cfg.clockSkewMs) throw new JwtError(`it expired at ${new Date(expMs).toISOString()}`);
      if (claims.nbf !== undefined) {
        if (typeof claims.nbf !== "number") throw new JwtError("its nbf claim is not a number");
        if (nowMs < claims.nbf * 1000 - cfg.clockSkewMs) throw new JwtError(`it is not valid before ${new Date(claims.nbf * 1000).toISOString()}`);
      }
      if (cfg.issuer !== undefined && claims.iss !== cfg.issuer) throw new JwtError(`its iss ${JSON.stringify(claims.iss)} is not ${JSON.stringify(cfg.issuer)}`);
      if (cfg.audience !== undefined) {
        const aud = claims.aud;
        const okAud = aud === cfg.audience || (Array.isArray(aud) && aud.includes(cfg.audience));
        if (!okAud) throw new JwtError(`its aud does not include ${JSON.stringify(cfg.audience)}`);
      }
      if (typeof claims.sub !== "string" || claims.sub === "") throw new JwtError("it has no sub claim");
      const raw = claims[cfg.rolesClaim];
      const roles = Array.isArray(raw) ? raw.filter((r): r is string => typeof r === "string") : typeof raw === "string" ? raw.split(/\s+/).filter(Boolean) : [];
      return { sub: claims.sub, roles, expMs };
    },
  };
}
