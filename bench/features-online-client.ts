// The client half of bench/features-online.ts, in its own process: its protobuf-es decode and
// its garbage collection are then not the server's (they shared one process and one heap
// before, and the client's GC pauses landed in the server's P99). Measures GetOnlineFeatures
// (row and columnar answers, in alternating blocks of 100 calls so both see the same machine
// load) and reads the server's own time per block from its /metrics. A third block kind reads
// the columnar answer with our lean client (lib/features-online-client.ts: hand-written
// request, answer decoded straight into typed arrays), what an SDK user gets from us.
// The client's own CPU per call (process.cpuUsage, all its threads: GC helpers included)
// is reported beside the latencies, as a figure that does not depend on machine load.
// Prints JSON on stdout.
// Not run by hand: bench/features-online.ts starts it.

import { FeatureService } from "../gen/mlmesh/features/v1/features_service_pb.js";
import { createServiceClient } from "../lib/clients.js";
import { OnlineFeaturesClient } from "../lib/features-online-client.js";

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
const lean = new OnlineFeaturesClient(grpcUrl!);
const leanEntitiesOf = (ids: number[]) => ids.map((id) => ({ user_id: id }));
for (let i = 0; i < 300; i++) await lean.getColumns(leanEntitiesOf(pick()), refs);

const serverSeconds = async () => {
  const body = await (await fetch(`${httpUrl}/metrics`)).text();
  const m = /mlmesh_rpc_server_duration_seconds_sum\{[^}]*method="GetOnlineFeatures"[^}]*\} ([0-9.e+-]+)/.exec(body);
  return m ? Number(m[1]) : NaN;
};
type Mode = "rows" | "columnar" | "lean";
const MODES: Mode[] = ["rows", "columnar", "lean"];
const ms: Record<Mode, number[]> = { rows: [], columnar: [], lean: [] };
const server: Record<Mode, number> = { rows: 0, columnar: 0, lean: 0 };
const cpuMs: Record<Mode, number> = { rows: 0, columnar: 0, lean: 0 };
for (let block = 0; block < (MODES.length * CALLS) / 100; block++) {
  const mode = MODES[block % MODES.length]!;
  const s0 = await serverSeconds();
  const c0 = process.cpuUsage();
  for (let i = 0; i < 100; i++) {
    const ids = pick();
    if (mode === "lean") {
      const entities = leanEntitiesOf(ids);
      const t0 = performance.now();
      await lean.getColumns(entities, refs);
      ms.lean.push(performance.now() - t0);
    } else {
      const entities = entitiesOf(ids);
      const t0 = performance.now();
      await client.getOnlineFeatures({ entities, refs, columnar: mode === "columnar" });
      ms[mode].push(performance.now() - t0);
    }
  }
  const c = process.cpuUsage(c0);
  cpuMs[mode] += (c.user + c.system) / 1000;
  server[mode] += (await serverSeconds()) - s0;
}
process.stdout.write(JSON.stringify({ rows: ms.rows, columnar: ms.columnar, lean: ms.lean, server, cpuMs }));
process.exit(0);
