// IngestFeaturesRequest read straight from its protobuf bytes, as the gRPC port hands them
// to the client-streaming handler (the rawRequests hook of lib/pre-encoded.ts): protobuf-es's reflective decode of a 5,000-row
// chunk builds ~110,000 messages and was the largest single cost of an upload (a quarter of
// the process CPU in bench/features-ingest.ts). A chunk's rows come out as the handler's
// input (keys and values as Scalars, event times as epoch ms); a header, one per upload,
// is left to protobuf-es.

import { fromBinary } from "@bufbuild/protobuf";
import { IngestFeaturesRequestSchema, type IngestFeaturesRequest } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { entityKeyFromProto, scalarFromValue, timestampToMs } from "./mapping.js";
import type { Scalar } from "./types.js";
import { PbReadError, PbReader as Reader } from "../../lib/pb-reader.js";

/** A chunk's row before the view's checks; `eventTime` undefined: missing or invalid (see eventTimeError). */
export interface WireRow {
  readonly entityKey: Record<string, Scalar>;
  readonly eventTime: number | undefined;
  /** Why eventTime is undefined, as timestampToMs words it ("event_time: is required"). */
  readonly eventTimeError?: string;
  readonly values: Scalar[];
}

export type IngestMessage =
  | { readonly case: "header"; readonly header: Extract<IngestFeaturesRequest["payload"], { case: "header" }>["value"] }
  | { readonly case: "chunk"; readonly rows: WireRow[]; readonly sourceLines: number[]; readonly last: boolean }
  | { readonly case: undefined };

