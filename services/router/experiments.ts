// In-process experiment assignment for A/B plans: definitions fetched once from the
// experiments service and kept current by its ExperimentUpdated events, one assigner per
// revision (the experiments library), and exposures buffered and published to experiments
// through NATS (ExposureLogged) off the request path.

import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { ExposureLoggedSchema } from "../../gen/mlmesh/events/v1/experiments_events_pb.js";
import { ExposureSchema, type Assignment, type Experiment, type Exposure } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import type { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import type { Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import { PreconditionError, UnavailableError } from "../../lib/errors.js";
import type { EventBus } from "../../lib/events.js";
import type { Logger } from "../../lib/logger.js";
import { createExperimentAssigner, type ExperimentAssigner } from "../experiments/assign.js";

export const EXPOSURE_SUBJECT = "mlmesh.experiments.exposure_logged";
const MAX_BUFFER = 100_000;

export class ExperimentCache {
  private readonly assigners = new Map<string, { revision: bigint; assign: ExperimentAssigner }>();

  constructor(
    private readonly client: Client<typeof ExperimentService>,
    private readonly logger: Logger,
  ) {}

  /** Load (or reload) a definition; FAILED_PRECONDITION when the experiment does not exist. */
  async load(key: string): Promise<Experiment> {
    try {
      const r = await this.client.getExperiment({ key }, { timeoutMs: 5000 });
      this.update(r.experiment!);
      return r.experiment!;
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.NotFound) throw new PreconditionError(`experiment ${key} does not exist in the experiments service`);
      throw new UnavailableError(`the experiments service could not be reached for ${key}: ${ce.rawMessage}`);
    }
  }

  update(e: Experiment): void {
    const cur = this.assigners.get(e.key);
    if (cur && cur.revision > e.revision) return;
    this.assigners.set(e.key, { revision: e.revision, assign: createExperimentAssigner(e) });
  }

  has(key: string): boolean {
    return this.assigners.has(key);
  }

  assign(key: string, unitId: string, attributes: Readonly<Record<string, Value>> = {}): Assignment | undefined {
    const a = this.assigners.get(key);
    if (!a) {
      // Not loaded yet (a replica that just started): serve the default now, load for later.
      void this.load(key).catch((err: unknown) => this.logger.warn({ err: (err as Error).message, key }, "router: experiment not loadable"));
      return undefined;
    }
    return a.assign(unitId, attributes);
  }
}

/** Exposures collected on the request path and published in batches by a timer. */
export class ExposureBuffer {
  private buffer: Exposure[] = [];
  private timer: NodeJS.Timeout | undefined;
  dropped = 0;

  constructor(
    private readonly bus: EventBus,
    private readonly logger: Logger,
    private readonly flushMs: number,
    private readonly onDrop: (n: number) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref();
  }

  add(a: Assignment, source: string): void {
    if (this.buffer.length >= MAX_BUFFER) {
      this.dropped++;
      this.onDrop(1);
      return;
    }
    this.buffer.push(create(ExposureSchema, { experimentKey: a.experimentKey, unitId: a.unitId, arm: a.arm, time: timestampFromMs(Date.now()), phase: a.phase, source }));
  }

  async flush(): Promise<void> {
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    try {
      await this.bus.publish(EXPOSURE_SUBJECT, ExposureLoggedSchema, create(ExposureLoggedSchema, { exposures: batch }));
    } catch (err) {
      this.onDrop(batch.length);
      this.logger.warn({ err, n: batch.length }, "router: exposures not published");
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
