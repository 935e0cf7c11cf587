// RegistryService handlers: validate, call the store, map the result. The model CRUD and
// audit RPCs are served here; versions, artifacts, stages, aliases and promotion land with
// issue #3 and answer UNIMPLEMENTED until then.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { RegisteredModelSchema, type RegisteredModel } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";
import type { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { principalOf } from "../../lib/principal.js";
import { validateModelName, validateTags, validateText } from "./names.js";
import type { ModelPatch, ModelRecord, RegistryStore } from "./store.js";

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

export function createRegistryService(deps: { store: RegistryStore }): Partial<ServiceImpl<typeof RegistryService>> {
  const { store } = deps;
  return {
    createModel(req, ctx) {
      const model = store.createModel({
        name: validateModelName(req.name),
        description: validateText(req.description, "description", 64 * 1024),
        tags: validateTags(req.tags),
        owner: validateText(req.owner, "owner", 256),
        principal: principalOf(ctx),
        reason: validateText(req.reason, "reason", 4096),
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
      const { models, nextPageToken } = store.listModels({
        namePrefix: req.namePrefix,
        owner: req.owner,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
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
      return { registeredModel: toProto(store.updateModel(name, patch, principalOf(ctx), validateText(req.reason, "reason", 4096))) };
    },

    deleteModel(req, ctx) {
      const { deletedVersions } = store.deleteModel(
        validateModelName(req.name),
        req.force,
        principalOf(ctx),
        validateText(req.reason, "reason", 4096),
      );
      return { deletedVersionCount: BigInt(deletedVersions), deletedArtifactSha256s: [] };
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
