// Authentication and authorization end to end, on a real `mlmesh up` with static tokens:
// every role boundary over gRPC, the same checks over Connect JSON, the principal of a
// mutation in the audit log, a mesh-internal call made with the service token, and secrets
// absent from `mlmesh config` and from the process's logs.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { closeAllClients, createServiceClient } from "../../lib/clients.js";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";

const run = crypto.randomBytes(4).toString("hex");
const TOKENS = {
  viewer: `viewer-${run}-0123456789`,
  predictor: `predictor-${run}-0123456789`,
  "feature-writer": `writer-${run}-0123456789`,
  deployer: `deployer-${run}-0123456789`,
  admin: `admin-${run}-0123456789`,
} as const;
type RoleName = keyof typeof TOKENS;
const PRINCIPAL: Record<RoleName, string> = { viewer: "vera", predictor: "pat", "feature-writer": "fred", deployer: "dora", admin: "ada" };
const SERVICE_TOKEN = `service-${run}-0123456789`;
const sha = (t: string) => crypto.createHash("sha256").update(t).digest("hex");
// A JWT issuer (Ed25519) the mesh trusts through MLMESH_AUTH_JWT_PUBLIC_KEY_FILE.
const jwtKeys = crypto.generateKeyPairSync("ed25519");
const JWT_KEY_FILE = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-jwt-")), "issuer.pem");
fs.writeFileSync(JWT_KEY_FILE, jwtKeys.publicKey.export({ type: "spki", format: "pem" }));
function signJwt(claims: Record<string, unknown>): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = `${enc({ alg: "EdDSA", typ: "JWT" })}.${enc(claims)}`;
  return `${input}.${crypto.sign(null, Buffer.from(input), jwtKeys.privateKey).toString("base64url")}`;
}
const AUTH_TOKENS = (Object.keys(TOKENS) as RoleName[]).map((r) => `${sha(TOKENS[r])}:${PRINCIPAL[r]}:${r}`).join(",");

