// Transport-level security on real processes: mTLS with certificates from `mlmesh certs dev`
// (a client without a certificate, or with one from another CA, is refused on both ports;
// a valid one works, and the services call each other over mTLS), the auth-off warning,
// the per-principal rate limit (RESOURCE_EXHAUSTED with RetryInfo, on gRPC and Connect),
// and MLMESH_MAX_MESSAGE_BYTES enforced on both transports.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { closeAllClients, createServiceClient } from "../../lib/clients.js";
import type { TlsMaterial } from "../../lib/tls.js";
import { isolatedEnv, MLMESH_BIN, REPO_ROOT, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";

function certsDev(out: string): { dir: string; ca: string } {
  const r = spawnSync(process.execPath, [MLMESH_BIN, "certs", "dev", "--out", out, "--json"], { cwd: REPO_ROOT, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { dir: string; ca: string };
}

const material = (dir: string, name: string, caDir = dir): TlsMaterial => ({
  ca: fs.readFileSync(path.join(caDir, "ca.crt")),
  cert: fs.readFileSync(path.join(dir, `${name}.crt`)),
  key: fs.readFileSync(path.join(dir, `${name}.key`)),
});

/** grpc.health.v1 Check with raw grpc-js credentials; resolves with the status code. */
function healthCheck(address: string, creds: grpc.ChannelCredentials): Promise<grpc.status> {
  const client = new grpc.Client(address.replace(/^https?:\/\//, ""), creds);
  return new Promise<grpc.status>((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (m: unknown) => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, m as object))),
      (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
      {},
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err) => resolve(err ? err.code : grpc.status.OK),
    );
  }).finally(() => client.close());
}

function httpsRequest(url: string, opts: { ca: Buffer; cert?: Buffer; key?: Buffer; method?: string; body?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: opts.method ?? "GET", ca: opts.ca, cert: opts.cert, key: opts.key, headers: opts.body ? { "content-type": "application/json" } : {} }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

describe("mTLS (mlmesh certs dev + mlmesh up)", () => {
  let proc: MlmeshProcess;
  let dir: string;
  let otherDir: string;

  before(async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-certs-"));
    dir = certsDev(path.join(tmp, "mesh")).dir;
    otherDir = certsDev(path.join(tmp, "other")).dir;
    proc = await startMlmesh(
      ["up"],
      await isolatedEnv({ MLMESH_TLS_CA: path.join(dir, "ca.crt"), MLMESH_TLS_CERT: path.join(dir, "mesh.crt"), MLMESH_TLS_KEY: path.join(dir, "mesh.key"), MLMESH_LOG_LEVEL: "debug" }),
      60_000,
    );
  });
  after(async () => {
    closeAllClients();
    await proc?.stop();
  });

  it("`mlmesh certs dev` reuses its CA on a second run, and every certificate chains to it", () => {
    const again = spawnSync(process.execPath, [MLMESH_BIN, "certs", "dev", "--out", dir, "--services", "registry", "--san", "registry.mlmesh.svc,10.1.2.3", "--json"], { cwd: REPO_ROOT, encoding: "utf8" });
    assert.equal(again.status, 0, again.stderr);
    const out = JSON.parse(again.stdout) as { caReused: boolean; certificates: Array<{ name: string; sans: string }> };
    assert.equal(out.caReused, true);
    assert.deepEqual(out.certificates.map((c) => c.name), ["registry", "mesh", "client"]);
    assert.match(out.certificates[0]!.sans, /DNS:registry\.mlmesh\.svc,IP:10\.1\.2\.3/);
    for (const name of ["registry", "features", "inference", "router", "experiments", "mesh", "client"]) {
      const v = spawnSync("openssl", ["verify", "-CAfile", path.join(dir, "ca.crt"), path.join(dir, `${name}.crt`)], { encoding: "utf8" });
      assert.equal(v.status, 0, `${name}: ${v.stdout}${v.stderr}`);
    }
    assert.equal(fs.statSync(path.join(dir, "ca.key")).mode & 0o077, 0, "private keys are not group/world readable");
    const bad = spawnSync(process.execPath, [MLMESH_BIN, "certs", "dev", "--out", dir, "--san", "not a name"], { cwd: REPO_ROOT, encoding: "utf8" });
    assert.equal(bad.status, 2);
  });

  it("advertises https endpoints", () => {
    assert.match(proc.endpoint("registry").grpc, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(proc.endpoint("registry").http, /^https:\/\//);
  });

  it("refuses a gRPC client without TLS, without a certificate, or with another CA's certificate", async () => {
    const addr = proc.endpoint("registry").grpc;
    const ca = fs.readFileSync(path.join(dir, "ca.crt"));
    const other = material(otherDir, "client");
    assert.equal(await healthCheck(addr, grpc.credentials.createInsecure()), grpc.status.UNAVAILABLE);
    assert.equal(await healthCheck(addr, grpc.credentials.createSsl(ca)), grpc.status.UNAVAILABLE);
    assert.equal(await healthCheck(addr, grpc.credentials.createSsl(ca, other.key, other.cert)), grpc.status.UNAVAILABLE);
    const good = material(dir, "client");
    assert.equal(await healthCheck(addr, grpc.credentials.createSsl(ca, good.key, good.cert)), grpc.status.OK);
  });

  it("serves a client holding a certificate from the mesh CA, and the services reach each other over mTLS", async () => {
    const tls = material(dir, "client");
    const registry = createServiceClient(RegistryService, proc.endpoint("registry").grpc, { tls });
    await registry.createModel({ name: "tls-model" });
    assert.equal((await registry.listModels({})).registeredModels.length, 1);
    // inference asks the registry (over mTLS) to resolve the ref: NOT_FOUND, not UNAVAILABLE.
    const inference = createServiceClient(InferenceService, proc.endpoint("inference").grpc, { tls });
    await assert.rejects(inference.loadModel({ modelRef: "tls-model@7" }), (e: ConnectError) => e.code === Code.NotFound || (assert.fail(`${Code[e.code]}: ${e.rawMessage}`) as never));
  });

  it("HTTPS port: probes open, RPCs need a client certificate", async () => {
    const http = proc.endpoint("registry").http;
    const ca = fs.readFileSync(path.join(dir, "ca.crt"));
    assert.equal((await httpsRequest(`${http}/healthz`, { ca })).status, 200);
    const rpc = `${http}/mlmesh.registry.v1.RegistryService/ListModels`;
    const without = await httpsRequest(rpc, { ca, method: "POST", body: "{}" });
    assert.equal(without.status, 401);
    assert.match(without.body, /client certificate signed by the mesh CA is required/);
    const c = material(dir, "client");
    const ok = await httpsRequest(rpc, { ca, cert: c.cert, key: c.key, method: "POST", body: "{}" });
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.body, /tls-model/);
  });

  it("`mlmesh health` uses the configured certificate", () => {
    const env: Record<string, string> = { ...(process.env as Record<string, string>), MLMESH_TLS_CA: path.join(dir, "ca.crt"), MLMESH_TLS_CERT: path.join(dir, "client.crt"), MLMESH_TLS_KEY: path.join(dir, "client.key") };
    for (const s of proc.services) env[`MLMESH_${s.service.toUpperCase()}_ADDR`] = s.grpc.replace("https://", "");
    const r = spawnSync(process.execPath, [MLMESH_BIN, "health", "--json"], { cwd: REPO_ROOT, env, encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it("warns that authentication is off", async () => {
    const re = /"level":"warn".*authentication is OFF/;
    const until = Date.now() + 5000;
    while (!re.test(proc.stderr()) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.match(proc.stderr(), re);
  });
});

describe("rate limit and message size limits", () => {
  let proc: MlmeshProcess;
  const run = crypto.randomBytes(4).toString("hex");
  const viewer = `viewer-${run}-0123456789`;
  const admin = `admin-${run}-0123456789`;
  const sha = (t: string) => crypto.createHash("sha256").update(t).digest("hex");

  before(async () => {
    proc = await startMlmesh(
      ["up"],
      await isolatedEnv({
        MLMESH_AUTH_TOKENS: `${sha(viewer)}:vera:viewer,${sha(admin)}:ada:admin`,
        MLMESH_RATE_LIMIT_RPS: "2",
        MLMESH_RATE_LIMIT_BURST: "3",
        MLMESH_MAX_MESSAGE_BYTES: String(64 * 1024),
      }),
      60_000,
    );
  });
  after(async () => {
    closeAllClients();
    await proc?.stop();
  });

  it("answers RESOURCE_EXHAUSTED with RetryInfo once a principal's burst is spent, then recovers", async () => {
    const c = createServiceClient(RegistryService, proc.endpoint("registry").grpc, { auth: { client: `Bearer ${viewer}` } });
    for (let i = 0; i < 3; i++) await c.listModels({});
    const err = await c.listModels({}).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(err?.code, Code.ResourceExhausted);
    assert.match(err!.rawMessage, /rate limit exceeded for principal "vera": 2 calls\/s, burst 3/);
    const retry = err!.details.find((d) => "type" in d && d.type === "google.rpc.RetryInfo") as { value: Uint8Array } | undefined;
    assert.ok(retry, "RetryInfo detail");
    // RetryInfo.retry_delay (field 1) is a Duration: skip the tag and length bytes.
    const delay = fromBinary(DurationSchema, retry.value.subarray(2));
    const ms = Number(delay.seconds) * 1000 + delay.nanos / 1e6;
    assert.ok(ms > 0 && ms <= 500, `retry delay ${ms} ms at 2/s`);
    // Another principal is unaffected; health is never limited.
    const a = createServiceClient(RegistryService, proc.endpoint("registry").grpc, { auth: { client: `Bearer ${admin}` } });
    await a.listModels({});
    // Connect JSON: 429 with the same code and a retry-after header.
    const res = await fetch(`${proc.endpoint("registry").http}/mlmesh.registry.v1.RegistryService/ListModels`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewer}` },
      body: "{}",
    });
    assert.equal(res.status, 429);
    assert.equal(((await res.json()) as { code: string }).code, "resource_exhausted");
    await new Promise((r) => setTimeout(r, ms + 100));
    await c.listModels({});
  });

  it("enforces MLMESH_MAX_MESSAGE_BYTES on gRPC and on Connect", async () => {
    const big = "x".repeat(100 * 1024);
    const a = createServiceClient(RegistryService, proc.endpoint("registry").grpc, { auth: { client: `Bearer ${admin}` } });
    const err = await a.createModel({ name: `big-${run}`, description: big }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(err?.code, Code.ResourceExhausted, err?.rawMessage);
    const res = await fetch(`${proc.endpoint("registry").http}/mlmesh.registry.v1.RegistryService/CreateModel`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
      body: JSON.stringify({ name: `big-${run}`, description: big }),
    });
    const body = (await res.json()) as { code: string };
    assert.equal(body.code, "resource_exhausted", JSON.stringify(body));
    // Nothing was stored.
    const g = await a.getModel({ name: `big-${run}` }).then(() => "found", (e: unknown) => Code[ConnectError.from(e).code]);
    assert.equal(g, "NotFound");
  });
});
