// The google.rpc.Status a gRPC error carries in its `grpc-status-details-bin` trailer (code,
// message, Any-wrapped details): encoded once for both gRPC servers, so grpcio's rpc_status
// and connect clients read typed details such as PromotionRejected, and decoded by the mesh
// client (lib/h2-grpc-client.ts).

import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { ConnectError } from "@connectrpc/connect";

/** The encoded google.rpc.Status of `err`, or undefined when it has no details. */
export function encodeStatusDetails(err: ConnectError): Uint8Array | undefined {
  if (err.details.length === 0) return undefined;
  const w = new BinaryWriter();
  w.tag(1, WireType.Varint).int32(err.code);
  w.tag(2, WireType.LengthDelimited).string(err.rawMessage);
  for (const d of err.details) {
    // Outgoing details are {desc, value}; details passed through from a callee are {type, value: bytes}.
    const typeName = "desc" in d ? d.desc.typeName : d.type;
    const bytes = "desc" in d ? toBinary(d.desc, create(d.desc, d.value)) : d.value;
    w.tag(3, WireType.LengthDelimited).fork();
    w.tag(1, WireType.LengthDelimited).string(`type.googleapis.com/${typeName}`);
    w.tag(2, WireType.LengthDelimited).bytes(bytes);
    w.join();
  }
  return w.finish();
}

/** The `details` (google.protobuf.Any) of a serialized google.rpc.Status, as connect's incoming details. */
export function decodeStatusDetails(bytes: Uint8Array): Array<{ type: string; value: Uint8Array }> {
  const out: Array<{ type: string; value: Uint8Array }> = [];
  try {
    const r = new BinaryReader(bytes);
    while (r.pos < r.len) {
      const [field, wire] = r.tag();
      if (field !== 3) {
        r.skip(wire);
        continue;
      }
      const any = new BinaryReader(r.bytes());
      let type = "";
      let value: Uint8Array = new Uint8Array();
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (f === 1) type = any.string().replace(/^.*\//, "");
        else if (f === 2) value = any.bytes();
        else any.skip(w);
      }
      out.push({ type, value });
    }
  } catch {
    // Malformed details never hide the status itself.
  }
  return out;
}
