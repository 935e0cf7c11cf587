// Authentication and the per-call guard, without a server: static tokens (by digest), JWTs
// for each supported algorithm with exp/nbf/iss/aud, role boundaries, delegation and the
// rate limit with its RetryInfo.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { readSecurityConfig } from "../config-security.js";
import { Authenticator } from "./authenticator.js";
import { createCallGuard, encodePrincipalHeader, ON_BEHALF_OF_HEADER } from "./guard.js";
import { createJwtVerifier } from "./jwt.js";
import { hasRole } from "./roles.js";

const sha = (t: string) => crypto.createHash("sha256").update(t).digest("hex");
const headers = (h: Record<string, string>) => ({ get: (k: string) => h[k] });

function code(fn: () => unknown): Code {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConnectError, String(err));
    return err.code;
  }
  assert.fail("expected a ConnectError");
}

function jwt(alg: string, key: crypto.KeyObject, claims: Record<string, unknown>): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = `${enc({ alg, typ: "JWT" })}.${enc(claims)}`;
  const sig =
    alg === "EdDSA"
      ? crypto.sign(null, Buffer.from(input), key)
      : alg === "ES256"
        ? crypto.sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" })
        : crypto.sign("sha256", Buffer.from(input), key);
  return `${input}.${sig.toString("base64url")}`;
}

const now = Math.floor(Date.now() / 1000);

describe("JWT verification", () => {
  const pairs = {
    RS256: crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }),
    ES256: crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }),
    EdDSA: crypto.generateKeyPairSync("ed25519"),
  };
  for (const [alg, { publicKey, privateKey }] of Object.entries(pairs)) {
    it(`${alg}: accepts a good token, refuses a bad signature, expiry, nbf, issuer, audience`, () => {
      const v = createJwtVerifier({
        publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
        issuer: "https://idp.example",
        audience: "mlmesh",
        rolesClaim: "roles",
        clockSkewMs: 0,
      });
      assert.equal(v.algorithm, alg);
      const good = { sub: "alice", roles: ["viewer", "predictor"], exp: now + 60, iss: "https://idp.example", aud: ["x", "mlmesh"] };
      const c = v.verify(jwt(alg, privateKey, good));
      assert.equal(c.sub, "alice");
      assert.deepEqual(c.roles, ["viewer", "predictor"]);
      const other = alg === "EdDSA" ? crypto.generateKeyPairSync("ed25519").privateKey : alg === "ES256" ? crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey : crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
      assert.throws(() => v.verify(jwt(alg, other, good)), /signature does not verify/);
      assert.throws(() => v.verify(jwt(alg, privateKey, { ...good, exp: now - 5 })), /expired/);
      assert.throws(() => v.verify(jwt(alg, privateKey, { ...good, exp: undefined })), /no numeric exp/);
      assert.throws(() => v.verify(jwt(alg, privateKey, { ...good, nbf: now + 120 })), /not valid before/);
      assert.throws(() => v.verify(jwt(alg, privateKey, { ...good, iss: "https://evil" })), /iss/);
      assert.throws(() => v.verify(jwt(alg, privateKey, { ...good, aud: "other" })), /aud/);
      assert.throws(() => v.verify(jwt(alg, privateKey, { ...good, sub: undefined })), /sub/);
    });
  }

  it("refuses alg none and an algorithm other than the key's", () => {
    const { publicKey, privateKey } = pairs.RS256;
    const v = createJwtVerifier({ publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(), issuer: undefined, audience: undefined, rolesClaim: "roles", clockSkewMs: 0 });
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    assert.throws(() => v.verify(`${enc({ alg: "none" })}.${enc({ sub: "x", exp: now + 60 })}.`), /alg "none"/);
    const hs = `${enc({ alg: "HS256" })}.${enc({ sub: "x", exp: now + 60 })}`;
    const mac = crypto.createHmac("sha256", publicKey.export({ type: "spki", format: "pem" })).update(hs).digest("base64url");
    assert.throws(() => v.verify(`${hs}.${mac}`), /alg "HS256"/);
    assert.throws(() => v.verify(jwt("ES256", privateKey, { sub: "x", exp: now + 60 })), /alg "ES256"/);
  });
});

