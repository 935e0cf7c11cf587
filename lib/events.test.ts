// The event bus against a real NATS JetStream server (and the in-process bus against the
// same expectations): round trip, durable resume without loss or repeats, dedup by msg id,
// and publishes accepted during an outage delivered after NATS comes back.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { AliasMovedSchema, type AliasMoved } from "../gen/mlmesh/events/v1/registry_events_pb.js";
import { startPrivateNats, testNats, type TestNats } from "../test/support/nats.js";
import { InProcessBus, JetStreamBus, type DeliveredEvent, type EventBus } from "./events.js";
import { createLogger } from "./logger.js";

const logger = createLogger({ level: "silent" });

function alias(version: number): AliasMoved {
  return create(AliasMovedSchema, { modelName: "churn", alias: "canary", version: BigInt(version) });
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Consume with `durable` until `count` events arrived, acking all; returns their versions. */
async function consume(bus: EventBus, stream: string, subject: string, durable: string, count: number): Promise<number[]> {
  const got: number[] = [];
  const sub = await bus.subscribe({
    stream,
    durable,
    filterSubject: subject,
    schema: AliasMovedSchema,
    handler: async (e: DeliveredEvent<AliasMoved>) => {
      got.push(Number(e.message.version));
    },
  });
  await waitFor(() => got.length >= count, 10_000, `${count} events on ${durable}`);
  // Give a wrongly redelivered or extra event the chance to show up before we stop.
  await new Promise((r) => setTimeout(r, 200));
  await sub.stop();
  return got;
}

function suite(name: string, makeBus: () => Promise<{ bus: EventBus; cleanup: () => Promise<void> }>) {
  describe(name, () => {
    let bus: EventBus;
    let cleanup: () => Promise<void>;
    const id = `${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
    const stream = `MLMESH_TEST_${id}`;
    const subject = `mlmesh.test${id}.alias_moved`;

    before(async () => {
      ({ bus, cleanup } = await makeBus());
      await bus.ensureStream({ name: stream, subjects: [`mlmesh.test${id}.>`] });
      // ensureStream is idempotent.
      await bus.ensureStream({ name: stream, subjects: [`mlmesh.test${id}.>`] });
    });
    after(async () => cleanup());

    it("round-trips protobuf events in publish order", async () => {
      for (let v = 1; v <= 5; v++) {
        const ack = await bus.publish(subject, AliasMovedSchema, alias(v), { msgId: `${id}-rt-${v}` });
        assert.equal(ack.duplicate, false);
      }
      assert.deepEqual(await consume(bus, stream, subject, "rt", 5), [1, 2, 3, 4, 5]);
    });

    it("drops a re-published msg id (dedup window)", async () => {
      const first = await bus.publish(subject, AliasMovedSchema, alias(6), { msgId: `${id}-dup` });
      const again = await bus.publish(subject, AliasMovedSchema, alias(6), { msgId: `${id}-dup` });
      assert.equal(again.duplicate, true);
      assert.equal(again.seq, first.seq);
    });

    it("resumes a durable consumer after a restart without losing or repeating acknowledged events", async () => {
      const sub2 = `${subject}2`;
      for (let v = 1; v <= 10; v++) await bus.publish(sub2, AliasMovedSchema, alias(v));
      // First run acknowledges the first 10 and stops (the consumer process "restarts").
      assert.deepEqual(await consume(bus, stream, sub2, "resume", 10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      for (let v = 11; v <= 15; v++) await bus.publish(sub2, AliasMovedSchema, alias(v));
      // The restarted consumer gets exactly the five it has not acknowledged.
      assert.deepEqual(await consume(bus, stream, sub2, "resume", 5), [11, 12, 13, 14, 15]);
    });

    it("redelivers an event whose handler failed, then moves on", async () => {
      const sub3 = `${subject}3`;
      await bus.publish(sub3, AliasMovedSchema, alias(1));
      await bus.publish(sub3, AliasMovedSchema, alias(2));
      const seen: Array<[number, number]> = [];
      let failedOnce = false;
      const sub = await bus.subscribe({
        stream,
        durable: "retry",
        filterSubject: sub3,
        schema: AliasMovedSchema,
        handler: async (e) => {
          seen.push([Number(e.message.version), e.redeliveries]);
          if (Number(e.message.version) === 1 && !failedOnce) {
            failedOnce = true;
            throw new Error("transient");
          }
        },
      });
      await waitFor(() => seen.some(([v]) => v === 2) && seen.filter(([v]) => v === 1).length === 2, 15_000, "redelivery");
      await sub.stop();
      assert.deepEqual(
        seen.filter(([v]) => v === 1).map(([, r]) => r),
        [0, 1],
      );
    });
  });
}

suite("JetStreamBus (real NATS)", async () => {
  const nats = await testNats();
  const bus = await JetStreamBus.connect({ servers: nats.url, name: "events-test", logger });
  return {
    bus,
    cleanup: async () => {
      await bus.close();
      await nats.stop();
    },
  };
});

suite("InProcessBus", async () => {
  const bus = new InProcessBus(logger);
  return { bus, cleanup: () => bus.close() };
});

describe("JetStreamBus across a NATS outage", () => {
  let nats: TestNats;
  before(async () => {
    nats = await startPrivateNats();
  });
  after(async () => nats.stop());

  it("delivers every event accepted while NATS was down, exactly once, in order", async () => {
    const bus = await JetStreamBus.connect({ servers: nats.url, name: "outage-test", logger });
    await bus.ensureStream({ name: "OUTAGE", subjects: ["outage.>"] });
    await bus.publish("outage.e", AliasMovedSchema, alias(1));
    // SIGKILL the server (its store survives) and publish while it is gone.
    const restarting = nats.restart!();
    const pending = [2, 3, 4, 5].map((v) => bus.publish("outage.e", AliasMovedSchema, alias(v)));
    await restarting;
    const acks = await Promise.all(pending);
    assert.ok(acks.every((a) => a.stream === "OUTAGE"));
    assert.equal(bus.pendingPublishes(), 0);
    assert.deepEqual(await consume(bus, "OUTAGE", "outage.e", "after-outage", 5), [1, 2, 3, 4, 5]);
    await bus.close();
  });
});
