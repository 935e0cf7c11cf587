// Fault: a process SIGKILLed in the middle of a write, then started again on the same data.
//  - `mlmesh serve features` killed at several points of an IngestFeatures stream (while
//    chunks are staged, around the end of the stream, during the commit): after the restart
//    the upload is whole (every row online and offline) or absent (none), never partial, and
//    nothing is left staged.
//  - `mlmesh serve registry` killed during an UploadModelVersion stream and during its commit:
//    after the restart there is no version or a whole one (its artifact downloads with the
//    uploaded sha256); a killed upload resumes from the offset the registry reports.
// Every SQLite file in the data dirs passes PRAGMA integrity_check after each kill and at the end.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { FeatureService, type IngestFeaturesRequest } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { RegistryService, UploadModelVersionRequestSchema } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { ValueType } from "../../gen/mlmesh/types/v1/types_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createServiceClient } from "../../lib/clients.js";
import { download, fixture, sha256, upload } from "../fixtures/models/registry-client.js";
import { FaultNats, hasNatsBinary } from "../support/fault-nats.js";
import { integrityOfDataDir } from "../support/sqlite-integrity.js";
import { ServiceProcess, sleep } from "./harness.js";

function assertIntegrity(dir: string, when: string): Record<string, string> {
  const result = integrityOfDataDir(dir);
  assert.ok(Object.keys(result).length > 0, `no SQLite file under ${dir}`);
  for (const [file, verdict] of Object.entries(result)) assert.equal(verdict, "ok", `${file} ${when}: ${verdict}`);
  return result;
}

