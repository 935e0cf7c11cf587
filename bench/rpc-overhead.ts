// The mesh runtime's own cost per call: grpc.health.v1 Check through the mesh server (h2c with
// the observer: span, deadline, metrics; served by lib/h2-grpc-server.ts on node:http2, and by
// the grpc-js adapter lib/grpc-server.ts for comparison) called by the mesh client (lib/clients.ts),
// and over Connect JSON on HTTP/1.1, against the protocol floor measured in the same run — a
// bare node:http2 client and server exchanging the same gRPC frames with no library at all.
// Concurrency 1 and 16; client and server share one process (and its event loop), so these
// are upper bounds of what two processes see. Prints a table with ratios to the floor and
// writes bench/results-rpc.json. Not a test: nothing is asserted.
//
//   npm run bench:rpc            (MLMESH_BENCH_SECONDS=3 by default per cell)

import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { Health, HealthCheckRequestSchema } from "../gen/grpc/health/v1/health_pb.js";
import { closeAllClients, createServiceClient } from "../lib/clients.js";
import { setLocalCallsEnabled } from "../lib/local-calls.js";
import { createHealthService, HealthState, ServingStatus } from "../lib/health.js";
import { createLogger } from "../lib/logger.js";
import { startServer } from "../lib/server.js";

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
  const serverOptions = {
    name: "bench",
    host: "127.0.0.1",
    grpcPort: 0,
    httpPort: 0,
    services: [],
    logger,
    maxMessageBytes: 1 << 20,
    maxDeadlineMs: 60_000,
    shutdownGraceMs: 1000,
  };
  const server = await startServer({ ...serverOptions, grpcServer: "node-http2" });
  // grpc-js on the gRPC port, and connect-node alone on the HTTP port (no unary JSON fast path).
  const grpcJsServer = await startServer({ ...serverOptions, grpcServer: "grpc-js", connectFastPath: false });
  const state = new HealthState();
  state.set("", ServingStatus.SERVING);
  const inProcess = createHealthService(state);
  const request = create(HealthCheckRequestSchema, { service: "" });
  const mesh = createServiceClient(Health, server.grpcUrl);
  const meshOnGrpcJs = createServiceClient(Health, grpcJsServer.grpcUrl);
  // The new server's own share: the floor's bare client against it (no grpc-js client).
  const h2Session = http2.connect(server.grpcUrl);
  // The floor: the same request and response frames over bare node:http2.
  const floorServer = http2.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/grpc" });
      res.addTrailers({ "grpc-status": "0" });
      res.end(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
    });
  });
  await new Promise<void>((r) => floorServer.listen(0, "127.0.0.1", r));
  const floorSession = http2.connect(`http://127.0.0.1:${(floorServer.address() as import("node:net").AddressInfo).port}`);
  const emptyFrame = Buffer.from([0, 0, 0, 0, 0]);
  const bareCall = (session: http2.ClientHttp2Session) => () =>
    new Promise<void>((resolve, reject) => {
      const s = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
      s.on("data", () => undefined);
      // Only a call answered OK counts (status in the trailers, or in trailers-only headers).
      s.on("response", (h) => h["grpc-status"] !== undefined && h["grpc-status"] !== "0" && reject(new Error(`grpc-status ${String(h["grpc-status"])}`)));
      s.on("trailers", (t) => t["grpc-status"] !== "0" && reject(new Error(`grpc-status ${String(t["grpc-status"])}`)));
      s.on("end", resolve);
      s.on("error", reject);
      s.end(emptyFrame);
    });
  const floorCall = bareCall(floorSession);
  const bareToMesh = bareCall(h2Session);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const body = "{}";
  const jsonCallTo = (httpUrl: string) => () =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        `${httpUrl}/grpc.health.v1.Health/Check`,
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
    cells.push(await measure("floor: bare node:http2", concurrency, floorCall));
    // Client and servers share this process, where the mesh client would call in-process
    // (lib/local-calls.ts): the network cells turn that off, and one cell measures it.
    setLocalCallsEnabled(false);
    cells.push(await measure("mesh gRPC (node:http2 server + mesh client)", concurrency, () => mesh.check(request)));
    cells.push(await measure("mesh gRPC (grpc-js server + mesh client)", concurrency, () => meshOnGrpcJs.check(request)));
    setLocalCallsEnabled(true);
    cells.push(await measure("mesh client, in-process call (same process, lib/local-calls.ts)", concurrency, () => mesh.check(request)));
    cells.push(await measure("mesh node:http2 server + bare http2 client", concurrency, bareToMesh));
    cells.push(await measure("mesh Connect JSON, HTTP/1.1 (lib/connect-unary.ts)", concurrency, jsonCallTo(server.httpUrl)));
    cells.push(await measure("mesh Connect JSON, HTTP/1.1 (connect-node)", concurrency, jsonCallTo(grpcJsServer.httpUrl)));
    cells.push(await measure("handler alone, in-process", concurrency, async () => inProcess.check(request, undefined as never)));
  }
  floorSession.close();
  h2Session.close();
  floorServer.close();
  closeAllClients();
  agent.destroy();
  await server.shutdown();
  await grpcJsServer.shutdown();

  const rows = cells.map((c) => {
    const base = cells.find((b) => b.concurrency === c.concurrency && b.transport.startsWith("floor"))!;
    return {
      ...c,
      rps: Math.round(c.rps),
      p50_us: Math.round(c.p50_us * 10) / 10,
      p99_us: Math.round(c.p99_us * 10) / 10,
      p50_over_floor_us: Math.round((c.p50_us - base.p50_us) * 10) / 10,
      rps_vs_floor: Math.round((c.rps / base.rps) * 100) / 100,
    };
  });
  console.table(rows);
  const out = path.join(path.dirname(fileURLToPath(import.meta.url)), "results-rpc.json");
  fs.writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), seconds_per_cell: SECONDS, node: process.version, rows }, null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
}

await main();
