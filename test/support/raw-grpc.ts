// A gRPC client that sends and receives raw bytes (identity (de)serialisers): what a fuzzer
// or a misbehaving peer puts on the wire, not what our generated code would encode.
import * as grpc from "@grpc/grpc-js";

export interface RawOutcome {
  /** grpc status name: OK, INVALID_ARGUMENT, ... */
  readonly code: string;
  readonly details: string;
  readonly ms: number;
  /** Response messages received (server streams may send some before failing). */
  readonly messages: number;
}

const identity = (b: Buffer) => b;
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).filter(([, v]) => typeof v === "number").map(([k, v]) => [v as number, k])) as Record<number, string>;

export function codeName(code: number): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

export class RawGrpcClient {
  readonly client: grpc.Client;
  constructor(address: string, maxMessageBytes = 64 * 1024 * 1024) {
    this.client = new grpc.Client(address.replace(/^https?:\/\//, ""), grpc.credentials.createInsecure(), {
      "grpc.max_send_message_length": maxMessageBytes,
      "grpc.max_receive_message_length": maxMessageBytes,
    });
  }

  /** One call: `frames` are the request messages (one for unary and server-streaming methods). */
  call(path: string, kind: "unary" | "server_streaming" | "client_streaming" | "bidi_streaming", frames: readonly Uint8Array[], deadlineMs: number): Promise<RawOutcome> {
    const started = performance.now();
    const deadline = Date.now() + deadlineMs;
    const md = new grpc.Metadata();
    const buf = (f: Uint8Array) => Buffer.from(f.buffer, f.byteOffset, f.byteLength);
    return new Promise((resolve) => {
      let messages = 0;
      let done = false;
      const finish = (code: number, details: string) => {
        if (done) return;
        done = true;
        resolve({ code: codeName(code), details, ms: performance.now() - started, messages });
      };
      const unaryCb = (err: grpc.ServiceError | null) => (err ? finish(err.code, err.details) : finish(grpc.status.OK, ""));
      if (kind === "unary") {
        this.client.makeUnaryRequest(path, identity, identity, buf(frames[0] ?? new Uint8Array(0)), md, { deadline }, unaryCb);
      } else if (kind === "client_streaming") {
        const call = this.client.makeClientStreamRequest(path, identity, identity, md, { deadline }, unaryCb);
        call.on("error", () => undefined);
        for (const f of frames) call.write(buf(f));
        call.end();
      } else {
        const call =
          kind === "server_streaming"
            ? this.client.makeServerStreamRequest(path, identity, identity, buf(frames[0] ?? new Uint8Array(0)), md, { deadline })
            : this.client.makeBidiStreamRequest(path, identity, identity, md, { deadline });
        call.on("data", () => void messages++);
        call.on("error", () => undefined);
        call.on("status", (s: grpc.StatusObject) => finish(s.code, s.details));
        if (kind === "bidi_streaming") {
          const w = call as grpc.ClientDuplexStream<Buffer, Buffer>;
          for (const f of frames) w.write(buf(f));
          w.end();
        }
      }
    });
  }

  close(): void {
    this.client.close();
  }
}