describe("fault: a process killed during a write", { skip: hasNatsBinary() ? false : "needs nats-server on PATH" }, () => {
  let nats: FaultNats;
  before(async () => {
    nats = await FaultNats.start();
  });
  after(async () => nats?.dispose());

  it("features: an ingest killed at any point is whole or absent after the restart", { timeout: 240_000 }, async (t) => {
    const proc = await ServiceProcess.create("features", { MLMESH_NATS_URL: nats.url });
    let client: Client<typeof FeatureService> = createServiceClient(FeatureService, proc.grpc);
    const CHUNKS = 16;
    const ROWS = 250;
    const N = CHUNKS * ROWS;
    const base = Date.UTC(2026, 0, 1, 12);
    try {
      await client.applyFeatureViews({
        views: [{ name: "fk", entities: [{ name: "user_id", type: ValueType.INT64 }], features: [{ name: "views", type: ValueType.INT64 }] }],
      });
      const counts = async () => {
        const { views } = await client.getFreshness({ views: ["fk"] });
        return { online: Number(views[0]!.onlineEntityCount), offline: Number(views[0]!.offlineRowCount) };
      };
      const outcomes: string[] = [];
      // Kill points: while chunks are staged, and 0-400 ms after the last chunk left (the commit).
      const points = [
        { afterChunk: 2, delayMs: 0 },
        { afterChunk: 9, delayMs: 0 },
        // The server waits ~100 ms after a client stream ends for a trailing cancel before committing.
        ...[0, 105, 120, 140, 170, 400].map((delayMs) => ({ afterChunk: CHUNKS - 1, delayMs })),
      ];
      for (const [k, point] of points.entries()) {
        const killAfterMs = `chunk ${point.afterChunk + 1}/${CHUNKS} + ${point.delayMs}`;
        let killed: Promise<void> | undefined;
        const before = await counts();
        async function* stream(): AsyncGenerator<MessageInitShape<typeof import("../../gen/mlmesh/features/v1/features_service_pb.js").IngestFeaturesRequestSchema>> {
          yield { payload: { case: "header", value: { view: "fk", source: "fault-test", requestId: `kill-${k}`, expectedRows: BigInt(N) } } };
          for (let c = 0; c < CHUNKS; c++) {
            yield {
              payload: {
                case: "chunk",
                value: {
                  last: c === CHUNKS - 1,
                  rows: Array.from({ length: ROWS }, (_, i) => ({
                    entityKey: { keys: { user_id: { kind: { case: "int64Value" as const, value: BigInt(k * 100_000 + c * ROWS + i) } } } },
                    eventTime: timestampFromMs(base + i),
                    values: [{ kind: { case: "int64Value" as const, value: BigInt(i) } }],
                  })),
                },
              },
            };
            if (c === point.afterChunk) killed = sleep(point.delayMs).then(() => proc.kill());
            else await sleep(30);
          }
        }
        const call = client.ingestFeatures(stream() as AsyncIterable<IngestFeaturesRequest>).then(
          () => "committed",
          (e: unknown) => `failed (${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage.slice(0, 100)})`,
        );
        const clientSaw = await call;
        await killed;
        assertIntegrity(proc.dataDir, `after kill #${k}`);
        await proc.start();
        client = createServiceClient(FeatureService, proc.grpc);
        const after = await counts();
        const online = after.online - before.online;
        const offline = after.offline - before.offline;
        outcomes.push(`kill at ${killAfterMs}: client ${clientSaw}; +${online} online, +${offline} offline`);
        assert.ok((online === 0 && offline === 0) || (online === N && offline === N), `partial ingest after kill at ${killAfterMs}: +${online} online, +${offline} offline of ${N}`);
        if (clientSaw === "committed") assert.equal(offline, N, "an acknowledged ingest must survive the kill");
      }
      const integrity = assertIntegrity(proc.dataDir, "at the end");
      t.diagnostic(`features ingest kills: ${outcomes.join("; ")}; integrity ${JSON.stringify(integrity)}`);
      console.log(`faults/kill-during-write features: ${outcomes.join("; ")}; integrity ${JSON.stringify(integrity)}`);
    } finally {
      await proc.kill();
    }
  });

  it("registry: an upload killed mid-stream or mid-commit is absent or whole, and resumes", { timeout: 240_000 }, async (t) => {
    const proc = await ServiceProcess.create("registry", { MLMESH_NATS_URL: nats.url });
    let client: Client<typeof RegistryService> = createServiceClient(RegistryService, proc.grpc);
    const bytes = fixture("lr_v1.onnx");
    const digest = sha256(bytes);
    const model = `fault_upload_${Date.now()}`;
    const outcomes: string[] = [];
    try {
      await client.createModel({ name: model });
      const versionsNow = async () => (await client.listModelVersions({ modelName: model })).modelVersions;
      // 8-byte chunks, 25 ms apart; kill points in the byte stream and 0-400 ms after the trailer left (the commit).
      const points = [{ afterByte: 64, delayMs: 0 }, { afterByte: 200, delayMs: 0 }, ...[0, 105, 120, 140, 170, 400].map((d) => ({ afterByte: bytes.length, delayMs: d }))];
      for (const [k, point] of points.entries()) {
        const killAfterMs = point.afterByte < bytes.length ? `byte ${point.afterByte}` : `trailer + ${point.delayMs}`;
        let killed: Promise<void> | undefined;
        const before = (await versionsNow()).length;
        const uploadId = crypto.randomUUID();
        async function* slow(): AsyncGenerator<MessageInitShape<typeof UploadModelVersionRequestSchema>> {
          yield { part: { case: "header", value: { uploadId, modelName: model, offset: 0n } } };
          for (let i = 0; i < bytes.length; i += 8) {
            yield { part: { case: "chunk", value: bytes.subarray(i, Math.min(bytes.length, i + 8)) } };
            if (i + 8 >= point.afterByte && i < point.afterByte && point.afterByte < bytes.length) killed = proc.kill();
            await sleep(25);
          }
          yield { part: { case: "trailer", value: { sha256: digest, sizeBytes: BigInt(bytes.length) } } };
          if (point.afterByte >= bytes.length) killed = sleep(point.delayMs).then(() => proc.kill());
        }
        const call = client.uploadModelVersion(slow() as AsyncIterable<never>).then(
          (r) => `committed v${r.modelVersion?.version}`,
          (e: unknown) => `failed (${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage.slice(0, 100)})`,
        );
        const clientSaw = await call;
        await killed;
        assertIntegrity(proc.dataDir, `after kill #${k}`);
        await proc.start();
        client = createServiceClient(RegistryService, proc.grpc);
        const after = await versionsNow();
        const added = after.length - before;
        let outcome = `kill at ${killAfterMs}: client ${clientSaw}; +${added} version`;
        assert.ok(added === 0 || added === 1, `${added} versions appeared`);
        if (clientSaw.startsWith("committed")) assert.equal(added, 1, "an acknowledged upload must survive the kill");
        if (added === 1) {
          const v = after.reduce((a, b) => (a.version > b.version ? a : b));
          const got = await download(client, `${model}@${v.version}`);
          assert.equal(sha256(got.bytes), digest, "a version that exists is whole");
        } else {
          // Absent: resume from what the registry says it holds, and finish the upload.
          const status = await client.getUploadStatus({ uploadId }).catch(() => undefined);
          const offset = Number(status?.receivedBytes ?? 0n);
          const resumed = await upload(client, model, bytes, { uploadId: status ? uploadId : crypto.randomUUID(), offset: status ? offset : 0, chunkBytes: 64 });
          const got = await download(client, `${model}@${resumed.modelVersion!.version}`);
          assert.equal(sha256(got.bytes), digest, "the resumed upload is whole");
          outcome += `; resumed from byte ${offset} of ${bytes.length} -> v${resumed.modelVersion!.version}`;
        }
        outcomes.push(outcome);
      }
      const integrity = assertIntegrity(proc.dataDir, "at the end");
      t.diagnostic(`registry upload kills: ${outcomes.join("; ")}; integrity ${JSON.stringify(integrity)}`);
      console.log(`faults/kill-during-write registry: ${outcomes.join("; ")}; integrity ${JSON.stringify(integrity)}`);
    } finally {
      await proc.kill();
    }
  });
});