/** A Value message's payload [r.pos, end) as a Scalar, as scalarFromValue gives it. */
function value(r: Reader, end: number): Scalar {
  let out: Scalar = null;
  while (r.pos < end) {
    const tag = r.varint();
    switch (tag) {
      case 0x09:
        out = r.double();
        break;
      case 0x15:
        out = r.float();
        break;
      case 0x18:
        out = r.int64();
        break;
      case 0x22:
        out = r.string();
        break;
      case 0x28:
        out = r.varint() !== 0;
        break;
      case 0x32: {
        const s = r.delimited();
        const vec: number[] = [];
        const v = new Reader(r.buf, s, r.pos);
        while (v.pos < v.end) {
          const t = v.varint();
          if (t === 0x0a) {
            const ps = v.delimited();
            const p = new Reader(r.buf, ps, v.pos);
            while (p.pos < p.end) vec.push(p.float());
          } else if (t === 0x0d) vec.push(v.float());
          else v.skip(t & 7);
        }
        out = vec;
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  return out;
}

function entityKey(r: Reader, end: number, keys: Record<string, Scalar>): void {
  while (r.pos < end) {
    const tag = r.varint();
    if (tag !== 0x0a) {
      r.skip(tag & 7);
      continue;
    }
    const es = r.delimited();
    const e = new Reader(r.buf, es, r.pos);
    let name = "";
    let v: Scalar = null;
    while (e.pos < e.end) {
      const t = e.varint();
      if (t === 0x0a) name = e.string();
      else if (t === 0x12) {
        const vs = e.delimited();
        v = value(new Reader(r.buf, vs, e.pos), e.pos);
      } else e.skip(t & 7);
    }
    keys[name] = v;
  }
}

function row(r: Reader, end: number): WireRow {
  const keys: Record<string, Scalar> = {};
  const values: Scalar[] = [];
  let seconds: number | undefined;
  let nanos = 0;
  let sawTime = false;
  while (r.pos < end) {
    const tag = r.varint();
    switch (tag) {
      case 0x0a: {
        const s = r.delimited();
        entityKey(new Reader(r.buf, s, r.pos), r.pos, keys);
        break;
      }
      case 0x12: {
        const s = r.delimited();
        const t = new Reader(r.buf, s, r.pos);
        sawTime = true;
        seconds = 0;
        nanos = 0;
        while (t.pos < t.end) {
          const tt = t.varint();
          if (tt === 0x08) seconds = t.int64Number();
          else if (tt === 0x10) nanos = Number(BigInt.asIntN(32, t.int64()));
          else t.skip(tt & 7);
        }
        break;
      }
      case 0x1a: {
        const s = r.delimited();
        values.push(value(new Reader(r.buf, s, r.pos), r.pos));
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  if (!sawTime) return { entityKey: keys, eventTime: undefined, eventTimeError: "event_time: is required", values };
  try {
    return { entityKey: keys, eventTime: timestampToMs({ seconds: BigInt(seconds!), nanos } as Parameters<typeof timestampToMs>[0], "event_time"), values };
  } catch (err) {
    if (err instanceof ValidationError) return { entityKey: keys, eventTime: undefined, eventTimeError: err.message, values };
    throw err;
  }
}

function chunk(buf: Uint8Array, start: number, end: number): IngestMessage {
  const r = new Reader(buf, start, end);
  const rows: WireRow[] = [];
  const sourceLines: number[] = [];
  let last = false;
  while (r.pos < end) {
    const tag = r.varint();
    switch (tag) {
      case 0x0a: {
        const s = r.delimited();
        rows.push(row(new Reader(buf, s, r.pos), r.pos));
        break;
      }
      case 0x12: {
        const s = r.delimited();
        const p = new Reader(buf, s, r.pos);
        while (p.pos < p.end) sourceLines.push(p.int64Number());
        break;
      }
      case 0x10:
        sourceLines.push(r.int64Number());
        break;
      case 0x18:
        last = r.varint() !== 0;
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return { case: "chunk", rows, sourceLines, last };
}

function fromProtobuf(bytes: Uint8Array): IngestMessage {
  let msg: IngestFeaturesRequest;
  try {
    msg = fromBinary(IngestFeaturesRequestSchema, bytes);
  } catch (err) {
    throw new ValidationError("request", `is not a valid ${IngestFeaturesRequestSchema.typeName} message (${(err as Error).message})`);
  }
  return ingestMessageOf(msg);
}

/** A decoded message (other transports) in the same form. */
export function ingestMessageOf(msg: IngestFeaturesRequest): IngestMessage {
  const p = msg.payload;
  if (p.case === "header") return { case: "header", header: p.value };
  if (p.case !== "chunk") return { case: undefined };
  return {
    case: "chunk",
    rows: p.value.rows.map((r) => {
      const base = { entityKey: entityKeyFromProto(r.entityKey), values: r.values.map(scalarFromValue) };
      try {
        return { ...base, eventTime: timestampToMs(r.eventTime, "event_time") };
      } catch (err) {
        if (err instanceof ValidationError) return { ...base, eventTime: undefined, eventTimeError: err.message };
        throw err;
      }
    }),
    sourceLines: p.value.sourceLines.map(Number),
    last: p.value.last,
  };
}

/** IngestFeaturesRequest bytes (or the decoded message) -> header or chunk; INVALID_ARGUMENT when malformed. */
export function readIngestMessage(raw: IngestFeaturesRequest | Uint8Array): IngestMessage {
  if (!(raw instanceof Uint8Array)) return ingestMessageOf(raw);
  const r = new Reader(raw, 0, raw.length);
  try {
    let found: IngestMessage = { case: undefined };
    // The oneof: the last payload field on the wire wins, as in protobuf-es.
    while (r.pos < raw.length) {
      const tag = r.varint();
      if (tag === 0x12) {
        const s = r.delimited();
        found = chunk(raw, s, r.pos);
      } else if (tag === 0x0a) {
        return fromProtobuf(raw); // a header: once per upload
      } else r.skip(tag & 7);
    }
    return found;
  } catch (err) {
    // protobuf-es words the problem (or accepts what this reader is stricter about).
    if (err instanceof PbReadError || err instanceof TypeError || err instanceof RangeError) return fromProtobuf(raw);
    throw err;
  }
}
