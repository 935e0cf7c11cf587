// RegistryService handlers: validate, call the domain (store, uploads, artifact files),
// map the result. The one mapping that is not a plain domain error is the promotion
// refusal, which carries a PromotionRejected error detail.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  PromotionRejectedSchema,
  RegisteredModelSchema,
  Stage,
  type RegisteredModel,
} from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import { UploadState, type RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { NotFoundError, ValidationError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { principalOf } from "../../lib/principal.js";
import { ArtifactCorruptError, type ArtifactFiles } from "./artifacts.js";
import { renderModelCard } from "./card.js";
import { DataLossError, OutOfRangeError, PromotionRejectedError } from "./errors.js";
import { validateModelName, validateTags, validateText } from "./names.js";
import { validateRules } from "./policy.js";
import { resolveReference } from "./reference.js";
import { parseModelRef, STAGE_ALIASES, validateAlias } from "./refs.js";
import type { ModelPatch, ModelRecord, RegistryStore, VersionPatch } from "./store.js";
import { validateBinding, type Uploads } from "./upload.js";
import { validateCard, validateLineage } from "./version-spec.js";

/** Download chunk size: well under the 1 MiB the contract allows and any message limit. */
const DOWNLOAD_CHUNK_BYTES = 256 * 1024;

function toProto(m: ModelRecord): RegisteredModel {
  return create(RegisteredModelSchema, {
    name: m.name,
    description: m.description,
    tags: m.tags,
    owner: m.owner,
    latestVersion: BigInt(m.latestVersion),
    aliases: Object.fromEntries(Object.entries(m.aliases).map(([k, v]) => [k, BigInt(v)])),
    createdBy: m.createdBy,
    createTime: timestampFromMs(m.createTime),
    updateTime: timestampFromMs(m.updateTime),
  });
}

const UPDATABLE = new Set(["description", "tags", "owner"]);
const VERSION_UPDATABLE = new Set(["description", "tags", "card", "lineage", "feature_binding"]);

function versionNumber(v: bigint, field: string): number {
  if (v < 1n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ValidationError(field, `must be a version number >= 1, got ${v}`);
  return Number(v);
}

function reasonOf(reason: string): string {
  return validateText(reason, "reason", 4096);
}

/** The failed-promotion status, with the PromotionRejected detail attached. */
function rejected(err: PromotionRejectedError): ConnectError {
  return new ConnectError(err.message, Code.FailedPrecondition, undefined, [
    {
      desc: PromotionRejectedSchema,
      value: {
        modelName: err.modelName,
        version: BigInt(err.version),
        policyRevision: BigInt(err.policyRevision),
        productionVersion: BigInt(err.productionVersion),
        failedRules: [...err.failedRules],
      },
    },
  ]);
}

export interface RegistryDeps {
  readonly store: RegistryStore;
  readonly files: ArtifactFiles;
  readonly uploads: Uploads;
  readonly logger: Logger;
}

export function createRegistryService(deps: RegistryDeps): Partial<ServiceImpl<typeof RegistryService>> {
  const { store, files, uploads, logger } = deps;

  /** Removes content files after the commit that unreferenced them (under the content lock). */
  const removeArtifacts = async (sha256s: readonly string[]) => {
    for (const sha of sha256s) {
      await uploads.contentLock.run(sha, async () => {
        if (store.artifactReferences(sha) === 0) await files.remove(sha);
      });
    }
  };

  const promote = (input: Parameters<RegistryStore["promote"]>[0]) => {
    try {
      return store.promote(input);
    } catch (err) {
      if (err instanceof PromotionRejectedError) throw rejected(err);
      throw err;
    }
  };

  return {
    createModel(req, ctx) {
      const model = store.createModel({
        name: validateModelName(req.name),
        description: validateText(req.description, "description", 64 * 1024),
        tags: validateTags(req.tags),
        owner: validateText(req.owner, "owner", 256),
        principal: principalOf(ctx),
        reason: reasonOf(req.reason),
      });
      return { registeredModel: toProto(model) };
    },

    getModel(req) {
      return { registeredModel: toProto(store.getModel(validateModelName(req.name))) };
    },

    listModels(req) {
      if (req.namePrefix && !/^[A-Za-z0-9_-]*$/.test(req.namePrefix)) {
        throw new ValidationError("name_prefix", "may only contain letters, digits, '_' and '-'");
      }
      const { models, nextPageToken } = store.listModels({ namePrefix: req.namePrefix, owner: req.owner, pageSize: req.pageSize, pageToken: req.pageToken });
      return { registeredModels: models.map(toProto), nextPageToken };
    },

    updateModel(req, ctx) {
      const m = req.registeredModel;
      if (!m) throw new ValidationError("registered_model", "is required");
      const name = validateModelName(m.name, "registered_model.name");
      const paths = req.updateMask?.paths.length ? req.updateMask.paths : [...UPDATABLE];
      const patch: { -readonly [K in keyof ModelPatch]: ModelPatch[K] } = {};
      for (const p of paths) {
        if (!UPDATABLE.has(p)) throw new ValidationError("update_mask", `path ${JSON.stringify(p)} cannot be updated; allowed: description, tags, owner`);
        if (p === "description") patch.description = validateText(m.description, "registered_model.description", 64 * 1024);
        if (p === "tags") patch.tags = validateTags(m.tags, "registered_model.tags");
        if (p === "owner") patch.owner = validateText(m.owner, "registered_model.owner", 256);
      }
      return { registeredModel: toProto(store.updateModel(name, patch, principalOf(ctx), reasonOf(req.reason))) };
    },

    async deleteModel(req, ctx) {
      if (req.force && !req.reason.trim()) throw new ValidationError("reason", "is required with force");
      const { deletedVersions, unreferencedSha256s } = store.deleteModel(validateModelName(req.name), req.force, principalOf(ctx), reasonOf(req.reason));
      await removeArtifacts(unreferencedSha256s);
      return { deletedVersionCount: BigInt(deletedVersions), deletedArtifactSha256s: unreferencedSha256s };
    },

    async uploadModelVersion(reqs, ctx) {
      const parts = (async function* () {
        for await (const r of reqs) yield r.part;
      })();
      const r = await uploads.receive(parts, principalOf(ctx), ctx.signal);
      return { modelVersion: r.version, artifactDeduplicated: r.deduplicated, modelCreated: r.modelCreated };
    },

    async getUploadStatus(req, ctx) {
      const u = store.getUpload(req.uploadId);
      if (!u || u.principal !== principalOf(ctx)) throw new NotFoundError("upload", req.uploadId, "unknown, aborted or expired");
      const receiving = u.state === UploadState.RECEIVING;
      return {
        uploadId: u.uploadId,
        modelName: u.modelName,
        state: u.state,
        receivedBytes: BigInt(receiving ? await files.partSize(u.uploadId) : u.receivedBytes),
        expectedSizeBytes: BigInt(u.expectedSizeBytes),
        streamOpen: uploads.isOpen(u.uploadId),
        expireTime: timestampFromMs(u.expireTime),
        version: BigInt(u.version),
        errorMessage: u.errorMessage,
      };
    },

    async abortUpload(req, ctx) {
      const bytes = await uploads.abort(req.uploadId, principalOf(ctx), reasonOf(req.reason));
      return { discardedBytes: BigInt(bytes) };
    },

    getModelVersion(req) {
      return { modelVersion: store.resolve(parseModelRef(req.modelRef)) };
    },

    listModelVersions(req) {
      const { versions, nextPageToken } = store.listVersions({
        modelName: validateModelName(req.modelName, "model_name"),
        pageSize: req.pageSize,
        pageToken: req.pageToken,
        stage: req.stage,
      });
      return { modelVersions: versions, nextPageToken };
    },

    updateModelVersion(req, ctx) {
      const mv = req.modelVersion;
      if (!mv) throw new ValidationError("model_version", "is required");
      const name = validateModelName(mv.modelName, "model_version.model_name");
      const version = versionNumber(mv.version, "model_version.version");
      const paths = req.updateMask?.paths ?? [];
      if (!paths.length) throw new ValidationError("update_mask", "name the paths to replace (description, tags, card, lineage, feature_binding); an empty mask is refused so lineage is never wiped by accident");
      const patch: { -readonly [K in keyof VersionPatch]: VersionPatch[K] } = {};
      for (const p of paths) {
        if (!VERSION_UPDATABLE.has(p)) throw new ValidationError("update_mask", `path ${JSON.stringify(p)} cannot be updated; allowed: ${[...VERSION_UPDATABLE].join(", ")} (artifact and signature never change)`);
        if (p === "description") patch.description = validateText(mv.description, "model_version.description", 64 * 1024);
        if (p === "tags") patch.tags = validateTags(mv.tags, "model_version.tags");
        if (p === "card") patch.card = validateCard(mv.card, "model_version.card");
        if (p === "lineage") patch.lineage = validateLineage(mv.lineage, "model_version.lineage");
        if (p === "feature_binding") {
          const current = store.getVersion(name, version);
          validateBinding(mv.featureBinding, current.signature ?? { inputs: [] }, "model_version.feature_binding");
          patch.featureBinding = mv.featureBinding;
        }
      }
      // A path in the mask with the field unset clears it (replaced whole by an empty value).
      if (paths.includes("card") && !patch.card) patch.card = mv.card ?? ({ $typeName: "mlmesh.registry.v1.ModelCard", intendedUse: "", trainingData: "", evaluation: "", limitations: "", ethicalConsiderations: "", additionalSections: [] } as const);
      if (paths.includes("lineage") && !patch.lineage) patch.lineage = { $typeName: "mlmesh.registry.v1.Lineage", params: {}, metrics: {}, datasets: [], codeVersion: "", codeRepository: "", creator: "" };
      if (paths.includes("feature_binding") && !patch.featureBinding) patch.featureBinding = { $typeName: "mlmesh.registry.v1.FeatureBinding", inputs: [], entityKeys: [] };
      return { modelVersion: store.updateVersion(name, version, patch, principalOf(ctx), reasonOf(req.reason)) };
    },

    async deleteModelVersion(req, ctx) {
      if (req.force && !req.reason.trim()) throw new ValidationError("reason", "is required with force");
      const name = validateModelName(req.modelName, "model_name");
      const r = store.deleteVersion(name, versionNumber(req.version, "version"), req.force, principalOf(ctx), reasonOf(req.reason));
      if (r.artifactDeleted) await removeArtifacts([r.sha256]);
      return { artifactDeleted: r.artifactDeleted, releasedAliases: r.releasedAliases };
    },

    async *downloadArtifact(req) {
      const v = store.resolve(parseModelRef(req.modelRef));
      const size = v.artifact!.sizeBytes;
      if (req.offset < 0n || req.offset > size) throw new OutOfRangeError(`offset: ${req.offset} is past the end of the ${size}-byte artifact`);
      yield { part: { case: "header", value: { modelName: v.modelName, version: v.version, sha256: v.artifact!.sha256, sizeBytes: size, offset: req.offset } } };
      try {
        for await (const chunk of files.readVerified(v.artifact!.sha256, Number(req.offset), DOWNLOAD_CHUNK_BYTES)) {
          yield { part: { case: "chunk", value: chunk } };
        }
      } catch (err) {
        if (err instanceof ArtifactCorruptError) {
          logger.error({ sha256: err.sha256, actual: err.actual, model: v.modelName, version: Number(v.version) }, "artifact failed verification on read");
          throw new DataLossError(`artifact of ${v.modelName}@${v.version} failed verification (sha256 on disk ${err.actual}, expected ${err.sha256}); discard what was received`);
        }
        if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new DataLossError(`artifact file of ${v.modelName}@${v.version} (${v.artifact!.sha256}) is missing from the data dir`);
        throw err;
      }
    },

    resolveModelRef(req) {
      const v = store.resolve(parseModelRef(req.modelRef));
      return {
        modelName: v.modelName,
        version: v.version,
        artifactSha256: v.artifact?.sha256 ?? "",
        artifactSizeBytes: v.artifact?.sizeBytes ?? 0n,
        signature: v.signature,
        featureBinding: v.featureBinding,
        stage: v.stage,
        aliases: v.aliases,
      };
    },

    transitionStage(req, ctx) {
      const name = validateModelName(req.modelName, "model_name");
      if (req.stage === Stage.PRODUCTION) throw new ValidationError("stage", "Production is entered only through PromoteModelVersion (the promotion policy applies)");
      if (![Stage.NONE, Stage.STAGING, Stage.ARCHIVED].includes(req.stage)) throw new ValidationError("stage", "must be STAGE_NONE, STAGE_STAGING or STAGE_ARCHIVED");
      if (![Stage.UNSPECIFIED, Stage.NONE, Stage.ARCHIVED].includes(req.displacedStage)) throw new ValidationError("displaced_stage", "must be STAGE_NONE or STAGE_ARCHIVED");
      const r = store.transitionStage({
        name,
        version: versionNumber(req.version, "version"),
        stage: req.stage,
        expectedStage: req.expectedStage,
        displacedStage: req.displacedStage,
        principal: principalOf(ctx),
        reason: reasonOf(req.reason),
      });
      return { modelVersion: r.version, displacedVersion: BigInt(r.displacedVersion) };
    },

    promoteModelVersion(req, ctx) {
      const name = validateModelName(req.modelName, "model_name");
      if (req.override && !req.reason.trim()) throw new ValidationError("reason", "is required with override (it is audited with the rules it overrode)");
      if (![Stage.UNSPECIFIED, Stage.NONE, Stage.STAGING, Stage.ARCHIVED].includes(req.displacedStage)) throw new ValidationError("displaced_stage", "must be STAGE_NONE, STAGE_STAGING or STAGE_ARCHIVED");
      const r = promote({
        name,
        version: versionNumber(req.version, "version"),
        override: req.override,
        reason: reasonOf(req.reason),
        expectedProductionVersion: req.expectedProductionVersion === undefined ? undefined : Number(req.expectedProductionVersion),
        displacedStage: req.displacedStage,
        principal: principalOf(ctx),
      });
      return { modelVersion: r.version, displacedVersion: BigInt(r.displacedVersion), ruleResults: r.results, overridden: r.overridden, policyRevision: BigInt(r.policyRevision) };
    },

    checkPromotion(req) {
      const r = store.checkPromotion(validateModelName(req.modelName, "model_name"), versionNumber(req.version, "version"));
      return { passed: r.results.every((x) => x.passed), ruleResults: r.results, policyRevision: BigInt(r.policyRevision), productionVersion: BigInt(r.productionVersion) };
    },

    setAlias(req, ctx) {
      const name = validateModelName(req.modelName, "model_name");
      const alias = validateAlias(req.alias);
      const version = versionNumber(req.version, "version");
      const expected = req.expectedVersion === undefined ? undefined : Number(req.expectedVersion);
      const principal = principalOf(ctx);
      const reason = reasonOf(req.reason);
      if (alias === "production") {
        const wasProduction = store.getVersion(name, version).stage === Stage.PRODUCTION;
        const r = promote({ name, version, override: false, reason, expectedProductionVersion: expected, displacedStage: Stage.UNSPECIFIED, principal });
        return { modelVersion: r.version, previousVersion: BigInt(wasProduction ? version : r.displacedVersion) };
      }
      if (alias === "staging") {
        const before = store.resolve({ name, target: { kind: "version", version } });
        if (expected !== undefined) {
          let holder = 0;
          try {
            holder = Number(store.resolve({ name, target: { kind: "alias", alias: "staging" } }).version);
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
          }
          if (holder !== expected) throw new ConnectError(`alias staging of ${name} is held by ${holder ? `v${holder}` : "no version"}, not ${expected ? `v${expected}` : "unassigned"}; re-read and retry`, Code.Aborted);
        }
        const r = store.transitionStage({ name, version, stage: Stage.STAGING, expectedStage: Stage.UNSPECIFIED, displacedStage: Stage.UNSPECIFIED, principal, reason });
        return { modelVersion: r.version, previousVersion: BigInt(before.stage === Stage.STAGING ? version : r.displacedVersion) };
      }
      const r = store.setAlias({ name, alias, version, expectedVersion: expected, principal, reason });
      return { modelVersion: r.version, previousVersion: BigInt(r.previousVersion) };
    },

    deleteAlias(req, ctx) {
      const name = validateModelName(req.modelName, "model_name");
      if (STAGE_ALIASES.has(req.alias)) {
        throw new ConnectError(`${req.alias} is managed by the stage; take the version out of ${req.alias === "production" ? "Production" : "Staging"} with TransitionStage instead`, Code.FailedPrecondition);
      }
      const alias = validateAlias(req.alias);
      const r = store.deleteAlias({ name, alias, expectedVersion: req.expectedVersion === undefined ? undefined : Number(req.expectedVersion), principal: principalOf(ctx), reason: reasonOf(req.reason) });
      return { previousVersion: BigInt(r.previousVersion) };
    },

    getPromotionPolicy(req) {
      return { policy: store.getPolicy(validateModelName(req.modelName, "model_name")) };
    },

    setPromotionPolicy(req, ctx) {
      const p = req.policy;
      if (!p) throw new ValidationError("policy", "is required");
      const name = validateModelName(p.modelName, "policy.model_name");
      const rules = validateRules(p.rules);
      const policy = store.setPolicy({ name, rules, expectedRevision: req.expectedRevision === undefined ? undefined : Number(req.expectedRevision), principal: principalOf(ctx), reason: reasonOf(req.reason) });
      return { policy };
    },

    getModelCard(req) {
      const v = store.resolve(parseModelRef(req.modelRef));
      return { modelName: v.modelName, version: v.version, card: v.card, markdown: renderModelCard(v) };
    },

    getReferenceDistributions(req) {
      const v = store.resolve(parseModelRef(req.modelRef));
      const ref = store.getReference(v.modelName, Number(v.version));
      if (!ref) throw new NotFoundError("reference distributions of", `${v.modelName}@${v.version}`, "none were captured; set them with SetReferenceDistributions");
      return { modelName: v.modelName, version: v.version, referenceDistributions: ref };
    },

    async setReferenceDistributions(req, ctx) {
      const name = validateModelName(req.modelName, "model_name");
      const version = versionNumber(req.version, "version");
      if (!req.reference) throw new ValidationError("reference", "is required");
      const v = store.getVersion(name, version);
      const reference = await resolveReference(req.reference, v.signature!, v.featureBinding, files.artifactPath(v.artifact!.sha256), "reference");
      return { referenceDistributions: store.setReference({ name, version, reference, principal: principalOf(ctx), reason: reasonOf(req.reason) }) };
    },

    listAuditRecords(req) {
      if (req.modelName) validateModelName(req.modelName, "model_name");
      const { records, nextPageToken } = store.listAudit({
        scope: req.modelName || undefined,
        action: req.action || undefined,
        startTime: req.startTime,
        endTime: req.endTime,
        newestFirst: req.newestFirst,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { auditRecords: records, nextPageToken };
    },
  };
}
