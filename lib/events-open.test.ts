// Which bus a process gets: NATS when configured (and an error naming the server when it is
// configured but down), the in-process bus, said in the log, when nothing is configured and
// no local server answers.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { freePort } from "../test/support/ports.js";
import { testNats } from "../test/support/nats.js";
import { openEventBus } from "./events.js";
import { createLogger } from "./logger.js";

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: "info",
    destination: { write: (l: string) => (lines.push(JSON.parse(l) as Record<string, unknown>), true) } as unknown as NodeJS.WritableStream,
  });
  return { lines, logger };
}

describe("openEventBus", () => {
  it("falls back to the in-process bus when nothing is configured or reachable, and says so", async () => {
    const { lines, logger } = capture();
    const closed = `nats://127.0.0.1:${await freePort()}`;
    const bus = await openEventBus({ natsUrl: undefined, required: false, clientName: "t", logger, defaultServers: closed });
    assert.equal(bus.kind, "in-process");
    assert.ok(lines.some((l) => l.level === "warn" && /in-process event bus/.test(String(l.msg))));
    await bus.close();
  });

  it("refuses to fall back when NATS is configured but unreachable, naming the server", async () => {
    const { logger } = capture();
    const closed = `nats://127.0.0.1:${await freePort()}`;
    await assert.rejects(
      openEventBus({ natsUrl: closed, required: true, clientName: "t", logger }),
      (e: Error) => e.message.includes(closed) && /MLMESH_NATS_URL/.test(e.message),
    );
  });

  it("uses NATS JetStream when it answers", async () => {
    const nats = await testNats();
    const { lines, logger } = capture();
    const bus = await openEventBus({ natsUrl: nats.url, required: true, clientName: "t", logger });
    assert.equal(bus.kind, "nats");
    assert.ok(lines.some((l) => /using NATS JetStream/.test(String(l.msg))));
    await bus.close();
    await nats.stop();
  });
});
