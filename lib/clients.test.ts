// Outgoing calls made while serving a request carry what is left of its deadline, and a
// call whose deadline has already passed fails with DEADLINE_EXCEEDED without being sent.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { RegistryService } from "../gen/mlmesh/registry/v1/registry_service_pb.js";
import { createServiceClient } from "./clients.js";
import { createLogger } from "./logger.js";
import { serviceRegistration, startServer, type RunningServer } from "./server.js";

describe("deadline propagation", () => {
  let front: RunningServer;
  let back: RunningServer;
  const seenTimeouts: number[] = [];
  let backCalls = 0;

  before(async () => {
    const common = {
      host: "127.0.0.1",
      grpcPort: 0,
      httpPort: 0,
      logger: createLogger({ level: "silent" }),
      maxMessageBytes: 1 << 20,
      maxDeadlineMs: 60_000,
      shutdownGraceMs: 500,
    };
    back = await startServer({
      ...common,
      name: "back",
      services: [
        serviceRegistration(RegistryService, {
          getModel(_req, ctx) {
            backCalls++;
            seenTimeouts.push(ctx.timeoutMs() ?? -1);
            return {};
          },
        }),
      ],
    });
    const backClient = createServiceClient(RegistryService, back.grpcUrl);
    front = await startServer({
      ...common,
      name: "front",
      services: [
        serviceRegistration(RegistryService, {
          async getModel(req) {
            // Burn part of the budget first when asked, then call the back service.
            if (req.name === "slow") await new Promise((r) => setTimeout(r, 150));
            await backClient.getModel({ name: req.name });
            return {};
          },
        }),
      ],
    });
  });
  after(async () => {
    await front.shutdown();
    await back.shutdown();
  });

  it("passes the remaining deadline to the next hop", async () => {
    const client = createServiceClient(RegistryService, front.grpcUrl);
    await client.getModel({ name: "fast" }, { timeoutMs: 1000 });
    await client.getModel({ name: "slow" }, { timeoutMs: 1000 });
    assert.equal(seenTimeouts.length, 2);
    assert.ok(seenTimeouts[0]! <= 1000 && seenTimeouts[0]! > 900, `fast hop got ${seenTimeouts[0]}`);
    assert.ok(seenTimeouts[1]! <= 850 && seenTimeouts[1]! > 600, `slow hop got ${seenTimeouts[1]} after 150 ms spent`);
  });

  it("does not send a call whose deadline already passed", async () => {
    const client = createServiceClient(RegistryService, front.grpcUrl);
    const before = backCalls;
    await assert.rejects(client.getModel({ name: "slow" }, { timeoutMs: 100 }), (e: unknown) => ConnectError.from(e).code === Code.DeadlineExceeded);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(backCalls, before, "the back service was never called");
  });
});
