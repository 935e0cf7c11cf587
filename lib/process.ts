// Process lifecycle: the first SIGTERM/SIGINT starts a graceful shutdown and the process
// exits 0 once it completes; a second signal, or a shutdown that hangs past its bound,
// exits non-zero at once so an orchestrator is never left waiting.

import type { Logger } from "./logger.js";

export function exitOnSignals(opts: { logger: Logger; shutdown: () => Promise<void>; hardLimitMs: number }): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      opts.logger.warn({ signal }, "second signal: exiting without waiting");
      process.exit(130);
    }
    stopping = true;
    opts.logger.info({ signal }, "shutting down: not ready, draining in-flight calls");
    const hard = setTimeout(() => {
      opts.logger.error("shutdown did not finish in time; exiting");
      process.exit(1);
    }, opts.hardLimitMs);
    hard.unref();
    opts
      .shutdown()
      .then(() => {
        opts.logger.info("shutdown complete");
        opts.logger.flush?.();
        // Let pino's async destination drain before exit.
        setTimeout(() => process.exit(0), 20);
      })
      .catch((err) => {
        opts.logger.error({ err }, "shutdown failed");
        setTimeout(() => process.exit(1), 20);
      });
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
