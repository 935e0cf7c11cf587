// grpc.health.v1.Health (Check and Watch) over a status table the server owns. The empty
// service name is the server as a whole; each mlmesh service registers its full name.

import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

export class HealthState {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Set<() => void>();
  private closed = false;

  set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const wake of this.watchers) wake();
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Every registered service to NOT_SERVING: the first step of a graceful shutdown. */
  setAllNotServing(): void {
    for (const name of this.statuses.keys()) this.set(name, ServingStatus.NOT_SERVING);
  }

  /**
   * Ends every Watch stream after it has sent the current (NOT_SERVING) status, so open
   * watches do not hold a graceful drain until its deadline.
   */
  close(): void {
    this.closed = true;
    for (const wake of this.watchers) wake();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Resolves on the next change, when the table closes, or when `signal` aborts. */
  nextChange(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || signal.aborted) return resolve();
      const wake = () => {
        this.watchers.delete(wake);
        signal.removeEventListener("abort", wake);
        resolve();
      };
      this.watchers.add(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }
}

export function createHealthService(state: HealthState): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const status = state.get(req.service);
      if (status === undefined) {
        throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      }
      return { status };
    },
    async *watch(req, ctx: HandlerContext) {
      // Per the health protocol an unknown service is not an error for Watch: it reports
      // SERVICE_UNKNOWN and keeps watching, in case the service registers later.
      let last: ServingStatus | undefined;
      while (!ctx.signal.aborted) {
        const status = state.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield { status };
        }
        if (state.isClosed) return;
        await state.nextChange(ctx.signal);
      }
    },
  };
}
