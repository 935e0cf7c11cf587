// GetOnlineFeaturesRequest read straight from its gRPC bytes (the rawRequests hook of
// lib/pre-encoded.ts): 100 entity keys decoded by protobuf-es are ~400 small messages and
// maps per call, garbage that showed up in the server's GC pauses at the P99. Only the
// common shape is read here (entities, refs, feature_set, columnar); a request with request
// data for on-demand features is handed to protobuf-es whole, so both paths give the same.

import { fromBinary } from "@bufbuild/protobuf";
import { GetOnlineFeaturesRequestSchema } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { ValidationError } from "../../lib/errors.js";
import { entityKeyFromProto, requestDataFromProto } from "./mapping.js";
import type { Scalar } from "./types.js";
import { PbReadError, PbReader as Reader } from "../../lib/pb-reader.js";

export interface OnlineRequest {
  readonly entities: Array<{ keys: Record<string, Scalar>; request: Record<string, Scalar> | undefined }>;
  readonly refs: string[];
  readonly featureSet: string;
  readonly requestData: Record<string, Scalar>;
  readonly columnar: boolean;
}

/** A Value message as a Scalar (as scalarFromValue), or NEEDS_PROTOBUF for the rare kinds. */
function value(r: Reader, end: number): Scalar {
  let out: Scalar = null;
  while (r.pos < end) {
    const tag = r.varint();
    switch (tag) {
      case 0x09: {
        if (r.pos + 8 > end) throw new PbReadError("truncated double");
        out = Buffer.from(r.buf.buffer, r.buf.byteOffset, r.buf.byteLength).readDoubleLE(r.pos);
        r.pos += 8;
        break;
      }
      case 0x18:
        out = r.int64();
        break;
      case 0x22:
        out = r.string();
        break;
      case 0x28:
        out = r.varint() !== 0;
        break;
      default:
        // float and vector keys are not entity key types; leave them to protobuf-es.
        throw NEEDS_PROTOBUF;
    }
  }
  return out;
}

const NEEDS_PROTOBUF = new Error("needs protobuf-es");

function entityKey(r: Reader, end: number): Record<string, Scalar> {
  const keys: Record<string, Scalar> = {};
  while (r.pos < end) {
    const tag = r.varint();
    if (tag !== 0x0a) {
      r.skip(tag & 7);
      continue;
    }
    const entryStart = r.delimited();
    const entryEnd = r.pos;
    const e = new Reader(r.buf, entryStart, entryEnd);
    let name = "";
    let v: Scalar = null;
    while (e.pos < entryEnd) {
      const t = e.varint();
      if (t === 0x0a) name = e.string();
      else if (t === 0x12) {
        const vs = e.delimited();
        v = value(new Reader(r.buf, vs, e.pos), e.pos);
      } else e.skip(t & 7);
    }
    keys[name] = v; // a map's later entry for the same key wins, as in protobuf-es
  }
  return keys;
}

function fromProtobuf(bytes: Uint8Array): OnlineRequest {
  let req;
  try {
    req = fromBinary(GetOnlineFeaturesRequestSchema, bytes);
  } catch (err) {
    throw new ValidationError("request", `is not a valid ${GetOnlineFeaturesRequestSchema.typeName} message (${(err as Error).message})`);
  }
  return fromMessage(req);
}

/** The decoded message (other transports, or the rare shapes) in the same form. */
export function fromMessage(req: ReturnType<typeof fromBinary<typeof GetOnlineFeaturesRequestSchema>>): OnlineRequest {
  if (req.entityRequestData.length !== 0 && req.entityRequestData.length !== req.entities.length) {
    throw new ValidationError("entity_request_data", `must be empty or have one entry per entity (${req.entities.length}), got ${req.entityRequestData.length}`);
  }
  return {
    entities: req.entities.map((e, i) => ({
      keys: entityKeyFromProto(e),
      request: req.entityRequestData.length ? requestDataFromProto(req.entityRequestData[i]!.fields) : undefined,
    })),
    refs: req.refs,
    featureSet: req.featureSet,
    requestData: requestDataFromProto(req.requestData),
    columnar: req.columnar,
  };
}

/** GetOnlineFeaturesRequest bytes -> the handler's input; INVALID_ARGUMENT when malformed. */
export function decodeOnlineRequest(bytes: Uint8Array): OnlineRequest {
  const r = new Reader(bytes, 0, bytes.length);
  const entities: OnlineRequest["entities"] = [];
  const refs: string[] = [];
  let featureSet = "";
  let columnar = false;
  try {
    while (r.pos < bytes.length) {
      const tag = r.varint();
      switch (tag) {
        case 0x0a: {
          const s = r.delimited();
          entities.push({ keys: entityKey(new Reader(bytes, s, r.pos), r.pos), request: undefined });
          break;
        }
        case 0x12:
          refs.push(r.string());
          break;
        case 0x1a:
          featureSet = r.string();
          break;
        case 0x30:
          columnar = r.varint() !== 0;
          break;
        case 0x22: // request_data
        case 0x2a: // entity_request_data
          return fromProtobuf(bytes);
        default:
          r.skip(tag & 7);
      }
    }
  } catch (err) {
    if (err === NEEDS_PROTOBUF) return fromProtobuf(bytes);
    // protobuf-es words the problem; decoding again costs nothing on this error path.
    if (err instanceof PbReadError || err instanceof TypeError) return fromProtobuf(bytes);
    throw err;
  }
  return { entities, refs, featureSet, requestData: {}, columnar };
}
