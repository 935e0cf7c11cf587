// The hand-read IngestFeaturesRequest must give the handler exactly what the protobuf-es
// path gives it: every value kind, missing and invalid event times, negative int64s and
// seconds, source lines, the last marker; a header goes to protobuf-es; bad bytes are
// INVALID_ARGUMENT.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { IngestFeaturesRequestSchema } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { ingestMessageOf, readIngestMessage } from "./ingest-wire.js";

const i64 = (value: bigint) => ({ kind: { case: "int64Value" as const, value } });

describe("readIngestMessage", () => {
  it("reads a chunk as the protobuf-es path does", () => {
    const msg = create(IngestFeaturesRequestSchema, {
      payload: {
        case: "chunk",
        value: {
          rows: [
            {
              entityKey: { keys: { user_id: i64(-42n), region: { kind: { case: "stringValue", value: "zürich ✓" } } } },
              eventTime: { seconds: 1767268800n, nanos: 123_456_789 },
              values: [
                { kind: { case: "doubleValue", value: -1.5 } },
                { kind: { case: "floatValue", value: 0.1 } },
                i64(-(2n ** 63n)),
                i64(2n ** 40n),
                { kind: { case: "boolValue", value: true } },
                { kind: { case: "floatVectorValue", value: { values: [1, -2.5, 0.1] } } },
                { kind: { case: "floatVectorValue", value: { values: [] } } },
                {},
                { kind: { case: "stringValue", value: "x".repeat(300) } },
              ],
            },
            { entityKey: { keys: { user_id: i64(7n) } }, eventTime: { seconds: -1n, nanos: 500_000_000 }, values: [] },
            { entityKey: { keys: { user_id: i64(8n) } }, values: [] },
            { entityKey: { keys: { user_id: i64(9n) } }, eventTime: { seconds: 2n ** 40n, nanos: 0 }, values: [] },
            { entityKey: { keys: { user_id: i64(10n) } }, eventTime: { seconds: 0n, nanos: -1 }, values: [] },
            {},
          ],
          sourceLines: [2n, 3n, 5n, 6n, 7n, 2n ** 40n],
          last: true,
        },
      },
    });
    const bytes = toBinary(IngestFeaturesRequestSchema, msg);
    const fast = readIngestMessage(bytes);
    const slow = ingestMessageOf(fromBinary(IngestFeaturesRequestSchema, bytes));
    assert.deepEqual(fast, slow);
    assert.equal(fast.case, "chunk");
    if (fast.case !== "chunk") return;
    assert.equal(fast.rows[0]!.eventTime, 1767268800123);
    assert.equal(fast.rows[1]!.eventTime, -500);
    assert.equal(fast.rows[2]!.eventTimeError, "event_time: is required");
    assert.match(fast.rows[3]!.eventTimeError!, /not a valid timestamp/);
    assert.match(fast.rows[4]!.eventTimeError!, /not a valid timestamp/);
    assert.equal(fast.last, true);
  });

  it("hands a header to protobuf-es and reads an empty last chunk", () => {
    const header = toBinary(IngestFeaturesRequestSchema, create(IngestFeaturesRequestSchema, { payload: { case: "header", value: { view: "v", featureNames: ["a"], expectedRows: 3n } } }));
    const h = readIngestMessage(header);
    assert.equal(h.case, "header");
    if (h.case === "header") assert.equal(h.header.view, "v");
    const end = toBinary(IngestFeaturesRequestSchema, create(IngestFeaturesRequestSchema, { payload: { case: "chunk", value: { last: true } } }));
    assert.deepEqual(readIngestMessage(end), { case: "chunk", rows: [], sourceLines: [], last: true });
    assert.deepEqual(readIngestMessage(new Uint8Array(0)), { case: undefined });
  });

  it("refuses malformed bytes with INVALID_ARGUMENT", () => {
    const bytes = toBinary(IngestFeaturesRequestSchema, create(IngestFeaturesRequestSchema, { payload: { case: "chunk", value: { rows: [{ entityKey: { keys: { id: i64(1n) } }, values: [{ kind: { case: "doubleValue", value: 1 } }] }] } } }));
    assert.throws(() => readIngestMessage(bytes.subarray(0, bytes.length - 4)), (e) => e instanceof ValidationError && e.field === "request");
  });
});