describe("authenticator and guard", () => {
  const security = readSecurityConfig({
    MLMESH_AUTH_TOKENS: [
      `${sha("viewer-token-0123456789")}:vera:viewer`,
      `${sha("predictor-token-0123456789")}:pat:predictor`,
      `${sha("writer-token-0123456789")}:fred:feature-writer`,
      `${sha("deployer-token-0123456789")}:dora:deployer`,
      `${sha("admin-token-0123456789")}:ada:admin`,
    ].join(","),
    MLMESH_AUTH_SERVICE_TOKEN: "service-token-0123456789",
  });

  it("turns authentication on when tokens are configured, and holds secrets redacted", () => {
    assert.equal(security.auth.mode, "on");
    const dump = JSON.stringify(security);
    assert.ok(!dump.includes("service-token-0123456789"));
    assert.ok(!dump.includes(sha("viewer-token-0123456789")));
    assert.match(dump, /\[redacted\]/);
  });

  it("authenticates static tokens by digest, caches them, and refuses unknown ones", () => {
    const a = new Authenticator(security.auth);
    const p = a.authenticate("Bearer viewer-token-0123456789", "m");
    assert.equal(p.name, "vera");
    assert.ok(hasRole(p.mask, "viewer") && !hasRole(p.mask, "deployer"));
    assert.equal(a.authenticate("Bearer viewer-token-0123456789", "m"), p, "second call served from the cache");
    assert.equal(code(() => a.authenticate("Bearer nope-nope-nope-nope", "m")), Code.Unauthenticated);
    assert.equal(code(() => a.authenticate(undefined, "m")), Code.Unauthenticated);
    assert.equal(code(() => a.authenticate("Basic dXNlcjpwYXNz", "m")), Code.Unauthenticated);
  });

  it("enforces each role boundary with messages naming the role needed", () => {
    const guard = createCallGuard(security)!;
    const call = (token: string, svc: string, m: string) => guard(svc, m, headers({ authorization: `Bearer ${token}` }));
    const R = "mlmesh.registry.v1.RegistryService";
    const F = "mlmesh.features.v1.FeatureService";
    const X = "mlmesh.router.v1.RouterService";
    assert.equal(call("viewer-token-0123456789", R, "GetModel")?.name, "vera");
    try {
      call("viewer-token-0123456789", R, "CreateModel");
      assert.fail("viewer created a model");
    } catch (err) {
      assert.equal((err as ConnectError).code, Code.PermissionDenied);
      assert.match((err as ConnectError).rawMessage, /"vera" \(roles: viewer\) may not call mlmesh\.registry\.v1\.RegistryService\/CreateModel: it needs role deployer/);
    }
    assert.equal(call("predictor-token-0123456789", X, "Predict")?.name, "pat");
    assert.equal(code(() => call("predictor-token-0123456789", F, "WriteFeatures")), Code.PermissionDenied);
    assert.equal(call("writer-token-0123456789", F, "WriteFeatures")?.name, "fred");
    assert.equal(code(() => call("writer-token-0123456789", X, "StartRollout")), Code.PermissionDenied);
    assert.equal(call("deployer-token-0123456789", X, "StartRollout")?.name, "dora");
    assert.equal(code(() => call("deployer-token-0123456789", R, "SetPromotionPolicy")), Code.PermissionDenied);
    for (const m of ["SetPromotionPolicy", "DeleteModel", "CreateModel", "GetModel"]) assert.equal(call("admin-token-0123456789", R, m)?.name, "ada");
    // An RPC nobody declared needs admin.
    assert.equal(code(() => call("deployer-token-0123456789", R, "NotInTheTable")), Code.PermissionDenied);
    // Health is public, with or without credentials.
    assert.equal(guard("grpc.health.v1.Health", "Check", headers({})), undefined);
    assert.equal(code(() => guard(R, "GetModel", headers({}))), Code.Unauthenticated);
  });

  it("lets only the service identity act on someone's behalf", () => {
    const guard = createCallGuard(security)!;
    const p = guard("mlmesh.features.v1.FeatureService", "WriteFeatures", headers({ authorization: "Bearer service-token-0123456789", [ON_BEHALF_OF_HEADER]: "fred" }));
    assert.equal(p?.name, "fred");
    assert.equal(p?.via, "mlmesh-service");
    assert.equal(code(() => guard("mlmesh.registry.v1.RegistryService", "GetModel", headers({ authorization: "Bearer admin-token-0123456789", [ON_BEHALF_OF_HEADER]: "someone" }))), Code.PermissionDenied);
    // Any JWT `sub` survives the trip through ASCII-only metadata.
    const sub = "auth0|jürgen@example.com";
    assert.equal(guard("mlmesh.registry.v1.RegistryService", "GetModel", headers({ authorization: "Bearer service-token-0123456789", [ON_BEHALF_OF_HEADER]: encodePrincipalHeader(sub) }))?.name, sub);
    assert.equal(code(() => guard("mlmesh.registry.v1.RegistryService", "GetModel", headers({ authorization: "Bearer service-token-0123456789", [ON_BEHALF_OF_HEADER]: "%E0%A4%A" }))), Code.InvalidArgument);
  });

  it("rate-limits per principal with RESOURCE_EXHAUSTED and RetryInfo", () => {
    const limited = readSecurityConfig({ MLMESH_AUTH_TOKENS: `${sha("viewer-token-0123456789")}:vera:viewer,${sha("admin-token-0123456789")}:ada:admin`, MLMESH_RATE_LIMIT_RPS: "1", MLMESH_RATE_LIMIT_BURST: "3" });
    const guard = createCallGuard(limited)!;
    const h = headers({ authorization: "Bearer viewer-token-0123456789" });
    for (let i = 0; i < 3; i++) guard("mlmesh.registry.v1.RegistryService", "GetModel", h);
    let err: ConnectError | undefined;
    try {
      guard("mlmesh.registry.v1.RegistryService", "GetModel", h);
    } catch (e) {
      err = e as ConnectError;
    }
    assert.equal(err?.code, Code.ResourceExhausted);
    assert.match(err!.rawMessage, /rate limit exceeded for principal "vera": 1 calls\/s, burst 3; retry in \d+\.\d{3} s/);
    assert.equal(err!.details.length, 1);
    assert.equal((err!.details[0] as { type: string }).type, "google.rpc.RetryInfo");
    assert.equal(err!.metadata.get("retry-after"), "1");
    // Another principal has its own bucket; health is never limited.
    guard("mlmesh.registry.v1.RegistryService", "GetModel", headers({ authorization: "Bearer admin-token-0123456789" }));
    guard("grpc.health.v1.Health", "Check", headers({}));
  });

  it("has no guard at all with authentication and rate limit off", () => {
    const off = readSecurityConfig({});
    assert.equal(off.auth.mode, "off");
    assert.equal(createCallGuard(off), undefined);
  });

  it("rejects malformed token configuration without echoing it", () => {
    assert.throws(() => readSecurityConfig({ MLMESH_AUTH_TOKENS: "my-raw-secret-token:alice:viewer" }), (e: Error) => !e.message.includes("my-raw-secret-token"));
    assert.throws(() => readSecurityConfig({ MLMESH_AUTH_TOKENS: `${sha("x")}:alice:superuser` }), /roles superuser/);
    assert.throws(() => readSecurityConfig({ MLMESH_AUTH: "on" }), /MLMESH_AUTH/);
    assert.throws(() => readSecurityConfig({ MLMESH_TLS_CA: "/etc/hostname" }), /MLMESH_TLS_CERT/);
  });
});
