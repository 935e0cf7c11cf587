// THE table of who may call what: every RPC of every service, by full method name, with the
// role it needs. The observer (lib/rpc-observe.ts) enforces it for gRPC and Connect alike;
// lib/auth/method-roles.test.ts walks every method in gen/ and fails if one is missing here.
// A method absent from the table (a new RPC nobody classified) needs admin: fail closed.
//
// Reads are "viewer" (every role includes viewer). Health and OIP liveness/readiness are
// public, because kubelets and load balancers probe them without credentials.

import type { Requirement } from "./roles.js";

const R = "mlmesh.registry.v1.RegistryService";
const F = "mlmesh.features.v1.FeatureService";
const I = "mlmesh.inference.v1.InferenceService";
const X = "mlmesh.router.v1.RouterService";
const E = "mlmesh.experiments.v1.ExperimentService";
const O = "inference.GRPCInferenceService";
const H = "grpc.health.v1.Health";

export const METHOD_ROLES: Readonly<Record<string, Requirement>> = Object.freeze({
  // Registry: pushing and promoting models is deployment; deleting and gate policy are admin.
  [`${R}/CreateModel`]: "deployer",
  [`${R}/GetModel`]: "viewer",
  [`${R}/ListModels`]: "viewer",
  [`${R}/UpdateModel`]: "deployer",
  [`${R}/DeleteModel`]: "admin",
  [`${R}/UploadModelVersion`]: "deployer",
  [`${R}/GetUploadStatus`]: "deployer",
  [`${R}/AbortUpload`]: "deployer",
  [`${R}/GetModelVersion`]: "viewer",
  [`${R}/ListModelVersions`]: "viewer",
  [`${R}/UpdateModelVersion`]: "deployer",
  [`${R}/DeleteModelVersion`]: "admin",
  [`${R}/DownloadArtifact`]: "viewer",
  [`${R}/ResolveModelRef`]: "viewer",
  [`${R}/TransitionStage`]: "deployer",
  [`${R}/PromoteModelVersion`]: "deployer",
  [`${R}/CheckPromotion`]: "viewer",
  [`${R}/SetAlias`]: "deployer",
  [`${R}/DeleteAlias`]: "deployer",
  [`${R}/GetPromotionPolicy`]: "viewer",
  // The policy is what stops a deployer promoting a bad model: a deployer must not relax it.
  [`${R}/SetPromotionPolicy`]: "admin",
  [`${R}/GetModelCard`]: "viewer",
  [`${R}/GetReferenceDistributions`]: "viewer",
  [`${R}/SetReferenceDistributions`]: "deployer",
  [`${R}/ListAuditRecords`]: "viewer",

  // Features: definitions and values both belong to the feature team.
  [`${F}/ApplyFeatureViews`]: "feature-writer",
  [`${F}/GetFeatureView`]: "viewer",
  [`${F}/ListFeatureViews`]: "viewer",
  [`${F}/DeleteFeatureView`]: "feature-writer",
  [`${F}/ListTransforms`]: "viewer",
  [`${F}/ApplyFeatureSets`]: "feature-writer",
  [`${F}/GetFeatureSet`]: "viewer",
  [`${F}/ListFeatureSets`]: "viewer",
  [`${F}/DeleteFeatureSet`]: "feature-writer",
  [`${F}/WriteFeatures`]: "feature-writer",
  [`${F}/IngestFeatures`]: "feature-writer",
  [`${F}/GetOnlineFeatures`]: "viewer",
  [`${F}/GetHistoricalFeatures`]: "viewer",
  [`${F}/Materialize`]: "feature-writer",
  [`${F}/GetMaterializationStatus`]: "viewer",
  [`${F}/GetFreshness`]: "viewer",
  [`${F}/ListAuditRecords`]: "viewer",

  // Inference: scoring (online and batch) and feeding outcomes back are the predictor's;
  // what is loaded and how it is batched or monitored is deployment.
  [`${I}/Score`]: "predictor",
  [`${I}/LoadModel`]: "deployer",
  [`${I}/UnloadModel`]: "deployer",
  [`${I}/ListLoadedModels`]: "viewer",
  [`${I}/GetBatchingConfig`]: "viewer",
  [`${I}/SetBatchingConfig`]: "deployer",
  [`${I}/GetDrift`]: "viewer",
  [`${I}/GetDriftPolicy`]: "viewer",
  [`${I}/SetDriftPolicy`]: "deployer",
  [`${I}/RecordOutcomes`]: "predictor",
  [`${I}/GetQuality`]: "viewer",
  [`${I}/StartBatchJob`]: "predictor",
  [`${I}/GetBatchJob`]: "viewer",
  [`${I}/ListBatchJobs`]: "viewer",
  [`${I}/CancelBatchJob`]: "predictor",

  // Router: predictions are the predictor's; endpoints, plans and rollouts are deployment.
  [`${X}/Predict`]: "predictor",
  [`${X}/Rank`]: "predictor",
  [`${X}/ApplyEndpoint`]: "deployer",
  [`${X}/GetEndpoint`]: "viewer",
  [`${X}/ListEndpoints`]: "viewer",
  [`${X}/DeleteEndpoint`]: "deployer",
  [`${X}/SetServingPlan`]: "deployer",
  [`${X}/GetServingPlan`]: "viewer",
  [`${X}/SwitchBlueGreen`]: "deployer",
  [`${X}/StartRollout`]: "deployer",
  [`${X}/GetRolloutStatus`]: "viewer",
  [`${X}/PauseRollout`]: "deployer",
  [`${X}/ResumeRollout`]: "deployer",
  [`${X}/PromoteRollout`]: "deployer",
  [`${X}/RollbackRollout`]: "deployer",
  [`${X}/ListRollouts`]: "viewer",
  [`${X}/GetShadowStats`]: "viewer",
  [`${X}/ListAuditRecords`]: "viewer",

  // Experiments: defining and starting/stopping is deployment; assignment and the exposure /
  // outcome stream come from the serving path (predictor); reports and power maths are reads.
  [`${E}/CreateExperiment`]: "deployer",
  [`${E}/GetExperiment`]: "viewer",
  [`${E}/ListExperiments`]: "viewer",
  [`${E}/UpdateExperiment`]: "deployer",
  [`${E}/StartExperiment`]: "deployer",
  [`${E}/StopExperiment`]: "deployer",
  [`${E}/ListAuditRecords`]: "viewer",
  [`${E}/Assign`]: "predictor",
  [`${E}/BatchAssign`]: "predictor",
  [`${E}/LogExposures`]: "predictor",
  [`${E}/LogOutcomes`]: "predictor",
  [`${E}/SetCovariates`]: "predictor",
  [`${E}/GetReport`]: "viewer",
  [`${E}/ComputeSampleSize`]: "viewer",
  [`${E}/ComputeMde`]: "viewer",

  // Open Inference Protocol v2: liveness/readiness are probes; the rest as InferenceService.
  [`${O}/ServerLive`]: "public",
  [`${O}/ServerReady`]: "public",
  [`${O}/ServerMetadata`]: "viewer",
  [`${O}/ModelReady`]: "viewer",
  [`${O}/ModelMetadata`]: "viewer",
  [`${O}/ModelInfer`]: "predictor",

  [`${H}/Check`]: "public",
  [`${H}/Watch`]: "public",
});

/** What an undeclared method needs. */
export const UNDECLARED_REQUIREMENT: Requirement = "admin";

/** The requirement of a full method name ("pkg.Service/Method"). */
export function requirementOf(fullMethod: string): Requirement {
  return METHOD_ROLES[fullMethod] ?? UNDECLARED_REQUIREMENT;
}

/**
 * The RPC a plain-HTTP route on the HTTP port stands for (the OIP v2 REST mapping), so REST
 * calls are checked against the same table. Anything else served by an extra route needs
 * admin (fail closed) until it is added here.
 */
export function restRouteMethod(httpMethod: string | undefined, path: string): string {
  if (path === "/v2/health/live") return `${O}/ServerLive`;
  if (path === "/v2/health/ready") return `${O}/ServerReady`;
  if (path === "/v2") return `${O}/ServerMetadata`;
  if (path.startsWith("/v2/models/")) {
    if (httpMethod === "POST" && path.endsWith("/infer")) return `${O}/ModelInfer`;
    if (path.endsWith("/ready")) return `${O}/ModelReady`;
    return `${O}/ModelMetadata`;
  }
  return `(http)${path}`;
}