async function codeOf(p: Promise<unknown> | AsyncIterable<unknown>): Promise<Code | 0> {
  try {
    if (Symbol.asyncIterator in (p as object)) for await (const _ of p as AsyncIterable<unknown>) break;
    else await p;
    return 0;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("authentication and roles (mlmesh up, static tokens)", () => {
  let proc: MlmeshProcess;
  const as = <T extends DescService>(svc: T, name: string, role?: RoleName): Client<T> =>
    createServiceClient(svc, proc.endpoint(name).grpc, { auth: role ? { client: `Bearer ${TOKENS[role]}` } : undefined, defaultTimeoutMs: 10_000 });

  before(async () => {
    proc = await startMlmesh(["up"], await isolatedEnv({
        MLMESH_AUTH_TOKENS: AUTH_TOKENS,
        MLMESH_AUTH_SERVICE_TOKEN: SERVICE_TOKEN,
        MLMESH_AUTH_JWT_PUBLIC_KEY_FILE: JWT_KEY_FILE,
        MLMESH_AUTH_JWT_ISSUER: "https://idp.test",
        MLMESH_AUTH_JWT_AUDIENCE: "mlmesh",
        MLMESH_LOG_LEVEL: "debug",
      }), 60_000);
  });
  after(async () => {
    closeAllClients();
    await proc?.stop();
  });

  it("refuses a call without a token, or with an unknown one, as UNAUTHENTICATED; health stays public", async () => {
    const anon = as(RegistryService, "registry");
    await assert.rejects(anon.listModels({}), (err: ConnectError) => {
      assert.equal(err.code, Code.Unauthenticated);
      assert.match(err.rawMessage, /mlmesh\.registry\.v1\.RegistryService\/ListModels needs credentials: send "authorization: Bearer <token>"/);
      return true;
    });
    const bad = createServiceClient(RegistryService, proc.endpoint("registry").grpc, { auth: { client: "Bearer not-a-configured-token-at-all" } });
    await assert.rejects(bad.listModels({}), (err: ConnectError) => err.code === Code.Unauthenticated && /not a configured token/.test(err.rawMessage));
    const health = await as(Health, "registry").check({ service: "" });
    assert.equal(health.status, 1);
  });

  // [role, service, client, call, allowed]: "allowed" means the guard let the call through —
  // the handler may still answer NOT_FOUND or INVALID_ARGUMENT for the empty request.
  type Probe = [RoleName, string, (role: RoleName) => Promise<unknown> | AsyncIterable<unknown>, boolean];
  const reg = (r: RoleName) => as(RegistryService, "registry", r);
  const feat = (r: RoleName) => as(FeatureService, "features", r);
  const inf = (r: RoleName) => as(InferenceService, "inference", r);
  const rtr = (r: RoleName) => as(RouterService, "router", r);
  const exp = (r: RoleName) => as(ExperimentService, "experiments", r);
  const probes: Probe[] = [
    // viewer reads, never writes
    ["viewer", "Registry.ListModels", (r) => reg(r).listModels({}), true],
    ["viewer", "Features.ListFeatureViews", (r) => feat(r).listFeatureViews({}), true],
    ["viewer", "Router.ListEndpoints", (r) => rtr(r).listEndpoints({}), true],
    ["viewer", "Experiments.ListExperiments", (r) => exp(r).listExperiments({}), true],
    ["viewer", "Registry.CreateModel", (r) => reg(r).createModel({ name: `v-${run}` }), false],
    ["viewer", "Features.WriteFeatures", (r) => feat(r).writeFeatures({ view: "nope" }), false],
    ["viewer", "Inference.Score", (r) => inf(r).score({ modelRef: "nope@1" }), false],
    ["viewer", "Router.Predict", (r) => rtr(r).predict({}), false],
    ["viewer", "Router.StartRollout", (r) => rtr(r).startRollout({}), false],
    // predictor: Predict / Score / Assign, not writes or deployment
    ["predictor", "Router.Predict", (r) => rtr(r).predict({}), true],
    ["predictor", "Inference.Score", (r) => inf(r).score({ modelRef: "nope@1" }), true],
    ["predictor", "Experiments.Assign", (r) => exp(r).assign({}), true],
    ["predictor", "Features.WriteFeatures", (r) => feat(r).writeFeatures({ view: "nope" }), false],
    ["predictor", "Registry.PromoteModelVersion", (r) => reg(r).promoteModelVersion({}), false],
    // feature-writer: feature values and definitions only
    ["feature-writer", "Features.WriteFeatures", (r) => feat(r).writeFeatures({ view: "nope" }), true],
    ["feature-writer", "Features.ApplyFeatureViews", (r) => feat(r).applyFeatureViews({ validateOnly: true }), true],
    ["feature-writer", "Router.Predict", (r) => rtr(r).predict({}), false],
    ["feature-writer", "Registry.CreateModel", (r) => reg(r).createModel({ name: `f-${run}` }), false],
    // deployer: promote, rollout, endpoints, load models; not policy or deletion
    ["deployer", "Registry.PromoteModelVersion", (r) => reg(r).promoteModelVersion({}), true],
    ["deployer", "Router.StartRollout", (r) => rtr(r).startRollout({}), true],
    ["deployer", "Router.ApplyEndpoint", (r) => rtr(r).applyEndpoint({}), true],
    ["deployer", "Experiments.StartExperiment", (r) => exp(r).startExperiment({}), true],
    ["deployer", "Registry.SetPromotionPolicy", (r) => reg(r).setPromotionPolicy({}), false],
    ["deployer", "Registry.DeleteModel", (r) => reg(r).deleteModel({ name: "nope" }), false],
    ["deployer", "Features.WriteFeatures", (r) => feat(r).writeFeatures({ view: "nope" }), false],
    ["deployer", "Router.Predict", (r) => rtr(r).predict({}), false],
    // admin: everything
    ["admin", "Registry.SetPromotionPolicy", (r) => reg(r).setPromotionPolicy({}), true],
    ["admin", "Registry.DeleteModel", (r) => reg(r).deleteModel({ name: "nope" }), true],
    ["admin", "Features.WriteFeatures", (r) => feat(r).writeFeatures({ view: "nope" }), true],
    ["admin", "Router.Predict", (r) => rtr(r).predict({}), true],
    ["admin", "Router.StartRollout", (r) => rtr(r).startRollout({}), true],
    ["admin", "Inference.Score", (r) => inf(r).score({ modelRef: "nope@1" }), true],
    ["admin", "Registry.DownloadArtifact", (r) => reg(r).downloadArtifact({}), true],
    // streaming methods are guarded the same way
    ["viewer", "Registry.UploadModelVersion (client stream)", (r) => reg(r).uploadModelVersion((async function* () {})()), false],
    ["predictor", "Features.IngestFeatures (client stream)", (r) => feat(r).ingestFeatures((async function* () {})()), false],
    ["feature-writer", "Features.IngestFeatures (client stream)", (r) => feat(r).ingestFeatures((async function* () {})()), true],
  ];

  it("holds every role boundary over gRPC", async () => {
    const wrong: string[] = [];
    for (const [role, name, call, allowed] of probes) {
      const code = await codeOf(call(role));
      const denied = code === Code.PermissionDenied;
      if (code === Code.Unauthenticated || denied === allowed) wrong.push(`${role} ${name}: got ${Code[code] ?? "OK"}, expected ${allowed ? "allowed" : "PERMISSION_DENIED"}`);
    }
    assert.deepEqual(wrong, []);
  });

  it("refuses a server stream without credentials before it starts", async () => {
    assert.equal(await codeOf(as(RegistryService, "registry").downloadArtifact({})), Code.Unauthenticated);
  });

  it("accepts a JWT from the configured issuer and refuses an expired or foreign one", async () => {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const good = signJwt({ sub: "jane@idp", roles: ["deployer"], iss: "https://idp.test", aud: "mlmesh", exp });
    const c = (t: string) => createServiceClient(RegistryService, proc.endpoint("registry").grpc, { auth: { client: `Bearer ${t}` } });
    const name = `jwt-${run}`;
    await c(good).createModel({ name });
    const { auditRecords } = await reg("viewer").listAuditRecords({ modelName: name });
    assert.equal(auditRecords[0]?.principal, "jane@idp");
    assert.equal(await codeOf(c(good).setPromotionPolicy({})), Code.PermissionDenied);
    const expired = signJwt({ sub: "jane@idp", roles: ["admin"], iss: "https://idp.test", aud: "mlmesh", exp: Math.floor(Date.now() / 1000) - 3600 });
    await assert.rejects(c(expired).listModels({}), (e: ConnectError) => e.code === Code.Unauthenticated && /expired at/.test(e.rawMessage));
    const otherAud = signJwt({ sub: "jane@idp", roles: ["admin"], iss: "https://idp.test", aud: "another-api", exp });
    await assert.rejects(c(otherAud).listModels({}), (e: ConnectError) => e.code === Code.Unauthenticated && /aud does not include "mlmesh"/.test(e.rawMessage));
  });

  it("names the missing role in PERMISSION_DENIED", async () => {
    await assert.rejects(reg("viewer").createModel({ name: `x-${run}` }), (err: ConnectError) => {
      assert.equal(err.code, Code.PermissionDenied);
      assert.equal(err.rawMessage, `principal "vera" (roles: viewer) may not call mlmesh.registry.v1.RegistryService/CreateModel: it needs role deployer (or admin)`);
      return true;
    });
  });

  it("applies the same checks over Connect JSON on the HTTP port", async () => {
    const url = `${proc.endpoint("registry").http}/mlmesh.registry.v1.RegistryService/ListModels`;
    const post = (token?: string) =>
      fetch(url, { method: "POST", headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: "{}" });
    const none = await post();
    assert.equal(none.status, 401);
    assert.equal(((await none.json()) as { code: string }).code, "unauthenticated");
    assert.equal((await post(TOKENS.viewer)).status, 200);
    const create = await fetch(url.replace("ListModels", "CreateModel"), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKENS.predictor}` },
      body: JSON.stringify({ name: `c-${run}` }),
    });
    assert.equal(create.status, 403);
    assert.match(((await create.json()) as { message: string }).message, /needs role deployer/);
    // A mutation over Connect is audited under its principal too.
    const viaConnect = await fetch(url.replace("ListModels", "CreateModel"), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKENS.deployer}` },
      body: JSON.stringify({ name: `connect-${run}` }),
    });
    assert.equal(viaConnect.status, 200);
    const { auditRecords } = await reg("viewer").listAuditRecords({ modelName: `connect-${run}` });
    assert.equal(auditRecords[0]?.principal, "dora");
    // Probes stay open.
    assert.equal((await fetch(`${proc.endpoint("registry").http}/readyz`)).status, 200);
  });

  it("guards the OIP REST routes by the RPC they stand for; liveness stays open", async () => {
    const base = proc.endpoint("inference").http;
    const infer = (token?: string) =>
      fetch(`${base}/v2/models/nope/infer`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ inputs: [{ name: "x", datatype: "FP32", shape: [1], data: [1] }] }),
      });
    const none = await infer();
    assert.equal(none.status, 401);
    assert.match(((await none.json()) as { error: string }).error, /ModelInfer needs credentials/);
    const viewer = await infer(TOKENS.viewer);
    assert.equal(viewer.status, 403);
    assert.match(((await viewer.json()) as { error: string }).error, /needs role predictor/);
    const predictor = await infer(TOKENS.predictor);
    assert.ok(predictor.status !== 401 && predictor.status !== 403, `predictor got ${predictor.status}`);
    assert.equal((await fetch(`${base}/v2/health/live`)).status, 200);
  });

  it("records the authenticated principal of a mutation in the audit log", async () => {
    const name = `audited-${run}`;
    await reg("deployer").createModel({ name, reason: "security e2e" });
    await reg("admin").updateModel({ registeredModel: { name, description: "changed by admin" }, updateMask: { paths: ["description"] }, reason: "security e2e" });
    const { auditRecords } = await reg("viewer").listAuditRecords({ modelName: name });
    assert.deepEqual(
      auditRecords.map((r) => [r.action, r.principal]),
      [
        [auditRecords[0]!.action, "dora"],
        [auditRecords[1]!.action, "ada"],
      ],
    );
    assert.match(auditRecords[0]!.action, /create/);
    assert.match(auditRecords[1]!.action, /update/);
    const created = await reg("viewer").getModel({ name });
    assert.equal(created.registeredModel?.owner, "dora", "owner defaults to the calling principal");
  });

  it("lets services call each other with the service token (inference asks the registry)", async () => {
    // inference resolves the model ref at the registry on the caller's behalf: NOT_FOUND from
    // the registry proves the inner call was authenticated (it would be UNAUTHENTICATED).
    const err = await inf("deployer").loadModel({ modelRef: `missing-${run}@1` }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(err?.code, Code.NotFound, err?.rawMessage);
    // The registry saw the inner call as dora's, made by the mesh's service identity.
    // (Logs are written asynchronously: wait for the line.)
    const findInner = () =>
      proc
        .stderr()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { rpc?: string; principal?: string; via?: string })
        .find((l) => l.rpc === "mlmesh.registry.v1.RegistryService/ResolveModelRef" && l.principal === "dora");
    const until = Date.now() + 5000;
    while (!findInner() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.equal(findInner()?.via, "mlmesh-service");
  });

  it("never writes a token to the logs", () => {
    const logs = proc.stderr();
    assert.ok(logs.length > 0);
    for (const t of [...Object.values(TOKENS), SERVICE_TOKEN]) assert.ok(!logs.includes(t), "a token appeared in the logs");
    assert.ok(!logs.includes("authentication is OFF"), "auth on: no dev-mode warning");
  });
});

