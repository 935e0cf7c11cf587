// Server-side batch scoring jobs inside the inference service (issue #10).
// Placeholder: the batch-scoring work replaces this module; main.ts only calls startBatchJobs.

import type { ServiceImpl } from "@connectrpc/connect";
import type { InferenceService } from "../../../gen/mlmesh/inference/v1/inference_service_pb.js";
import type { Logger } from "../../../lib/logger.js";
import type { Registry } from "prom-client";
import type { Runtime } from "../../../lib/runtime.js";
import type { ModelLoader } from "../loader.js";
import type { InferenceEngine } from "../engine.js";

export interface BatchJobsDeps {
  readonly rt: Runtime;
  readonly logger: Logger;
  readonly metricsRegistry: Registry;
  readonly loader: ModelLoader;
  readonly engine: InferenceEngine;
}

export interface BatchJobs {
  /** StartBatchJob, GetBatchJob, ListBatchJobs, CancelBatchJob. */
  readonly handlers: Partial<ServiceImpl<typeof InferenceService>>;
  close(): Promise<void>;
}

export async function startBatchJobs(_deps: BatchJobsDeps): Promise<BatchJobs> {
  return { handlers: {}, close: async () => {} };
}
