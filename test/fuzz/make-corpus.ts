// Writes the fuzz corpus of test/fuzz/corpus.ts to a directory, one file per case, so a case
// can be replayed by hand (grpcurl, curl, another fuzzer's seed corpus) or diffed between
// seeds. Layout: <out>/<package.Service>/<Method>/<index>-<kind>.<bin|json> plus index.json
// (path, transport, recipe of every case). Not a test; the fuzz test builds the same cases
// in memory.
//
//   node --import tsx test/fuzz/make-corpus.ts --out /tmp/mlmesh-corpus [--seed 20261128] [--max-message-bytes 1048576] [--method Score]

import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { DescService } from "@bufbuild/protobuf";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { GRPCInferenceService } from "../../gen/inference/grpc_service_pb.js";
import { ExperimentService } from "../../gen/mlmesh/experiments/v1/experiments_service_pb.js";
import { FeatureService } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import { InferenceService } from "../../gen/mlmesh/inference/v1/inference_service_pb.js";
import { RegistryService } from "../../gen/mlmesh/registry/v1/registry_service_pb.js";
import { RouterService } from "../../gen/mlmesh/router/v1/router_service_pb.js";
import { corpusBytes, methodCases } from "./corpus.js";

const FUZZED_SERVICES: readonly DescService[] = [Health, RegistryService, FeatureService, InferenceService, GRPCInferenceService, RouterService, ExperimentService];

const { values } = parseArgs({
  options: {
    out: { type: "string" },
    seed: { type: "string", default: "20261128" },
    "max-message-bytes": { type: "string", default: String(1 << 20) },
    method: { type: "string" },
  },
});
if (!values.out) {
  process.stderr.write("usage: make-corpus.ts --out DIR [--seed N] [--max-message-bytes N] [--method NAME]\n");
  process.exit(2);
}
const seed = Number(values.seed);
const maxMessageBytes = Number(values["max-message-bytes"]);
const index: Array<{ file: string; path: string; transport: string; kind: string; recipe: string }> = [];
let bytes = 0;
for (const service of FUZZED_SERVICES) {
  for (const method of service.methods) {
    if (values.method && method.name !== values.method) continue;
    const cases = methodCases(service, method, { seed, maxMessageBytes });
    bytes += corpusBytes(cases);
    const dir = path.join(values.out, service.typeName, method.name);
    fs.mkdirSync(dir, { recursive: true });
    for (const c of cases) {
      // Streams of several messages are written length-prefixed (4-byte big-endian) one after another.
      const file = path.join(dir, `${String(c.index).padStart(3, "0")}-${c.kind}.${c.transport === "grpc" ? "bin" : "json"}`);
      if (c.transport === "grpc") {
        const frames = c.frames as Uint8Array[];
        fs.writeFileSync(file, frames.length === 1 ? frames[0]! : Buffer.concat(frames.flatMap((f) => [lenPrefix(f.length), f])));
      } else {
        fs.writeFileSync(file, (c.frames as string[]).join("\n"));
      }
      index.push({ file: path.relative(values.out, file), path: `/${service.typeName}/${method.name}`, transport: c.transport, kind: c.kind, recipe: c.recipe });
    }
  }
}
fs.writeFileSync(path.join(values.out, "index.json"), JSON.stringify({ seed, maxMessageBytes, cases: index }, null, 1));
process.stdout.write(`${index.length} cases, ${(bytes / 1048576).toFixed(1)} MiB, seed ${seed} -> ${values.out}\n`);

function lenPrefix(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
