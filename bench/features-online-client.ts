// The client half of bench/features-online.ts, in its own process: its protobuf-es decode and
// its garbage collection are then not the server's (they shared one process and one heap
// before, and the client's GC pauses landed in the server's P99). Measures GetOnlineFeatures
// (row and columnar answers, in alternating blocks of 100 calls so both see the same machine
// load) and reads the server's own time per block from its /metrics. Prints JSON on stdout.
// Not run by hand: bench/features-online.ts starts it.

import { FeatureService } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { createServiceClient } from "../lib/clients.js";

const [grpcUrl, httpUrl, entitiesArg, featuresArg, batchArg, callsArg] = process.argv.slice(2);
const ENTITIES = Number(entitiesArg);
const FEATURES = Number(featuresArg);
const BATCH = Number(batchArg);
const CALLS = Number(callsArg);

const client = createServiceClient(FeatureService, grpcUrl!);
const refs = Array.from({ length: FEATURES }, (_, i) => `bench:f${i}`);
const pick = () => Array.from({ length: BATCH }, () => Math.floor(Math.random() * ENTITIES));
const entitiesOf = (ids: number[]) => ids.map((id) => ({ keys: { user_id: { kind: { case: "int64Value" as const, value: BigInt(id) } } } }));

for (let i = 0; i < 300; i++) await client.getOnlineFeatures({ entities: entitiesOf(pick()), refs });
for (let i = 0; i < 300; i++) await client.getOnlineFeatures({ entities: entitiesOf(pick()), refs, columnar: true });

const serverSeconds = async () => {
  const body = await (await fetch(`${httpUrl}/metrics`)).text();
  const m = /mlmesh_rpc_server_duration_seconds_sum\{[^}]*method="GetOnlineFeatures"[^}]*\} ([0-9.e+-]+)/.exec(body);
  return m ? Number(m[1]) : NaN;
};
const rows: number[] = [];
const columnarMs: number[] = [];
const server = { rows: 0, columnar: 0 };
for (let block = 0; block < (2 * CALLS) / 100; block++) {
  const columnar = block % 2 === 1;
  const s0 = await serverSeconds();
  for (let i = 0; i < 100; i++) {
    const entities = entitiesOf(pick());
    const t0 = performance.now();
    await client.getOnlineFeatures({ entities, refs, columnar });
    (columnar ? columnarMs : rows).push(performance.now() - t0);
  }
  server[columnar ? "columnar" : "rows"] += (await serverSeconds()) - s0;
}
process.stdout.write(JSON.stringify({ rows, columnar: columnarMs, server }));
process.exit(0);