describe("secrets in `mlmesh config`", () => {
  it("prints no token, digest or URL password", () => {
    const r = spawnSync(process.execPath, [MLMESH_BIN, "config", "--json"], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        MLMESH_AUTH_TOKENS: AUTH_TOKENS,
        MLMESH_AUTH_SERVICE_TOKEN: SERVICE_TOKEN,
        MLMESH_TOKEN: TOKENS.admin,
        MLMESH_NATS_URL: "nats://mesh:hunter2-password@127.0.0.1:4222",
      },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout;
    for (const t of [...Object.values(TOKENS), SERVICE_TOKEN, sha(TOKENS.viewer), "hunter2-password"]) assert.ok(!out.includes(t), `config dump contains a secret`);
    const cfg = JSON.parse(out) as { security: { auth: { mode: string; serviceToken: string; tokens: Array<{ principal: string; sha256: string }> }; clientToken: string }; natsUrl: string };
    assert.equal(cfg.security.auth.mode, "on");
    assert.equal(cfg.security.auth.serviceToken, "[redacted]");
    assert.equal(cfg.security.clientToken, "[redacted]");
    assert.deepEqual(cfg.security.auth.tokens.map((t) => [t.principal, t.sha256]), Object.values(PRINCIPAL).map((p) => [p, "[redacted]"]));
    assert.equal(cfg.natsUrl, "nats://mesh:[redacted]@127.0.0.1:4222");
  });
});
