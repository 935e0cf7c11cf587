// Live monitoring inside the inference service (issue #8): drift windows fed by the
// prediction log on JetStream, drift policies and alerts, concept drift on delayed labels.
// Placeholder: the monitoring work replaces this module; main.ts only calls startMonitoring.

import type { ServiceImpl } from "@connectrpc/connect";
import type { InferenceService } from "../../../gen/mlmesh/inference/v1/inference_service_pb.js";
import type { Logger } from "../../../lib/logger.js";
import type { Registry } from "prom-client";
import type { Runtime } from "../../../lib/runtime.js";
import type { ModelLoader } from "../loader.js";

export interface MonitoringDeps {
  readonly rt: Runtime;
  readonly logger: Logger;
  readonly metricsRegistry: Registry;
  readonly loader: ModelLoader;
}

export interface Monitoring {
  /** The InferenceService methods monitoring answers (GetDrift, drift policies, outcomes, quality). */
  readonly handlers: Partial<ServiceImpl<typeof InferenceService>>;
  close(): Promise<void>;
}

export async function startMonitoring(_deps: MonitoringDeps): Promise<Monitoring> {
  return { handlers: {}, close: async () => {} };
}
