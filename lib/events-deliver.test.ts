// Where a new durable consumer starts, on a real NATS JetStream and on the in-process bus:
// `last_per_subject` delivers the newest event of each subject its filter matches and then
// everything new (what a new router replica needs of the plan history), and each delivery
// says when it was stored and how many are still pending behind it (stream-scoring lag).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { AliasMovedSchema, type AliasMoved } from "../gen/mlmesh/events/v1/registry_events_pb.js";
import { testNats } from "../test/support/nats.js";
import { InProcessBus, JetStreamBus, type DeliveredEvent, type EventBus } from "./events.js";
import { createLogger } from "./logger.js";

const logger = createLogger({ level: "silent" });
const alias = (model: string, version: number): AliasMoved => create(AliasMovedSchema, { modelName: model, alias: "production", version: BigInt(version) });

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function suite(name: string, makeBus: () => Promise<{ bus: EventBus; cleanup: () => Promise<void> }>) {
  describe(name, () => {
    let bus: EventBus;
    let cleanup: () => Promise<void>;
    const id = `${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
    const stream = `MLMESH_DELIVER_${id}`;
    const prefix = `mlmesh.deliver${id}`;

    before(async () => {
      ({ bus, cleanup } = await makeBus());
      await bus.ensureStream({ name: stream, subjects: [`${prefix}.>`] });
    });
    after(async () => cleanup());

    it("last_per_subject: the newest event per subject, then new ones; storedAtMs and pending set", async () => {
      const t0 = Date.now();
      // a: versions 1..3, b: 1..2, and a subject outside the filter.
      for (const [m, v] of [["a", 1], ["b", 1], ["a", 2], ["a", 3], ["b", 2]] as const) await bus.publish(`${prefix}.plan.${m}`, AliasMovedSchema, alias(m, v));
      await bus.publish(`${prefix}.other.a`, AliasMovedSchema, alias("a", 99));
      const got: Array<DeliveredEvent<AliasMoved>> = [];
      const sub = await bus.subscribe({
        stream,
        durable: "lps",
        filterSubject: `${prefix}.plan.>`,
        schema: AliasMovedSchema,
        deliverFrom: "last_per_subject",
        handler: async (e) => void got.push(e),
      });
      await waitFor(() => got.length >= 2, 10_000, "the last event of each subject");
      await bus.publish(`${prefix}.plan.a`, AliasMovedSchema, alias("a", 4));
      await waitFor(() => got.length >= 3, 10_000, "a new event");
      await new Promise((r) => setTimeout(r, 200));
      await sub.stop();
      assert.deepEqual(
        got.map((e) => `${e.message.modelName}${e.message.version}`),
        ["a3", "b2", "a4"],
      );
      for (const e of got) assert.ok(e.storedAtMs >= t0 - 1000 && e.storedAtMs <= Date.now() && Number.isInteger(e.storedAtMs), `storedAtMs ${e.storedAtMs}`);
      assert.equal(got[0]!.pending, 1, "b2 still pending behind a3");
      assert.equal(got[2]!.pending, 0);
    });

    it("deliverFrom 'all' (the default) replays every matching event", async () => {
      const got: number[] = [];
      const sub = await bus.subscribe({ stream, durable: "all", filterSubject: `${prefix}.plan.a`, schema: AliasMovedSchema, handler: async (e) => void got.push(Number(e.message.version)) });
      await waitFor(() => got.length >= 4, 10_000, "all four");
      await sub.stop();
      assert.deepEqual(got, [1, 2, 3, 4]);
    });
  });
}

suite("JetStreamBus deliver policies (real NATS)", async () => {
  const nats = await testNats();
  const bus = await JetStreamBus.connect({ servers: nats.url, name: "events-deliver-test", logger });
  return {
    bus,
    cleanup: async () => {
      await bus.close();
      await nats.stop();
    },
  };
});

suite("InProcessBus deliver policies", async () => {
  const bus = new InProcessBus(logger);
  return { bus, cleanup: () => bus.close() };
});
