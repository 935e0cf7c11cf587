// The mesh runtime's own cost per call: grpc.health.v1 Check answered in-process (the
// limit), over gRPC h2c (connect-node client and @grpc/grpc-js client) and over Connect JSON
// on HTTP/1.1, at concurrency 1 and 16. Prints a table and ratios against in-process,
// measured in the same run; writes bench/results-rpc.json. Not a test: nothing is asserted.
//
//   npm run bench:rpc            (MLMESH_BENCH_SECONDS=3 by default per cell)

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
} from "../gen/grpc/health/v1/health_pb.js";
import { createServiceClient } from "../lib/clients.js";
import { createHealthService, HealthState, ServingStatus } from "../lib/health.js";
import { createLogger } from "../lib/logger.js";
import { startServer } from "../lib/server.js";
import { grpcJsClient } from "../test/support/grpc-js-client.js";

const SECONDS = Number(process.env.MLMESH_BENCH_SECONDS ?? "3");

interface Cell {
  transport: string;
  concurrency: number;
  requests: number;
  rps: number;
  p50_us: number;
  p99_us: number;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function measure(transport: string, concurrency: number, call: () => Promise<unknown>): Promise<Cell> {
  // Warm-up: JIT, connections, HTTP/2 settings.
  const warmEnd = Date.now() + 500;
  while (Date.now() < warmEnd) await call();
  const latencies: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await call();
      latencies.push((performance.now() - t0) * 1000);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    transport,
    concurrency,
    requests: latencies.length,
    rps: latencies.length / elapsed,
    p50_us: percentile(sorted, 0.5),
    p99_us: percentile(sorted, 0.99),
  };
}

async function main() {
  const logger = createLogger({ level: "silent" });
  const server = await startServer({
    name: "bench",
    host: "127.0.0.1",
    grpcPort: 0,
    httpPort: 0,
    services: [],
    logger,
    maxMessageBytes: 1 << 20,
    maxDeadlineMs: 60_000,
    shutdownGraceMs: 1000,
  });
  const state = new HealthState();
  state.set("", ServingStatus.SERVING);
  const inProcess = createHealthService(state);
  const request = create(HealthCheckRequestSchema, { service: "" });
  const connect = createServiceClient(Health, server.grpcUrl);
  const grpcJs = grpcJsClient(Health, server.grpcUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const body = "{}";
  const jsonCall = () =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        `${server.httpUrl}/grpc.health.v1.Health/Check`,
        { method: "POST", agent, headers: { "content-type": "application/json", "content-length": body.length } },
        (res) => {
          res.resume();
          res.on("end", resolve);
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  const cells: Cell[] = [];
  for (const concurrency of [1, 16]) {
    cells.push(await measure("in-process handler", concurrency, async () => inProcess.check(request, undefined as never)));
    cells.push(await measure("gRPC h2c, connect-node client", concurrency, () => connect.check(request)));
    cells.push(await measure("gRPC h2c, @grpc/grpc-js client", concurrency, () => grpcJs.unary("Check", HealthCheckRequestSchema, HealthCheckResponseSchema, {})));
    cells.push(await measure("Connect JSON, HTTP/1.1", concurrency, jsonCall));
  }
  grpcJs.close();
  agent.destroy();
  await server.shutdown();

  const rows = cells.map((c) => {
    const base = cells.find((b) => b.concurrency === c.concurrency && b.transport === "in-process handler")!;
    return {
      ...c,
      rps: Math.round(c.rps),
      p50_us: Math.round(c.p50_us * 10) / 10,
      p99_us: Math.round(c.p99_us * 10) / 10,
      overhead_p50_us: Math.round((c.p50_us - base.p50_us) * 10) / 10,
      rps_vs_in_process: Math.round((c.rps / base.rps) * 1000) / 1000,
    };
  });
  console.table(rows);
  const out = path.join(path.dirname(fileURLToPath(import.meta.url)), "results-rpc.json");
  fs.writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), seconds_per_cell: SECONDS, node: process.version, rows }, null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
}

await main();
