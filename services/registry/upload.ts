// Receiving an upload: header, chunks, trailer. Bytes go to a partial file under the data
// dir while being hashed (never held whole in memory); the trailer's size and sha256 are
// checked, the file is inspected with onnxruntime, the metadata validated against the
// signature, then the artifact is moved into the content store and the version committed.
// A stream cut before its trailer keeps its bytes under the upload id so it can resume.

import type { Hash } from "node:crypto";
import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import { ArtifactSchema, ElementType, type FeatureBinding, type ModelVersion } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { UploadState, type UploadHeader, type UploadTrailer } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { ConflictError, NotFoundError, PreconditionError, ResourceExhaustedError, ValidationError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import type { ArtifactFiles } from "./artifacts.js";
import { AbortedError } from "./errors.js";
import { validateModelName } from "./names.js";
import { inspectOnnxFile } from "./onnx-model.js";
import { resolveReference } from "./reference.js";
import type { RegistryStore } from "./store.js";
import { validateSpec, type ValidSpec } from "./version-spec.js";

export type UploadPart = { readonly case: "header"; readonly value: UploadHeader } | { readonly case: "chunk"; readonly value: Uint8Array } | { readonly case: "trailer"; readonly value: UploadTrailer } | { readonly case: undefined };

export const UPLOAD_ID = /^[A-Za-z0-9_-]{8,128}$/;

export interface UploadLimits {
  /** Largest artifact accepted. */
  readonly maxArtifactBytes: number;
  /** How long a partial upload's bytes are kept without progress. */
  readonly partialTtlMs: number;
}

export const DEFAULT_UPLOAD_LIMITS: UploadLimits = { maxArtifactBytes: 4 * 1024 ** 3, partialTtlMs: 24 * 3600 * 1000 };

export interface UploadResult {
  readonly version: ModelVersion;
  readonly deduplicated: boolean;
  readonly modelCreated: boolean;
}

/** Serializes work on one artifact digest (adopt+commit against delete+unlink). */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export class Uploads {
  /** Upload ids a stream is writing right now (one stream per upload). */
  private readonly open = new Set<string>();

  constructor(
    private readonly store: RegistryStore,
    private readonly files: ArtifactFiles,
    readonly contentLock: KeyedLock,
    private readonly logger: Logger,
    private readonly limits: UploadLimits = DEFAULT_UPLOAD_LIMITS,
    private readonly clock: () => number = Date.now,
  ) {}

  isOpen(uploadId: string): boolean {
    return this.open.has(uploadId);
  }

  async receive(parts: AsyncIterable<UploadPart>, principal: string, signal: AbortSignal): Promise<UploadResult> {
    const it = parts[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done || first.value.case !== "header") throw new ValidationError("header", "the first message of an upload must be the header");
    const header = first.value.value;
    if (!UPLOAD_ID.test(header.uploadId)) throw new ValidationError("header.upload_id", "must match ^[A-Za-z0-9_-]{8,128}$ (a UUID is best)");
    const modelName = validateModelName(header.modelName, "header.model_name");
    const spec = validateSpec(header.spec, "header.spec");
    if (header.offset < 0n) throw new ValidationError("header.offset", "must be >= 0");
    if (header.expectedSizeBytes < 0n) throw new ValidationError("header.expected_size_bytes", "must be >= 0");
    if (header.expectedSizeBytes > BigInt(this.limits.maxArtifactBytes)) {
      throw new ResourceExhaustedError(`header.expected_size_bytes: ${header.expectedSizeBytes} bytes exceeds the registry's limit of ${this.limits.maxArtifactBytes} bytes`);
    }
    if (!header.createModelIfMissing) this.store.getModel(modelName);
    if (this.open.has(header.uploadId)) throw new AbortedError(`another stream is writing upload ${header.uploadId}; wait for it or ask GetUploadStatus`);
    this.open.add(header.uploadId);
    try {
      return await this.receiveOpen(it, header, modelName, spec, principal, signal);
    } finally {
      this.open.delete(header.uploadId);
    }
  }

  private async receiveOpen(it: AsyncIterator<UploadPart>, header: UploadHeader, modelName: string, spec: ValidSpec, principal: string, signal: AbortSignal): Promise<UploadResult> {
    const id = header.uploadId;
    const offset = Number(header.offset);
    const existing = this.store.getUpload(id);
    if (existing && existing.principal !== principal) throw new NotFoundError("upload", id);
    if (existing?.state === UploadState.COMPLETED) throw new ConflictError(`upload ${id} already completed as ${existing.modelName}@${existing.version}`);
    if (existing?.state === UploadState.FAILED) throw new PreconditionError(`upload ${id} failed (${existing.errorMessage}); start a new upload with a new upload_id`);
    if (existing && existing.modelName !== modelName) throw new ValidationError("header.model_name", `upload ${id} is for model ${existing.modelName}`);
    let received = existing ? await this.files.partSize(id) : 0;
    if (offset !== received) {
      throw new PreconditionError(existing ? `header.offset ${offset} differs from the ${received} bytes received for upload ${id}; resume at offset ${received}` : `upload ${id} is unknown; a new upload starts at offset 0`);
    }
    const expireTime = () => this.clock() + this.limits.partialTtlMs;
    if (!existing) this.store.beginUpload({ uploadId: id, principal, modelName, expectedSizeBytes: Number(header.expectedSizeBytes), expireTime: expireTime() });
    const part = this.files.partPath(id);
    const hash: Hash = offset > 0 ? await this.files.hashPrefix(part, offset) : createHash("sha256");
    let fh: FileHandle | undefined = await open(part, offset > 0 ? "r+" : "w");
    let trailer: UploadTrailer | undefined;
    const max = header.expectedSizeBytes > 0n ? Math.min(Number(header.expectedSizeBytes), this.limits.maxArtifactBytes) : this.limits.maxArtifactBytes;
    const closePart = async () => {
      if (!fh) return;
      const h = fh;
      fh = undefined;
      await h.sync().catch(() => undefined);
      await h.close();
    };
    try {
      for (;;) {
        if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error("upload cancelled");
        const next = await it.next();
        if (next.done) break;
        const p = next.value;
        if (trailer) throw new ValidationError("trailer", "must be the last message of the stream");
        if (p.case === "chunk") {
          if (received + p.value.length > max) {
            throw new ResourceExhaustedError(`chunk: the upload grew past ${max} bytes (${header.expectedSizeBytes > 0n ? "the expected_size_bytes in the header" : "the registry's limit"})`);
          }
          await fh.write(p.value, 0, p.value.length, received);
          hash.update(p.value);
          received += p.value.length;
        } else if (p.case === "trailer") {
          trailer = p.value;
        } else {
          throw new ValidationError(p.case === "header" ? "header" : "part", p.case === "header" ? "only the first message may be a header" : "each message must set header, chunk or trailer");
        }
      }
    } catch (err) {
      // A cut or refused stream: keep the bytes (fsynced) for a resume, unless the stream
      // itself was invalid in a way a resume cannot fix.
      await closePart();
      if (err instanceof ResourceExhaustedError || (err instanceof ValidationError && err.field !== "trailer")) {
        await this.fail(id, err.message);
      } else {
        this.store.touchUpload(id, await this.files.partSize(id), Number(header.expectedSizeBytes), expireTime());
      }
      throw err;
    }
    await closePart();
    if (!trailer) {
      this.store.touchUpload(id, received, Number(header.expectedSizeBytes), expireTime());
      throw new ValidationError("trailer", `the stream ended without a trailer; ${received} bytes are kept under upload_id ${id}: resume at offset ${received}, or AbortUpload`);
    }
    const digest = hash.digest("hex");
    try {
      if (BigInt(received) !== trailer.sizeBytes) {
        throw new ValidationError("trailer.size_bytes", `says ${trailer.sizeBytes} bytes but ${received} were received; the upload is discarded`);
      }
      if (trailer.sha256.toLowerCase() !== digest) {
        throw new ValidationError("trailer.sha256", `the ${received} bytes received hash to ${digest}, not ${trailer.sha256}; the upload is discarded`);
      }
      if (received === 0) throw new ValidationError("chunk", "the upload is empty");
      const inspected = await inspectOnnxFile(part, "chunk");
      validateBinding(spec.featureBinding, inspected.signature, "header.spec.feature_binding");
      const reference = spec.reference ? await resolveReference(spec.reference, inspected.signature, spec.featureBinding, part, "header.spec.reference") : undefined;
      const artifact = create(ArtifactSchema, { ...inspected.artifact, sha256: digest, sizeBytes: BigInt(received) });
      return await this.contentLock.run(digest, async () => {
        const { deduplicated } = await this.files.adopt(part, digest);
        try {
          const { version, modelCreated } = this.store.createVersion({
            modelName,
            createModelIfMissing: header.createModelIfMissing,
            description: spec.description,
            tags: spec.tags,
            artifact,
            signature: inspected.signature,
            featureBinding: spec.featureBinding,
            lineage: spec.lineage,
            card: spec.card,
            reference,
            uploadId: id,
            principal,
            reason: header.reason,
          });
          return { version, deduplicated, modelCreated };
        } catch (err) {
          // The commit failed: the content must not outlive it unless another version uses it.
          if (!deduplicated && this.store.artifactReferences(digest) === 0) await this.files.remove(digest);
          throw err;
        }
      });
    } catch (err) {
      await this.fail(id, err instanceof Error ? err.message : String(err));
      throw err;
    }
  }

  private async fail(id: string, message: string): Promise<void> {
    await this.files.removePart(id);
    this.store.failUpload(id, message);
  }

  /** Discards an upload's bytes now. */
  async abort(uploadId: string, principal: string, reason: string): Promise<number> {
    const u = this.store.getUpload(uploadId);
    if (!u || u.principal !== principal) throw new NotFoundError("upload", uploadId, "it may have expired or been aborted");
    if (u.state === UploadState.COMPLETED) throw new PreconditionError(`upload ${uploadId} already completed as ${u.modelName}@${u.version}; delete that version instead`);
    if (this.open.has(uploadId)) throw new AbortedError(`a stream is writing upload ${uploadId}; cancel it first`);
    const bytes = await this.files.partSize(uploadId);
    await this.files.removePart(uploadId);
    this.store.abortUpload(u, principal, reason);
    return bytes;
  }

  /** Drops expired uploads and partial files with no record (left by a crash). */
  async sweep(): Promise<void> {
    for (const u of this.store.expiredUploads(this.clock())) {
      if (this.open.has(u.uploadId)) continue;
      await this.files.removePart(u.uploadId);
      this.store.forgetUpload(u.uploadId);
    }
    for (const id of await this.files.partIds()) {
      const u = this.store.getUpload(id);
      if (!this.open.has(id) && (!u || u.state !== UploadState.RECEIVING)) await this.files.removePart(id);
    }
  }
}

/**
 * A feature binding must bind every graph input exactly once, to features `view:feature`,
 * and as many features as an input's fixed last dimension.
 */
export function validateBinding(binding: FeatureBinding | undefined, signature: { inputs: ReadonlyArray<{ name: string; elementType: ElementType; shape?: { dims: ReadonlyArray<{ value: { case: string | undefined; value?: unknown } }> } }> }, field: string): void {
  if (!binding || binding.inputs.length === 0) return;
  const seen = new Set<string>();
  binding.inputs.forEach((b, i) => {
    const spec = signature.inputs.find((s) => s.name === b.inputName);
    if (!spec) throw new ValidationError(`${field}.inputs[${i}].input_name`, `${JSON.stringify(b.inputName)} is not a graph input; the inputs are ${signature.inputs.map((s) => s.name).join(", ")}`);
    if (seen.has(b.inputName)) throw new ValidationError(`${field}.inputs[${i}].input_name`, `${JSON.stringify(b.inputName)} is bound twice`);
    seen.add(b.inputName);
    if (b.features.length === 0) throw new ValidationError(`${field}.inputs[${i}].features`, "bind at least one feature");
    b.features.forEach((f, j) => {
      if (!/^[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+$/.test(f)) throw new ValidationError(`${field}.inputs[${i}].features[${j}]`, `${JSON.stringify(f)} is not a feature ref view:feature`);
    });
    const dims = spec.shape?.dims ?? [];
    const last = dims[dims.length - 1];
    if (dims.length >= 2 && last?.value.case === "size" && Number(last.value.value) !== b.features.length) {
      throw new ValidationError(`${field}.inputs[${i}].features`, `input ${b.inputName} has ${String(last.value.value)} columns but ${b.features.length} features are bound`);
    }
  });
  const unbound = signature.inputs.filter((s) => !seen.has(s.name)).map((s) => s.name);
  if (unbound.length) throw new ValidationError(`${field}.inputs`, `graph input(s) ${unbound.join(", ")} are not bound; bind every input`);
  binding.entityKeys.forEach((k, i) => {
    if (!/^[A-Za-z0-9_]{1,64}$/.test(k)) throw new ValidationError(`${field}.entity_keys[${i}]`, `${JSON.stringify(k)} is not an entity key name`);
  });
}

