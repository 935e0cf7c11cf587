// Hand-written encoders the typed clients (lib/clients.ts) use for the few requests that carry
// thousands of small messages, where protobuf-es's reflective create + toBinary costs the
// producer more than the server spends on the data: LogOutcomesRequest (issue #6; ~10 µs per
// outcome reflectively, under 1 µs here). The bytes are those toBinary writes for the same
// message (fast-request-encoders.test.ts). An encoder answers undefined for what it does not
// handle exactly (unknown fields kept on a message, a 64-bit value given as a string), and
// the client then uses toBinary.

import { PbWriter, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT } from "./pb-writer.js";

type Encoder = (request: unknown) => Uint8Array | undefined;

interface TimestampLike {
  readonly seconds?: bigint | number;
  readonly nanos?: number;
}

interface OutcomeLike {
  readonly unitId?: string;
  readonly unitType?: number;
  readonly metric?: string;
  readonly value?: number;
  readonly time?: TimestampLike;
  readonly outcomeId?: string;
  readonly experimentKey?: string;
  readonly $unknown?: unknown[];
}

const writer = new PbWriter(1 << 16);

function hasUnknown(m: { $unknown?: unknown[] } | undefined): boolean {
  return m?.$unknown !== undefined && m.$unknown.length > 0;
}

function encodeLogOutcomes(request: unknown): Uint8Array | undefined {
  const req = request as { outcomes?: readonly OutcomeLike[]; $unknown?: unknown[] };
  if (hasUnknown(req)) return undefined;
  const list = req.outcomes ?? [];
  const w = writer;
  w.reset();
  for (const o of list) {
    if (hasUnknown(o) || hasUnknown(o.time as { $unknown?: unknown[] } | undefined)) return undefined;
    const seconds = o.time?.seconds ?? 0n;
    if (typeof seconds !== "bigint" && typeof seconds !== "number") return undefined;
    w.tag(1, WIRE_LEN).fork();
    if (o.unitId) w.tag(1, WIRE_LEN).string(o.unitId);
    if (o.unitType) w.tag(2, WIRE_VARINT).int32(o.unitType);
    if (o.metric) w.tag(3, WIRE_LEN).string(o.metric);
    const v = o.value ?? 0;
    if (!(v === 0 && 1 / v > 0)) w.tag(4, WIRE_FIXED64).double(v);
    if (o.time) {
      w.tag(5, WIRE_LEN).fork();
      if (seconds !== 0n && seconds !== 0) w.tag(1, WIRE_VARINT).int64(seconds);
      if (o.time.nanos) w.tag(2, WIRE_VARINT).int32(o.time.nanos);
      w.join();
    }
    if (o.outcomeId) w.tag(6, WIRE_LEN).string(o.outcomeId);
    if (o.experimentKey) w.tag(7, WIRE_LEN).string(o.experimentKey);
    w.join();
  }
  // A copy: the writer is reused by the next call while these bytes are still being sent.
  return w.copy();
}

const encoders = new Map<string, Encoder>([["mlmesh.experiments.v1.LogOutcomesRequest", encodeLogOutcomes]]);

/** The hand-written encoder for requests of this type, if there is one. */
export function fastRequestEncoder(typeName: string): Encoder | undefined {
  return encoders.get(typeName);
}
