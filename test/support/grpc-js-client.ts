// An independent gRPC client: @grpc/grpc-js (the reference Node implementation) with our
// generated protobuf-es types for (de)serialisation. Nothing of connect is involved.
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";

type Unary = (req: unknown, opts?: { deadlineMs?: number; metadata?: grpc.Metadata }) => Promise<unknown>;

export interface GrpcJsClient {
  unary<I extends DescMessage, O extends DescMessage>(
    methodName: string,
    input: I,
    output: O,
    req: MessageInitShape<I>,
    opts?: { deadlineMs?: number; metadata?: grpc.Metadata },
  ): Promise<MessageShape<O>>;
  serverStream<I extends DescMessage, O extends DescMessage>(
    methodName: string,
    input: I,
    output: O,
    req: MessageInitShape<I>,
  ): grpc.ClientReadableStream<MessageShape<O>>;
  close(): void;
}

export function grpcJsClient(service: DescService, address: string): GrpcJsClient {
  const definition: Record<string, grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>>> = {};
  for (const m of service.methods) {
    definition[m.name] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: (value: MessageShape<DescMessage>) => Buffer.from(toBinary(m.input, value)),
      requestDeserialize: (bytes: Buffer) => fromBinary(m.input, bytes),
      responseSerialize: (value: MessageShape<DescMessage>) => Buffer.from(toBinary(m.output, value)),
      responseDeserialize: (bytes: Buffer) => fromBinary(m.output, bytes),
    };
  }
  const Ctor = grpc.makeGenericClientConstructor(definition as grpc.ServiceDefinition, service.name);
  const client = new Ctor(address.replace(/^https?:\/\//, ""), grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (...args: unknown[]) => unknown>;
  return {
    unary(methodName, input, _output, req, opts = {}) {
      const fn = client[methodName]!.bind(client) as (
        r: unknown,
        md: grpc.Metadata,
        o: grpc.CallOptions,
        cb: (err: grpc.ServiceError | null, res: unknown) => void,
      ) => void;
      return new Promise((resolve, reject) => {
        fn(create(input, req), opts.metadata ?? new grpc.Metadata(), { deadline: Date.now() + (opts.deadlineMs ?? 10_000) }, (err, res) =>
          err ? reject(err) : resolve(res as never),
        );
      });
    },
    serverStream(methodName, input, _output, req) {
      const fn = client[methodName]!.bind(client) as (r: unknown) => grpc.ClientReadableStream<never>;
      return fn(create(input, req));
    },
    close: () => client.close(),
  };
}
export type { Unary };
