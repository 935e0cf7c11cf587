// Versions through the real `mlmesh serve registry` process and gRPC: streaming upload with
// verification and content addressing, bad uploads leaving nothing behind, resumable
// uploads, refs, download with verification on read, stages, aliases, the promotion policy
// (with the PromotionRejected detail over Connect), concurrent promotions, deletion and restart.

import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { PromotionRejectedSchema, Stage } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { RegistryService, UploadState } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "../../lib/clients.js";
import { buildNumericReference } from "../../lib/drift/reference.js";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";
import { testNats, type TestNats } from "../support/nats.js";
import { download, fixture, sha256, upload, type RegistryClient } from "../fixtures/models/registry-client.js";

const code = (c: Code, re?: RegExp) => (e: unknown) => {
  const ce = ConnectError.from(e);
  assert.equal(ce.code, c, `expected ${Code[c]}, got ${Code[ce.code]}: ${ce.rawMessage}`);
  if (re) assert.match(ce.rawMessage, re);
  return true;
};

describe("registry versions, artifacts, stages, aliases and promotion", () => {
  let nats: TestNats;
  let env: Record<string, string>;
  let proc: MlmeshProcess;
  let client: RegistryClient;
  const v1 = fixture("lr_v1.onnx");
  const v2 = fixture("lr_v2.onnx");
  const other = fixture("lr_other_inputs.onnx");
  const artifactsDir = () => path.join(env.MLMESH_DATA_DIR!, "registry", "artifacts");
  const uploadsDir = () => path.join(env.MLMESH_DATA_DIR!, "registry", "uploads");

  before(async () => {
    nats = await testNats();
    env = await isolatedEnv({ MLMESH_NATS_URL: nats.url });
    proc = await startMlmesh(["serve", "registry"], env);
    client = createServiceClient(RegistryService, proc.endpoint("registry").grpc);
  });
  after(async () => {
    await proc.stop();
    await nats.stop();
  });

  it("uploads a version in chunks, reads its signature, and serves it by every kind of ref", async () => {
    const res = await upload(client, "churn", v1, {
      spec: {
        description: "first",
        tags: { team: "growth" },
        lineage: { metrics: { auc: 0.82 }, params: { C: "1.0" }, codeVersion: "abc123", datasets: [{ uri: "s3://b/train.parquet", revision: { case: "version", value: "v3" } }] },
        card: { intendedUse: "Rank churn risk." },
        featureBinding: { inputs: [{ inputName: "x", features: ["user:tenure", "user:spend", "user:visits"] }], entityKeys: ["user_id"] },
      },
    });
    assert.equal(res.modelCreated, true);
    assert.equal(res.artifactDeduplicated, false);
    const mv = res.modelVersion!;
    assert.equal(mv.version, 1n);
    assert.equal(mv.stage, Stage.NONE);
    assert.equal(mv.artifact?.sha256, sha256(v1));
    assert.equal(mv.artifact?.sizeBytes, BigInt(v1.length));
    assert.equal(mv.artifact?.producerName, "mlmesh-fixtures");
    assert.deepEqual(mv.signature?.inputs.map((i) => i.name), ["x"]);
    assert.deepEqual(readdirSync(artifactsDir()), [sha256(v1)]);
    assert.deepEqual(readdirSync(uploadsDir()), []);

    const latest = await client.resolveModelRef({ modelRef: "churn@latest" });
    assert.equal(latest.version, 1n);
    assert.equal(latest.artifactSha256, sha256(v1));
    assert.deepEqual(latest.featureBinding?.entityKeys, ["user_id"]);
    assert.equal((await client.getModelVersion({ modelRef: "churn@1" })).modelVersion?.description, "first");
    await assert.rejects(client.resolveModelRef({ modelRef: "churn" }), code(Code.NotFound, /Production/));
    await assert.rejects(client.resolveModelRef({ modelRef: "churn@9" }), code(Code.NotFound));
    await assert.rejects(client.resolveModelRef({ modelRef: "churn@Bad!" }), code(Code.InvalidArgument, /model_ref/));
    await assert.rejects(client.resolveModelRef({ modelRef: "../etc@1" }), code(Code.InvalidArgument));

    const d = await download(client, "churn@1");
    assert.equal(d.header.sha256, sha256(v1));
    assert.ok(d.bytes.equals(v1));
    const tail = await download(client, "churn@1", 100);
    assert.ok(tail.bytes.equals(v1.subarray(100)));
    await assert.rejects(download(client, "churn@1", v1.length + 1), code(Code.OutOfRange));

    // Same bytes again: a new version sharing the stored file.
    const again = await upload(client, "churn", v1, { create: false, spec: { lineage: { metrics: { auc: 0.7 } } } });
    assert.equal(again.modelVersion?.version, 2n);
    assert.equal(again.artifactDeduplicated, true);
    assert.deepEqual(readdirSync(artifactsDir()), [sha256(v1)]);
  });

  it("refuses bad uploads with the right code and leaves no version and no file behind", async () => {
    const before = (await client.getModel({ name: "churn" })).registeredModel!.latestVersion;
    await assert.rejects(upload(client, "churn", Buffer.from("not an onnx model at all, just text")), code(Code.InvalidArgument, /not an ONNX model/));
    await assert.rejects(upload(client, "churn", v2, { trailer: { sha256: "0".repeat(64) } }), code(Code.InvalidArgument, /trailer.sha256/));
    await assert.rejects(upload(client, "churn", v2, { trailer: { sizeBytes: 5n } }), code(Code.InvalidArgument, /trailer.size_bytes/));
    await assert.rejects(upload(client, "no_such_model", v2, { create: false }), code(Code.NotFound));
    await assert.rejects(upload(client, "bad/name", v2), code(Code.InvalidArgument, /model_name/));
    await assert.rejects(upload(client, "churn", v2, { spec: { lineage: { metrics: { auc: Number.NaN } } } }), code(Code.InvalidArgument, /metrics/));
    await assert.rejects(
      upload(client, "churn", v2, { spec: { featureBinding: { inputs: [{ inputName: "x", features: ["user:a"] }] } } }),
      code(Code.InvalidArgument, /3 columns but 1 features/),
    );
    assert.equal((await client.getModel({ name: "churn" })).registeredModel!.latestVersion, before);
    assert.deepEqual(readdirSync(artifactsDir()), [sha256(v1)]);
    assert.deepEqual(readdirSync(uploadsDir()), []);
  });

  it("a cut upload leaves no version and no artifact; it can be resumed, or aborted", async () => {
    const id = `resume-${Date.now()}`;
    // The client dies halfway: the stream is cancelled after 100 bytes.
    const ac = new AbortController();
    const cut = upload(client, "churn", v2.subarray(0, 100), { uploadId: id, trailer: null, signal: ac.signal, chunkBytes: 100 });
    await assert.rejects(cut, code(Code.InvalidArgument, /without a trailer/));
    const status = await client.getUploadStatus({ uploadId: id });
    assert.equal(status.state, UploadState.RECEIVING);
    assert.equal(status.receivedBytes, 100n);
    assert.equal((await client.getModel({ name: "churn" })).registeredModel!.latestVersion, 2n);
    assert.deepEqual(readdirSync(artifactsDir()), [sha256(v1)]);
    await assert.rejects(upload(client, "churn", v2, { uploadId: id, offset: 50 }), code(Code.FailedPrecondition, /resume at offset 100/));
    const done = await upload(client, "churn", v2, { uploadId: id, offset: 100, spec: { lineage: { metrics: { auc: 0.83 } } } });
    assert.equal(done.modelVersion?.version, 3n);
    assert.equal(done.modelVersion?.artifact?.sha256, sha256(v2));
    const st = await client.getUploadStatus({ uploadId: id });
    assert.equal(st.state, UploadState.COMPLETED);
    assert.equal(st.version, 3n);
    await assert.rejects(upload(client, "churn", v2, { uploadId: id }), code(Code.AlreadyExists));

    const abortId = `abort-${Date.now()}`;
    await assert.rejects(upload(client, "churn", other.subarray(0, 64), { uploadId: abortId, trailer: null }), code(Code.InvalidArgument));
    assert.equal((await client.abortUpload({ uploadId: abortId, reason: "gave up" })).discardedBytes, 64n);
    await assert.rejects(client.getUploadStatus({ uploadId: abortId }), code(Code.NotFound));
    assert.deepEqual(readdirSync(uploadsDir()), []);

    // A stream the client cancels mid-way (no clean end at all) also commits nothing.
    const ac2 = new AbortController();
    const cancelId = `cancel-${Date.now()}`;
    async function* slow() {
      yield { part: { case: "header" as const, value: { uploadId: cancelId, modelName: "churn", createModelIfMissing: false } } };
      yield { part: { case: "chunk" as const, value: other.subarray(0, 80) } };
      await new Promise((r) => setTimeout(r, 200));
      ac2.abort();
      await new Promise((r) => setTimeout(r, 5000));
    }
    await assert.rejects(client.uploadModelVersion(slow(), { signal: ac2.signal }));
    const deadline = Date.now() + 5000;
    let cancelled = await client.getUploadStatus({ uploadId: cancelId });
    while (cancelled.streamOpen && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      cancelled = await client.getUploadStatus({ uploadId: cancelId });
    }
    assert.equal(cancelled.state, UploadState.RECEIVING);
    assert.equal(cancelled.streamOpen, false);
    assert.equal((await client.getModel({ name: "churn" })).registeredModel!.latestVersion, 3n);
    await client.abortUpload({ uploadId: cancelId });
  });

  it("enforces the promotion policy, lists every failed rule, and audits an override", async () => {
    const policy = await client.setPromotionPolicy({
      policy: {
        modelName: "churn",
        rules: [
          { kind: { case: "metricThreshold", value: { metric: "auc", comparator: 2, value: 0.8 } } },
          { kind: { case: "relativeToProduction", value: { metric: "auc", comparator: 2, delta: -0.005 } } },
          { kind: { case: "requiredCardSections", value: { sections: [1] } } },
          { kind: { case: "signatureCompatible", value: {} } },
          { kind: { case: "requiredLineageFields", value: { fields: ["code_version"] } } },
        ],
      },
      reason: "gates",
    });
    assert.equal(policy.policy?.revision, 1n);
    assert.deepEqual(policy.policy?.rules.map((r) => r.description), ["auc >= 0.8", "auc >= production.auc - 0.005", "card:intended_use", "signature:compatible", "lineage:code_version"]);
    await assert.rejects(client.setPromotionPolicy({ policy: { modelName: "churn", rules: [{ kind: { case: "requiredLineageFields", value: { fields: ["colour"] } } }] } }), code(Code.InvalidArgument, /colour/));
    await assert.rejects(client.setPromotionPolicy({ policy: { modelName: "churn", rules: [] }, expectedRevision: 7n }), code(Code.Aborted));

    const ok = await client.checkPromotion({ modelName: "churn", version: 1n });
    assert.equal(ok.passed, true);
    const p1 = await client.promoteModelVersion({ modelName: "churn", version: 1n, reason: "first release" });
    assert.equal(p1.modelVersion?.stage, Stage.PRODUCTION);
    assert.deepEqual(p1.modelVersion?.aliases, ["production"]);
    assert.equal((await client.resolveModelRef({ modelRef: "churn" })).version, 1n);

    // v2 (auc 0.7, no card, no code version) fails three rules: all are reported, over
    // gRPC in the message and over Connect as a PromotionRejected detail.
    await assert.rejects(client.promoteModelVersion({ modelName: "churn", version: 2n }), code(Code.FailedPrecondition, /auc >= 0.8: actual 0.7, required >= 0.8.*card:intended_use.*lineage:code_version/));
    const viaGrpc = await client.promoteModelVersion({ modelName: "churn", version: 2n }).then(
      () => assert.fail("promotion should fail"),
      (e: unknown) => ConnectError.from(e),
    );
    const [grpcDetail] = viaGrpc.findDetails(PromotionRejectedSchema);
    assert.equal(grpcDetail?.failedRules.length, 4, "the detail also travels over gRPC (grpc-status-details-bin)");
    const connect = createClient(RegistryService, createConnectTransport({ baseUrl: proc.endpoint("registry").http, httpVersion: "1.1" }));
    const err = await connect.promoteModelVersion({ modelName: "churn", version: 2n }).then(
      () => assert.fail("promotion should fail"),
      (e: unknown) => ConnectError.from(e),
    );
    const [detail] = err.findDetails(PromotionRejectedSchema);
    assert.ok(detail, "PromotionRejected detail attached");
    assert.equal(detail.productionVersion, 1n);
    assert.deepEqual(
      detail.failedRules.map((r) => [r.rule?.description, r.actual, r.required]),
      [
        ["auc >= 0.8", "0.7", ">= 0.8"],
        ["auc >= production.auc - 0.005", "0.7", ">= 0.815 (production v1 auc 0.82 - 0.005)"],
        ["card:intended_use", "missing: intended_use", "non-empty intended_use"],
        ["lineage:code_version", "missing: code_version", "non-empty code_version"],
      ],
    );
    const check = await client.checkPromotion({ modelName: "churn", version: 2n });
    assert.equal(check.passed, false);
    assert.equal(check.ruleResults.length, 5);
    await assert.rejects(client.promoteModelVersion({ modelName: "churn", version: 2n, override: true }), code(Code.InvalidArgument, /reason/));
    const forced = await client.promoteModelVersion({ modelName: "churn", version: 2n, override: true, reason: "hotfix, approved by risk" });
    assert.equal(forced.overridden, true);
    assert.equal(forced.displacedVersion, 1n);
    assert.equal((await client.getModelVersion({ modelRef: "churn@1" })).modelVersion?.stage, Stage.ARCHIVED);
    const audit = await client.listAuditRecords({ modelName: "churn", action: "version.promote" });
    const last = JSON.parse(audit.auditRecords.at(-1)!.afterJson);
    assert.equal(last.overridden, true);
    assert.equal(last.overriddenRules.length, 4);
    assert.equal(audit.auditRecords.at(-1)!.reason, "hotfix, approved by risk");
  });

  it("of two concurrent promotions exactly one holds Production, and the audit log agrees", async () => {
    await client.setPromotionPolicy({ policy: { modelName: "churn", rules: [] }, reason: "race test" });
    const a = await upload(client, "churn", other, { spec: { lineage: { metrics: { auc: 0.9 } } } });
    const va = a.modelVersion!.version;
    const results = await Promise.allSettled([
      client.promoteModelVersion({ modelName: "churn", version: 3n, expectedProductionVersion: 2n, reason: "race a" }),
      client.promoteModelVersion({ modelName: "churn", version: va, expectedProductionVersion: 2n, reason: "race b" }),
    ]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    assert.equal(ConnectError.from(lost[0]!.reason).code, Code.Aborted);
    const prod = (await client.listModelVersions({ modelName: "churn", stage: Stage.PRODUCTION })).modelVersions;
    assert.equal(prod.length, 1);
    const audit = (await client.listAuditRecords({ modelName: "churn", action: "version.promote" })).auditRecords;
    const lastPromote = audit.at(-1)!;
    assert.equal(lastPromote.resource, `models/churn/versions/${prod[0]!.version}`);
    assert.equal(JSON.parse(lastPromote.afterJson).displacedVersion, 2);
    assert.equal(audit.length, 3);
  });

  it("moves aliases atomically with compare-and-set, and guards deletion of what they hold", async () => {
    const set = await client.setAlias({ modelName: "churn", alias: "champion", version: 1n, expectedVersion: 0n });
    assert.equal(set.previousVersion, 0n);
    await assert.rejects(client.setAlias({ modelName: "churn", alias: "champion", version: 3n, expectedVersion: 0n }), code(Code.Aborted));
    const moved = await client.setAlias({ modelName: "churn", alias: "champion", version: 3n, expectedVersion: 1n });
    assert.equal(moved.previousVersion, 1n);
    assert.deepEqual((await client.getModelVersion({ modelRef: "churn@champion" })).modelVersion?.version, 3n);
    await assert.rejects(client.setAlias({ modelName: "churn", alias: "latest", version: 1n }), code(Code.InvalidArgument, /reserved/));
    await assert.rejects(client.setAlias({ modelName: "churn", alias: "123", version: 1n }), code(Code.InvalidArgument));
    await assert.rejects(client.deleteAlias({ modelName: "churn", alias: "production" }), code(Code.FailedPrecondition));
    const staged = await client.transitionStage({ modelName: "churn", version: 1n, stage: Stage.STAGING, reason: "retest" });
    assert.deepEqual(staged.modelVersion?.aliases, ["staging"]);
    await assert.rejects(client.transitionStage({ modelName: "churn", version: 1n, stage: Stage.PRODUCTION }), code(Code.InvalidArgument));
    await assert.rejects(client.transitionStage({ modelName: "churn", version: 1n, stage: Stage.ARCHIVED, expectedStage: Stage.NONE }), code(Code.Aborted));

    await assert.rejects(client.deleteModelVersion({ modelName: "churn", version: 3n }), code(Code.FailedPrecondition, /champion/));
    await assert.rejects(client.deleteModelVersion({ modelName: "churn", version: 3n, force: true }), code(Code.InvalidArgument, /reason/));
    await client.deleteAlias({ modelName: "churn", alias: "champion", expectedVersion: 3n });
    // v1 and v2 share the v1 bytes; the file goes only when neither is left.
    const prod = (await client.resolveModelRef({ modelRef: "churn@production" })).version;
    const notProd = [1n, 2n, 3n].filter((v) => v !== prod);
    for (const v of notProd) await client.deleteModelVersion({ modelName: "churn", version: v, force: true, reason: "cleanup" });
    const files = readdirSync(artifactsDir());
    assert.ok(files.includes(sha256(other)));
    assert.equal(existsSync(path.join(artifactsDir(), sha256(v1))), [1n, 2n].includes(prod) ? true : false);
    await assert.rejects(client.getModelVersion({ modelRef: `churn@${notProd[0]}` }), code(Code.NotFound));
  });

  it("answers DATA_LOSS when an artifact no longer matches its digest", async () => {
    const r = await upload(client, "tamper", v2);
    writeFileSync(path.join(artifactsDir(), sha256(v2)), Buffer.concat([v2.subarray(0, 10), Buffer.from("x"), v2.subarray(11)]));
    await assert.rejects(download(client, "tamper@1"), code(Code.DataLoss, /failed verification/));
    // The content is shared with churn@3 (same bytes): put it back.
    writeFileSync(path.join(artifactsDir(), sha256(v2)), v2);
    assert.equal(r.modelVersion?.version, 1n);
    await client.deleteModel({ name: "tamper", reason: "corrupt" });
  });

  it("bins a reference sample with the drift library's quantiles, scores it with the model, and renders the card", async () => {
    const n = 200;
    const col = (k: number) => Array.from({ length: n }, (_, i) => Math.sin(i * (k + 1)) * (k + 1));
    const r = await upload(client, "refs", v2, {
      spec: {
        card: { intendedUse: "Testing." },
        lineage: { metrics: { auc: 0.8 }, codeVersion: "c0ffee" },
        reference: { source: { case: "sample", value: { columns: [0, 1, 2].map((k) => ({ name: `x[${k}]`, values: { case: "numeric" as const, value: { values: col(k) } } })) } } },
      },
    });
    assert.equal(r.modelVersion?.hasReferenceDistributions, true);
    const ref = (await client.getReferenceDistributions({ modelRef: "refs@1" })).referenceDistributions!;
    assert.equal(ref.sampleSize, 200n);
    assert.deepEqual(ref.features.map((f) => f.column), ["x[0]", "x[1]", "x[2]"]);
    const expected = buildNumericReference(col(0));
    const h = ref.features[0]!.distribution!.kind;
    assert.equal(h.case, "numeric");
    assert.deepEqual(h.value!.binEdges, expected.edges);
    assert.deepEqual(h.value!.binCounts.map(Number), expected.counts);
    assert.equal(ref.scoreSource, "score");
    assert.equal(ref.score?.count, 200n);
    await assert.rejects(
      client.setReferenceDistributions({ modelName: "refs", version: 1n, reference: { source: { case: "sample", value: { columns: [{ name: "x[0]", values: { case: "numeric", value: { values: [1, 2] } } }] } } } }),
      code(Code.InvalidArgument, /x\[1\]/),
    );
    await assert.rejects(
      client.setReferenceDistributions({ modelName: "refs", version: 1n, reference: { source: { case: "distributions", value: { sampleSize: 2n, features: [{ column: "x[0]", distribution: { count: 2n, kind: { case: "numeric", value: { binEdges: [1, 0], binCounts: [2n] } } } }] } } } }),
      code(Code.InvalidArgument, /increasing/),
    );
    const card = await client.getModelCard({ modelRef: "refs@latest" });
    assert.match(card.markdown, /^# refs v1/);
    assert.match(card.markdown, /## Intended use\n\nTesting\./);
    assert.match(card.markdown, /## Limitations\n\n_Not provided\._/);
    assert.match(card.markdown, /\| auc \| 0.8 \|/);
    assert.match(card.markdown, /Code: `c0ffee`/);
    assert.match(card.markdown, /\| input \| x \| tensor\(float\) \| \[batch, 3\] \|/);
  });

  it("loses nothing across a restart", async () => {
    const before = await client.listModelVersions({ modelName: "churn" });
    const policy = await client.getPromotionPolicy({ modelName: "churn" });
    await proc.stop();
    proc = await startMlmesh(["serve", "registry"], env);
    client = createServiceClient(RegistryService, proc.endpoint("registry").grpc);
    const afterRestart = await client.listModelVersions({ modelName: "churn" });
    assert.deepEqual(afterRestart.modelVersions.map((v) => [v.version, v.stage, v.aliases, v.artifact?.sha256]), before.modelVersions.map((v) => [v.version, v.stage, v.aliases, v.artifact?.sha256]));
    assert.equal((await client.getPromotionPolicy({ modelName: "churn" })).policy?.revision, policy.policy?.revision);
    const prod = await client.resolveModelRef({ modelRef: "churn" });
    const d = await download(client, "churn");
    assert.equal(sha256(d.bytes), prod.artifactSha256);
  });
});
